"""Pure decisions of the proxy: what happens to a request for path X on host Y
(:func:`decide`), route mode precedence, the allowlist regex.

:func:`decide` is the one place that answers "what does the proxy do with this
request": forward it untouched (not intercepted), refuse it (the names the
client sent disagree, a bad mode, a web origin, no endpoint), hand it to the
listener's pipeline (route), or forward it itself with pooled credentials
(switch) or the client's own (passthrough).  The router addon
(:mod:`tokn.mitm.router`) acts on it; which endpoint a path names, and the
caller's error format, come from :mod:`tokn.wire`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tokn import hosts, wire
from tokn.config import ROUTE_MODES, Config
from tokn.mitm.sidecalls import SideCall, side_call
from tokn.mitm.target import Target, check_names, target_of

MODE_HEADER = "x-tokn-route-mode"

# what decide() says to do
FORWARD = "forward"  # not intercepted: mitmproxy forwards it untouched, unobserved
REFUSE = "refuse"  # answer at once: status and message, in the caller's API
ROUTE = "route"
SWITCH = "switch"
PASSTHROUGH = "passthrough"
SIDE = "side"  # route mode, not a model endpoint: to the host with the client's own
# credentials, else the side-call table's answer (tokn.mitm.sidecalls)


@dataclass(frozen=True)
class Settings:
    """What :func:`decide` decides with: the config in force and the proxy's
    default mode (the ``tokn_route_mode`` option, e.g. ``tokn proxy --route-mode``)."""

    intercept: tuple[str, ...]
    passthrough: tuple[str, ...]
    provider_modes: Mapping[str, str]
    default_mode: str
    cors_origins: frozenset[str]

    @classmethod
    def of(cls, cfg: Config, route_mode: str | None = None) -> Settings:
        pm = cfg.proxy_mode
        return cls(intercept=tuple(hosts.intercept_patterns(pm.intercept_hosts,
                                                            pm.passthrough_hosts)),
                   passthrough=tuple(pm.passthrough_hosts),
                   provider_modes={**hosts.DEFAULT_PROVIDER_MODES, **pm.provider_modes},
                   default_mode=route_mode or pm.route_mode,
                   cors_origins=frozenset(o.rstrip("/").lower()
                                          for o in cfg.server.cors_origins))


@dataclass(frozen=True)
class Head:
    """What :func:`decide` reads of a request head.  ``scheme``/``host``/``port``
    are where mitmproxy would connect (the real target); ``host_headers`` every
    ``Host`` value, ``authority`` the HTTP/2 ``:authority`` (or absolute-form
    authority), ``tunnel_sni`` the SNI of TLS inside a CONNECT tunnel;
    ``connect_user`` the route mode the connection's proxy username names."""

    method: str
    path: str
    scheme: str
    host: str
    port: int
    headers: Mapping[str, str] = field(default_factory=dict)
    host_headers: tuple[str, ...] = ()
    authority: str = ""
    tunnel_sni: str | None = None
    connect_user: str | None = None


@dataclass(frozen=True)
class Decision:
    action: str
    api: wire.Api = wire.OPENAI  # the caller's API: its error format
    target: Target | None = None
    mode: str | None = None
    provider: str | None = None  # the provider owning the host (switch's accounts)
    endpoint: wire.Endpoint | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    status: int = 0  # with a message: the error to answer (REFUSE, or a switch that
    message: str = ""  # cannot be done: observed, so its row says why)
    websocket: bool = False  # the request asks to become a WebSocket
    side: SideCall | None = None  # SIDE: the table's row


