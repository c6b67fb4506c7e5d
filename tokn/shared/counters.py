"""Per-key rate-limit counters shared by replicas: a
:class:`~tokn.limits.Counters` backend over Redis.

A counter is the Redis integer ``tokn:count:<name>``, added to with
``INCRBY`` and given its expiry (``PEXPIREAT``) in the same script, so two
replicas counting the same minute never lose each other's requests.

:class:`~tokn.limits.Counters` is a synchronous interface (the limiter asks it
inline), so this backend uses redis-py's blocking client with the short
``[state] timeout_secs``: one round trip per counted request.  When Redis is
unreachable it counts in the replica's :class:`~tokn.limits.LocalCounters`
instead (limits then hold per replica), with the warning and the retry of
:class:`~tokn.shared.link.Outage`.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import RedisError

from tokn.limits import LocalCounters
from tokn.shared.link import PREFIX, Outage

_ADD = """local v = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return v"""


class RedisCounters:
    def __init__(self, url: str, timeout: float, local: LocalCounters) -> None:
        self.client: Any = redis.Redis.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=timeout,
                                                retry_on_timeout=False)
        self.local = local
        self.outage = Outage(url)
        self._add = self.client.register_script(_ADD)

    def add(self, name: str, amount: int, expires_at: float) -> int:
        if not self.outage.skip():
            try:
                value = self._add(keys=[f"{PREFIX}count:{name}"],
                                  args=[int(amount), int(expires_at * 1000)])
            except (RedisError, OSError) as exc:
                self.outage.failed(exc)
            else:
                self.outage.ok()
                return int(value)
        return self.local.add(name, amount, expires_at)

    def get(self, name: str) -> int:
        if not self.outage.skip():
            try:
                value = self.client.get(f"{PREFIX}count:{name}")
            except (RedisError, OSError) as exc:
                self.outage.failed(exc)
            else:
                self.outage.ok()
                return int(value or 0)
        return self.local.get(name)

    def close(self) -> None:
        self.local.close()
        try:
            self.client.close()
        except (RedisError, OSError):
            pass
