"""Who may use the proxy: authentication as a property of the client connection.

A connection is authenticated once one request head on it (a CONNECT, an
absolute-form request, a request spoken over TLS straight to the proxy port,
an HTTP/2 stream) carried ``Proxy-Authorization: Basic`` with the key as
password; every later request on that connection (the flows inside its
tunnel included) inherits it.  Nothing else, in particular not "this flow is
TLS", ever counts as authenticated.  Without a key every connection is
admitted at its first request head.

The Basic username, when it is not ``tokn``, names the route mode for the
connection (``HTTPS_PROXY=http://switch:KEY@host:port``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokn.identity import Identity, identify
from tokn.lan_env import PROXY_USER
from tokn.mitm.modes import parse_basic

# The most of an unauthenticated request's body the proxy buffers to answer
# it; a larger (or unknown) one is streamed to a sink and discarded.
UNAUTHENTICATED_BODY_LIMIT = 64 * 1024


@dataclass
class ConnState:
    authed: bool = False
    user: str | None = None
    identity: Identity | None = None  # who authenticated the connection


def authorize(key: str, state: ConnState, header: str | None) -> bool:
    """Admit one request head on a connection in ``state`` (updated in place)."""
    creds = parse_basic(header)
    if not state.authed:
        state.identity = identify(key, creds[1] if creds else None)
        if state.identity is None:
            return False
    state.authed = True
    if creds is not None and creds[0] and creds[0] != PROXY_USER:
        state.user = creds[0]
    return True


class ProxyAccess:
    """Per-connection authentication state, keyed by mitmproxy's client id."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.conns: dict[str, ConnState] = {}

    def admit(self, conn_id: str, header: str | None) -> bool:
        return authorize(self.key, self.conns.setdefault(conn_id, ConnState()), header)

    def authed(self, conn_id: str) -> bool:
        state = self.conns.get(conn_id)
        return state is not None and state.authed

    def user(self, conn_id: str) -> str | None:
        state = self.conns.get(conn_id)
        return state.user if state is not None else None

    def identity(self, conn_id: str) -> Identity | None:
        state = self.conns.get(conn_id)
        return state.identity if state is not None else None

    def forget(self, conn_id: str) -> None:
        self.conns.pop(conn_id, None)


DENIED_TEXT = (b"tokn proxy: authentication required (Proxy-Authorization: Basic, password = "
               b"the API key; `tokn proxy env` / `tokn lan url` print a ready environment)\n")
DENIED_HEADERS = {"proxy-authenticate": 'Basic realm="tokn"', "content-type": "text/plain"}
