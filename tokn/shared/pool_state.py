"""Account health and sticky sessions shared by replicas (a
:class:`~tokn.pool.SharedPool` over Redis).

Health: the hash ``tokn:health``, one JSON record per account (the fields of
:class:`~tokn.pool.Health`: cooldown, failure count, last error, quota
exhausted until its reset).  A replica reads the records of its accounts before
choosing one for a request and publishes a record when it changes; the last
write wins.  Sticky sessions: ``tokn:sticky:<sha256 of the session key>`` ->
account id, kept a day after the last change (so the map stays bounded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tokn.shared.link import PREFIX, Down, Link

HEALTH = f"{PREFIX}health"
STICKY_TTL_SECS = 86400


def _sticky(session_key: str) -> str:
    return f"{PREFIX}sticky:{hashlib.sha256(session_key.encode()).hexdigest()[:32]}"


class RedisPool:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def pull(self, account_ids: Sequence[str], session_key: str | None
                   ) -> tuple[dict[str, dict[str, Any]], str | None] | None:
        if not account_ids:
            return {}, None

        async def op(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hmget(HEALTH, list(account_ids))
            if session_key:
                pipe.get(_sticky(session_key))
            return await pipe.execute()

        try:
            answers = await self.link.call(op)
        except Down:
            return None
        records: dict[str, dict[str, Any]] = {}
        for account_id, raw in zip(account_ids, answers[0]):
            if raw is None:
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                records[account_id] = record
        pinned = answers[1] if session_key else None
        return records, pinned.decode() if isinstance(pinned, bytes) else pinned

    def push(self, account_id: str, record: dict[str, Any]) -> None:
        data = json.dumps(record)
        self.link.spawn(lambda r: r.hset(HEALTH, account_id, data))

    def pin(self, session_key: str, account_id: str) -> None:
        self.link.spawn(lambda r: r.set(_sticky(session_key), account_id, ex=STICKY_TTL_SECS))
