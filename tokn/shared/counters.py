"""Per-key rate-limit counters shared by replicas: a
:class:`~tokn.limits.Counters` backend over Redis.

A counter is the Redis integer ``tokn:count:<name>``, added to with
``INCRBY`` and given its expiry (``PEXPIREAT``) in the same script, so two
replicas counting the same minute never lose each other's requests.

Calls go through the replica's one asyncio :class:`~tokn.shared.link.Link`
(the client the rest of the shared state uses): each is bounded by
``[state] timeout_secs`` and never blocks the event loop.  When Redis is
unreachable (the link is :class:`~tokn.shared.link.Down`) the count goes to
the replica's :class:`~tokn.limits.LocalCounters` instead (limits then hold
per replica), with the link's one warning per outage and its retry.
"""

from __future__ import annotations

from tokn.limits import LocalCounters
from tokn.shared.link import PREFIX, Down, Link

_ADD = """local v = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return v"""


class RedisCounters:
    def __init__(self, link: Link, local: LocalCounters) -> None:
        self.link = link
        self.local = local
        self._add = link.client.register_script(_ADD)

    async def add(self, name: str, amount: int, expires_at: float) -> int:
        key, args = f"{PREFIX}count:{name}", [int(amount), int(expires_at * 1000)]
        try:
            value = await self.link.call(lambda r: self._add(keys=[key], args=args, client=r))
        except Down:
            return await self.local.add(name, amount, expires_at)
        return int(value)

    async def get(self, name: str) -> int:
        try:
            value = await self.link.call(lambda r: r.get(f"{PREFIX}count:{name}"))
        except Down:
            return await self.local.get(name)
        return int(value or 0)

    def close(self) -> None:
        self.local.close()  # the link is the runtime's: it closes it