def decide(settings: Settings, head: Head) -> Decision:
    """What the proxy does with ``head`` (see the module doc)."""
    target = target_of(head.host, head.port, head.scheme)
    api = wire.caller_api(head.path, host=target.host, headers=head.headers)
    problem = check_names(target, scheme=head.scheme, host_headers=head.host_headers,
                          authority=head.authority, tunnel_sni=head.tunnel_sni)
    if problem:
        return Decision(REFUSE, api, target, status=400, message=f"tokn proxy: {problem}.")
    if not hosts.should_intercept(target.host, settings.intercept, settings.passthrough):
        return Decision(FORWARD, api, target)  # plain-HTTP request to another host
    provider = hosts.provider_for(target.host, head.path)
    try:
        mode = resolve_mode(header=head.headers.get(MODE_HEADER), connect_user=head.connect_user,
                            provider=provider, provider_modes=settings.provider_modes,
                            default=settings.default_mode)
    except ValueError as exc:
        return Decision(REFUSE, api, target, status=400, message=str(exc))
    origin = head.headers.get("origin")
    if mode != PASSTHROUGH and origin is not None \
            and origin.rstrip("/").lower() not in settings.cors_origins:
        # a web page in a browser that uses this proxy must not spend the pool
        return Decision(REFUSE, api, target, mode, provider, status=403, message=(
            f"tokn proxy: requests from the web origin {origin!r} may not use pooled "
            "accounts; add it to [server].cors_origins to allow it."))
    upgrade = wire.is_websocket_upgrade(head.method, head.headers)
    found = wire.match_websocket(head.path) if upgrade else wire.match(head.method, head.path)
    endpoint, params = found if found else (None, {})
    decision = Decision(mode, api, target, mode, provider, endpoint, params, websocket=upgrade)
    if mode == ROUTE and endpoint is None:
        return dataclasses.replace(decision, action=SIDE,
                                   side=side_call(target.host, head.method, head.path))
    if mode == SWITCH and upgrade:
        # switch relays HTTP only (its rows come from the HTTP stream): 426 makes a
        # client such as Codex fall back to HTTPS at once, where switch serves it
        return dataclasses.replace(decision, action=REFUSE, status=426, message=(
            "tokn switch mode does not relay WebSockets; use HTTPS (POST) for this "
            "endpoint, or route mode."))
    if mode == SWITCH and provider is None:
        return dataclasses.replace(decision, status=400,
                                   message=f"switch mode has no provider for {target.host}.")
    if mode == SWITCH and not target.tls:
        return dataclasses.replace(decision, status=400, message=(
            "switch mode sends a pooled credential only over TLS; this request is plain "
            f"HTTP to {target.host}: use https://."))
    return decision


def check_mode(value: str, source: str) -> str:
    mode = value.strip().lower()
    if mode not in ROUTE_MODES:
        raise ValueError(f"{source} {value!r} is not a route mode; use one of: "
                         f"{', '.join(ROUTE_MODES)}.")
    return mode


def resolve_mode(*, header: str | None, connect_user: str | None, provider: str | None,
                 provider_modes: Mapping[str, str], default: str) -> str:
    """Header > CONNECT username > ``[proxy_mode.provider_modes]`` > default.

    Raises ``ValueError`` naming the valid modes for a bad header/username.
    """
    if header:
        return check_mode(header, f"header {MODE_HEADER}:")
    if connect_user:
        return check_mode(connect_user, "proxy username")
    if provider and provider in provider_modes:
        return check_mode(provider_modes[provider], f"provider_modes.{provider} =")
    return check_mode(default, "default route mode")


def parse_basic(value: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:pass)`` -> (user, pass); ``None`` when absent or malformed."""
    if not value or value[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def _host_regex(pattern: str) -> str:
    return r"\.".join("[^.:]+" if label == "*" else re.escape(label)
                      for label in pattern.lower().split("."))


def allow_hosts_regex(patterns: Iterable[str], minus: Iterable[str] = ()) -> str:
    """One anchored regex for mitmproxy's ``allow_hosts`` (matched against
    ``host:port``), excluding the ``minus`` patterns."""
    allow = "|".join(_host_regex(p) for p in patterns) or "(?!)"
    deny = "|".join(_host_regex(p) for p in minus)
    guard = f"(?!(?:{deny})(?::\\d+)?$)" if deny else ""
    return f"^{guard}(?:{allow})(?::\\d+)?$"
