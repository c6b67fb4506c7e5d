"""Who may use the proxy: authentication as a property of the client connection.

A connection is authenticated once one request head on it (a CONNECT, an
absolute-form request, a request spoken over TLS straight to the proxy port,
an HTTP/2 stream) carried ``Proxy-Authorization: Basic`` with the key as
password; every later request on that connection (the flows inside its
tunnel included) inherits it.  Nothing else, in particular not "this flow is
TLS", ever counts as authenticated.  Without a key every connection is
admitted at its first request head.

The Basic username, when it is not ``tokn``, names the route mode for the
connection (``HTTPS_PROXY=http://switch:KEY@host:port``), or, with a person's
key (team mode), that key's name (``http://alice:tokn_...@host:port``).  A
person's connection is checked again at every request head: a key revoked,
rotated or expired since stops working on connections already open.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokn.identity import Identity
from tokn.keys import KeyRing
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
    cut: str | None = None  # the person whose key stopped working on this connection


def authorize(key: str, keys: KeyRing, state: ConnState, header: str | None) -> bool:
    """Admit one request head on a connection in ``state`` (updated in place)."""
    creds = parse_basic(header)
    user = creds[0] if creds is not None else None
    if state.authed and state.identity is not None and not state.identity.admin \
            and keys.current(state.identity) is None:  # revoked / rotated / expired since
        state.cut = state.identity.name
        state.authed, state.identity, state.user = False, None, None
    if not state.authed:
        identity = keys.identify(key, creds[1] if creds else None)
        if identity is None:
            return False
        if not identity.admin and user and user != PROXY_USER and user != identity.name \
                and user not in ROUTE_USERS:
            return False  # alice's name with bob's key
        state.identity, state.cut = identity, None
    state.authed = True
    if user and user != PROXY_USER and (state.identity is None or user != state.identity.name):
        state.user = user
    return True


ROUTE_USERS = frozenset({"route", "switch", "passthrough"})


def refused_whom(keys: KeyRing, header: str | None, cut: str | None = None) -> str:
    """For the log: the Basic user and whose key was refused (``cut``: the
    person whose key stopped working on the connection); never the key."""
    creds = parse_basic(header)
    if creds is None:
        return f"key {cut!r} is no longer valid (revoked, rotated or expired)" if cut \
            else "no Proxy-Authorization"
    return f"user {creds[0]!r} with {keys.describe(creds[1]) or 'no valid key'}"


class ProxyAccess:
    """Per-connection authentication state, keyed by mitmproxy's client id."""

    def __init__(self, key: str, keys: KeyRing) -> None:
        self.key = key
        self.keys = keys
        self.conns: dict[str, ConnState] = {}

    def admit(self, conn_id: str, header: str | None) -> bool:
        return authorize(self.key, self.keys, self.conns.setdefault(conn_id, ConnState()),
                         header)

    def authed(self, conn_id: str) -> bool:
        state = self.conns.get(conn_id)
        return state is not None and state.authed

    def user(self, conn_id: str) -> str | None:
        state = self.conns.get(conn_id)
        return state.user if state is not None else None

    def identity(self, conn_id: str) -> Identity | None:
        state = self.conns.get(conn_id)
        return state.identity if state is not None else None

    def cut(self, conn_id: str) -> str | None:
        """The person whose key stopped working on this connection, if any."""
        state = self.conns.get(conn_id)
        return state.cut if state is not None else None

    def forget(self, conn_id: str) -> None:
        self.conns.pop(conn_id, None)


DENIED_TEXT = (b"tokn proxy: authentication required (Proxy-Authorization: Basic, password = "
               b"the API key; `tokn proxy env` / `tokn lan url` print a ready environment)\n")
DENIED_HEADERS = {"proxy-authenticate": 'Basic realm="tokn"', "content-type": "text/plain"}
