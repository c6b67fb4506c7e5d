"""Client connection caps and the authentication deadline on the proxy port.

mitmproxy closes a connection only after 10 minutes without traffic, so a
half-sent request (or a TLS handshake fed a byte at a time) would hold its
connection and descriptor for as long as the peer likes.  This addon:

* refuses a new connection from beyond loopback over the caps
  (:class:`~tokn.connlimits.ConnectionCaps`);
* closes every connection that has not been admitted by
  :class:`~tokn.mitm.access.ProxyAccess` (authenticated, or its first request
  head seen when there is no key) within ``header_timeout`` seconds.

Once admitted, a connection is the client's: long streams and tunnels are
left alone (mitmproxy's own idle timeout still applies).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx

from tokn.mitm.access import ProxyAccess
from tokn.mitm.services import ProxyServices

log = logging.getLogger("tokn.proxy")


class ConnectionGuard:
    name = "tokn_connguard"

    def __init__(self, access: ProxyAccess, services: ProxyServices) -> None:
        self.access = access  # ProxyAuth's: whether a connection was admitted
        self.services = services
        self.caps = services.caps
        self.counted: dict[str, str] = {}  # client id -> peer host, for release
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def client_connected(self, client: Any) -> None:
        peer = client.peername[0] if client.peername else ""
        if not self.caps.exempt(peer, client.sockname[0] if client.sockname else ""):
            if not self.caps.admit(peer):
                log.warning("proxy: refusing a connection from %s (connection cap reached)",
                            peer)
                client.error = "too many connections from this address"
                return
            self.counted[client.id] = peer
        self.timers[client.id] = asyncio.get_running_loop().call_later(
            self.services.config().server.header_timeout_secs, self._deadline, client.id)

    def client_disconnected(self, client: Any) -> None:
        timer = self.timers.pop(client.id, None)
        if timer is not None:
            timer.cancel()
        peer = self.counted.pop(client.id, None)
        if peer is not None:
            self.caps.release(peer)

    def _deadline(self, client_id: str) -> None:
        self.timers.pop(client_id, None)
        if self.access.authed(client_id):
            return
        handler = ctx.master.addons.get("proxyserver").connections.get(client_id)
        if handler is None:
            return
        io = handler.transports.get(handler.client)
        if io is not None and io.handler is not None:
            log.info("proxy: closing a connection from %s: not authenticated within the "
                     "deadline ([server] header_timeout_secs)", handler.client.peername)
            io.handler.cancel("tokn: authentication deadline")
