"""Connection limits shared by both front doors (pure bookkeeping).

Peers on loopback, or connecting from the very address they reached (this
machine's own address, e.g. the proxy's in-process hop to a listener bound to
a LAN address), are the machine's own processes and are never refused.  Every
other peer may hold at most ``per_client`` connections to one port, and all
of them together at most ``total`` (never more than the process's file
descriptors allow).  Together with the header deadline (a connection must
finish its first request head, on the proxy: authenticate, in
``[server].header_timeout_secs``) a LAN peer cannot exhaust tokn.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# file descriptors kept for the upstream side, the usage store, logs, ...
FD_RESERVE = 128


def is_loopback_peer(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at 65536); the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def fd_budget(soft_limit: int) -> int:
    """How many remote connections one front door may hold: each may need a
    second descriptor upstream, and there are two front doors."""
    return max(16, (soft_limit - FD_RESERVE) // 4)


@dataclass
class ConnectionCaps:
    total: int
    per_client: int
    counts: dict[str, int] = field(default_factory=dict)
    current: int = 0

    @staticmethod
    def exempt(host: str, local: str) -> bool:
        """A connection from this machine: a loopback peer, or one connecting from
        the very address it reached (the kernel uses our own address only for us)."""
        return is_loopback_peer(host) or host == local

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host`` (not :meth:`exempt`); ``False``,
        not counted, when over a cap."""
        if self.current >= self.total or self.counts.get(host, 0) >= self.per_client:
            return False
        self.counts[host] = self.counts.get(host, 0) + 1
        self.current += 1
        return True

    def release(self, host: str) -> None:
        """Forget a connection :meth:`admit` counted."""
        self.counts[host] -= 1
        self.current -= 1
        if not self.counts[host]:
            del self.counts[host]
