"""The connection to Redis, and what happens when Redis is gone.

Every call goes through :meth:`Link.call` with a short timeout
(``[state] timeout_secs``).  A call that fails marks the link down
(:class:`Outage`): callers get :class:`Down` at once (they use their local
state) until :data:`RETRY_SECS` have passed, when the next call tries Redis
again.  The
first failure of an outage is a warning, the first success after it an info
line; a request never waits on Redis for longer than the timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from tokn.shared import redacted

log = logging.getLogger("tokn.shared")

RETRY_SECS = 2.0
PREFIX = "tokn:"

T = TypeVar("T")


class Down(Exception):
    """Redis cannot be used right now: use local state."""


class Outage:
    """Whether Redis is to be tried now: after a failure, not again for
    :data:`RETRY_SECS`; one warning when it goes, one when it is back."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.failures = 0  # calls that found Redis unreachable (used local state)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def skip(self) -> bool:
        """Down and not yet time to try again (counts as a failure)."""
        if self.down_since is not None and self.clock() < self.retry_at:
            self.failures += 1
            return True
        return False

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = self.clock()
            log.warning("state: Redis at %s is unreachable (%s: %s); using this process's "
                        "local state until it is back", redacted(self.url),
                        type(exc).__name__, exc)
        self.retry_at = self.clock() + RETRY_SECS

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("state: Redis at %s is reachable again (down %.0f s); sharing "
                        "state again", redacted(self.url), self.clock() - self.down_since)
            self.down_since = None


class Link:
    """One Redis client (its own connection pool) with fallback bookkeeping."""

    def __init__(self, url: str, timeout: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, health_check_interval=30)
        self.outage = Outage(url, clock)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def call(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``op(client)`` within the timeout; :class:`Down` when Redis is (or just
        went) unreachable."""
        if self.outage.skip():
            raise Down()
        try:
            async with asyncio.timeout(self.timeout):
                result = await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.outage.failed(exc)
            raise Down() from None
        self.outage.ok()
        return result

    def spawn(self, op: Callable[[aioredis.Redis], Awaitable[Any]]) -> None:
        """Run ``op`` in the background (a write the request need not wait for)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a sync caller outside the server): local state only
        task = loop.create_task(self._quiet(op))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quiet(self, op: Callable[[aioredis.Redis], Awaitable[Any]]) -> None:
        try:
            await self.call(op)
        except Down:
            pass

    async def settle(self) -> None:
        """Wait (briefly) for the background writes started so far."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2 * self.timeout + 1)

    async def aclose(self) -> None:
        await self.settle()
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            pass

