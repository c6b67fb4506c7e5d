"""Tokens shared by replicas: a :class:`~tokn.auth.tokens.TokenStore` over Redis.

The persisted record of an account's token (a Copilot token, a Kiro access
token with its single-use refresh token) is one Redis string
``tokn:token:<kind>:<account>``; renewals take a Redis lock
``tokn:lock:<kind>:<account>`` (``SET NX PX``, released only by its holder), so
however many requests on however many replicas find the token expired, one
renewal happens and the others read its result.  Memory and the local state
files (:class:`~tokn.auth.tokens.LocalTokens`) stay underneath: the token in
use is read without I/O, and when Redis is unreachable the store falls back to
them (and to this machine's file lock) with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from tokn.auth.tokens import LOCK_TIMEOUT, LocalTokens, Token, machine_lock
from tokn.errors import ToknError
from tokn.shared.link import PREFIX, Down, Link

log = logging.getLogger("tokn.shared")

LOCK_POLL_SECS = 0.02
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1])
else return 0 end"""


def _key(what: str, kind: str, account_id: str) -> str:
    return f"{PREFIX}{what}:{kind}:{account_id}"


class RedisTokens:
    """Records and the renewal lock in Redis; the token in use in memory."""

    def __init__(self, link: Link, local: LocalTokens) -> None:
        self.link = link
        self.local = local

    def peek(self, kind: str, account_id: str) -> Token | None:
        return self.local.peek(kind, account_id)

    async def read(self, kind: str, account_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.link.call(lambda r: r.get(_key("token", kind, account_id)))
        except Down:
            return await self.local.read(kind, account_id)
        if raw is None:
            # nothing shared yet (or Redis was emptied): what this machine knows
            return await self.local.read(kind, account_id)
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def put(self, kind: str, account_id: str, token: Token,
                  record: dict[str, Any]) -> None:
        await self.local.put(kind, account_id, token, record)
        data = json.dumps(record)
        try:
            # no expiry: a Kiro record holds the only live refresh token
            await self.link.call(lambda r: r.set(_key("token", kind, account_id), data))
        except Down:
            log.warning("%s %s: the new token is kept locally only (Redis unreachable)",
                        kind, account_id)

    def remember(self, kind: str, account_id: str, token: Token) -> None:
        self.local.remember(kind, account_id, token)

    def generation(self, kind: str, account_id: str) -> int:
        return self.local.generation(kind, account_id)

    def drop(self, kind: str, account_id: str) -> None:
        self.local.drop(kind, account_id)
        self.link.spawn(lambda r: r.delete(_key("token", kind, account_id)))

    @contextlib.asynccontextmanager
    async def lock(self, kind: str, account_id: str, *,
                   across_processes: bool) -> AsyncIterator[None]:
        """This process's lock, then the replicas' lock in Redis (for every kind
        of token: one exchange across replicas); Redis unreachable: the local
        locks (the file lock for single-use tokens) instead."""
        async with self.local.lock(kind, account_id, across_processes=False):
            key = _key("lock", kind, account_id)
            mine = secrets.token_hex(16)
            try:
                await self._acquire(key, mine)
            except Down:
                if not across_processes:
                    yield
                    return
                async with machine_lock(kind, account_id):
                    yield
                return
            try:
                yield
            finally:
                with contextlib.suppress(Down):
                    await self.link.call(lambda r: r.eval(_RELEASE, 1, key, mine))

    async def _acquire(self, key: str, mine: str) -> None:
        lease_ms = int(LOCK_TIMEOUT * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_TIMEOUT
        while True:
            if await self.link.call(lambda r: r.set(key, mine, nx=True, px=lease_ms)):
                return
            if loop.time() > deadline:
                raise ToknError(f"another tokn replica has been refreshing this account's "
                                f"token for {LOCK_TIMEOUT:.0f} s; try again.", status=503,
                                code="refresh_locked")
            await asyncio.sleep(LOCK_POLL_SECS)
