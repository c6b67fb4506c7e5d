"""Who may see and change the dashboard (``/ui/``): its one gate.

* **Reading.**  Without an API key the listener only binds loopback; the gate
  also wants a loopback ``Host`` (``localhost``, ``*.localhost``, 127.0.0.0/8,
  ``[::1]``), so a web page whose name was rebound to 127.0.0.1 cannot read it.
  With a key (LAN mode), a session that logged in with the key (an HttpOnly,
  ``SameSite=Strict`` cookie scoped to ``/ui``), or the key itself in
  ``Authorization: Bearer`` / ``x-api-key`` (scripts; no browser adds it).
* **Writing** (every POST: account actions, login, logout) also needs the
  request to come from the dashboard itself: ``Sec-Fetch-Site`` (when sent)
  must be ``same-origin``, ``Origin`` (when sent) must be the dashboard's own,
  and the form must carry the session's CSRF token.  ``SameSite`` alone is not
  enough: another port of 127.0.0.1 is the same *site*.  A request holding the
  API key in a header needs no token (a browser cannot be made to send one).

Sessions live in memory (a restart signs everyone out), at most
:data:`MAX_SESSIONS`, each for :data:`SESSION_SECS`.

Merging with the listener's front guard (``Origin`` / content-type checks on
the API): paths for which :func:`owns` is true are screened here instead
(form posts are ``application/x-www-form-urlencoded`` and carry the page's own
``Origin``).
"""

from __future__ import annotations

import collections
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from tokn.identity import key_matches, presented_key
from tokn.lan_env import BadHost, parse_host
from tokn.server.guard import is_loopback

PREFIX = "/ui"
COOKIE = "tokn_ui"
SESSION_SECS = 12 * 3600.0
MAX_SESSIONS = 1000
DEFAULT_PORTS = {"http": 80, "https": 443}
# Every dashboard answer: no framing, no inline script, no third-party anything.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def owns(path: str) -> bool:
    """Whether ``path`` is the dashboard's (screened by this module)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass
class Session:
    sid: str
    csrf: str
    authed: bool
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) to show once


def host_allowed(value: str | None, key_set: bool) -> bool:
    """A well-formed ``Host``; without a key, a loopback one."""
    try:
        hp = parse_host(value)
    except BadHost:
        return False
    return key_set or hp.host == "localhost" or hp.host.endswith(".localhost") \
        or is_loopback(hp.host)


def same_origin(request: Request) -> bool:
    """Whether a browser says this request comes from the dashboard's own pages
    (requests without the headers, e.g. curl, are judged by the CSRF token)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
        own = parse_host(request.headers.get("host"))
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except (ValueError, BadHost):
        return False
    scheme = request.url.scheme
    return (parts.scheme == scheme and (parts.hostname or "") == own.host.lower()
            and port == (own.port or DEFAULT_PORTS.get(scheme)))


class UiAuth:
    def __init__(self, api_key: Callable[[], str], clock: Callable[[], float] = time.time
                 ) -> None:
        self._api_key = api_key
        self.clock = clock
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    @property
    def key_set(self) -> bool:
        return bool(self._api_key())

    # --- sessions ------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        found = self._sessions.get(sid) if sid else None
        if found is None:
            return None
        if found.expires <= self.clock():
            self._sessions.pop(found.sid, None)
            return None
        return found

    def start(self, *, authed: bool) -> Session:
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        made = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), authed,
                       self.clock() + SESSION_SECS)
        self._sessions[made.sid] = made
        return made

    def end(self, found: Session | None) -> None:
        if found is not None:
            self._sessions.pop(found.sid, None)

    def set_cookie(self, response: Response, request: Request, found: Session | None) -> None:
        if found is None:
            response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
            return
        response.set_cookie(COOKIE, found.sid, max_age=int(SESSION_SECS), path=PREFIX,
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    # --- decisions -----------------------------------------------------------------
    def key_presented(self, request: Request) -> bool:
        """The API key (when one is set) in ``Authorization`` / ``x-api-key``."""
        presented = presented_key(request.headers)
        return self.key_set and presented is not None and \
            key_matches(self._api_key(), presented)

    def login_ok(self, key: str) -> bool:
        return self.key_set and key_matches(self._api_key(), key)

    def may_read(self, request: Request, found: Session | None) -> bool:
        if not host_allowed(request.headers.get("host"), self.key_set):
            return False
        if not self.key_set:
            return True
        return (found is not None and found.authed) or self.key_presented(request)

    def refuse_write(self, request: Request, found: Session | None,
                     token: str | None, *, login: bool = False) -> str | None:
        """Why a POST may not change anything (``None``: it may)."""
        if not host_allowed(request.headers.get("host"), self.key_set):
            return "this address is not the dashboard's"
        if self.key_presented(request):
            return None
        if not same_origin(request):
            return "the request did not come from the dashboard's own pages"
        if found is None or not token or \
                not hmac.compare_digest(found.csrf.encode(), token.encode()):
            return "the form is stale or was not made by the dashboard (reload the page)"
        if self.key_set and not found.authed and not login:
            return "sign in with the API key first"
        return None
