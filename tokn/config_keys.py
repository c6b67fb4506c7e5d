"""Every key tokn's config knows: one row per key with its doc and value check (pure).

Types and defaults come from the dataclasses in :mod:`tokn.config` (a key's
type is its default's type); a row here adds what a dataclass cannot say: a
one-line doc and a check of the value.  **A new key is one dataclass field
plus one row** in :data:`KEYS`:

    "server.max_body_mb": Key("largest request body accepted, in MiB", at_least(1)),

``check`` receives the value after its type was checked and raises
:class:`ValueError` with a message that completes "KEY = VALUE is not valid:
...".  ``item`` checks each value of a table (``proxy_mode.provider_modes``)
or each element of an array.  Account keys are rows under ``accounts.``;
``accounts.settings.*`` and provider-specific fields (``api_key``,
``github_token``, ``refresh_token``...) are free-form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any], None]

ROUTE_MODES = ("route", "switch", "passthrough")
STRATEGIES = ("round_robin", "fill_first")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
OUTBOUND_SCHEMES = ("http", "https", "socks5", "socks5h")
MODEL_FALLBACKS = ("nearest", "strict")

_LABEL = r"(\*|[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)"
_HOST_PATTERN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$", re.I)


@dataclass(frozen=True)
class Key:
    """What a config key means and which values it takes."""

    doc: str
    check: Check | None = None
    item: Check | None = None


# --- checks ---------------------------------------------------------------------------

def one_of(*choices: str) -> Check:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"use one of: {', '.join(choices)}")
    return check


def at_least(low: float) -> Check:
    def check(value: Any) -> None:
        if value < low:
            raise ValueError(f"must be {low:g} or more")
    return check


def above(low: float) -> Check:
    def check(value: Any) -> None:
        if value <= low:
            raise ValueError(f"must be above {low:g}")
    return check


def port(value: Any) -> None:
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")


def host(value: Any) -> None:
    """A host name or IP address to listen on (no scheme, no port)."""
    text = str(value)
    try:
        ipaddress.ip_address(text.strip("[]"))
        return
    except ValueError:
        pass
    if not text or not _HOST_PATTERN_RE.match(text) or "*" in text:
        raise ValueError("must be a host name or IP address, e.g. 127.0.0.1")


def host_pattern(value: Any) -> None:
    """A DNS name where ``*`` may stand for one label (``api.*.example.com``)."""
    if not _HOST_PATTERN_RE.match(str(value)):
        raise ValueError(f"{value!r} is not a host name (a `*` may stand for one label)")


def no_proxy_entry(value: Any) -> None:
    """A host, ``.domain`` suffix, ``*``, IP or network (``10.0.0.0/8``), optional ``:port``."""
    text = str(value)
    name = text[1:] if text.startswith(".") else text
    name = re.sub(r":\d+$", "", name)
    if text == "*" or _is_network(text) or (name and _HOST_PATTERN_RE.match(name)):
        return
    raise ValueError(f"{value!r} is not a host, .domain suffix, IP or network")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def host_port(value: Any) -> None:
    text = str(value)
    name, sep, number = text.rpartition(":")
    if not sep or not name or not number.isdigit() or not 0 < int(number) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8443)")


def url(*schemes: str) -> Check:
    """An absolute URL with one of ``schemes`` and a host; empty means unset."""
    def check(value: Any) -> None:
        if value == "":
            return
        parts = urlsplit(str(value))
        if parts.scheme.lower() not in schemes:
            raise ValueError(f"the scheme must be one of: {', '.join(schemes)} "
                             f"(e.g. {schemes[0]}://host:port)")
        try:
            if not parts.hostname:
                raise ValueError
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("the URL needs a host (and a valid port, if any)") from None
    return check


def web_origin(value: Any) -> None:
    """A browser origin: ``http(s)://host[:port]``, nothing after it."""
    parts = urlsplit(str(value).rstrip("/"))
    try:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) \
            and not (parts.path or parts.query or parts.fragment or parts.username)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{value!r} is not a web origin (e.g. http://localhost:3000)")


def model_id(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must name a model id")


def account_id(value: Any) -> None:
    text = str(value)
    if not text or "/" in text or any(c.isspace() for c in text):
        raise ValueError("ids are non-empty, without spaces or `/` "
                         "(`ID/model` picks an account)")


# --- the table ------------------------------------------------------------------------

KEYS: dict[str, Key] = {
    "server.host": Key("listener address (beyond loopback needs --insecure-allow-remote)", host),
    "server.port": Key("listener port", port),
    "server.route_mode": Key("default route mode of the listener", one_of(*ROUTE_MODES)),
    "server.api_key": Key("key clients must send (Bearer / x-api-key; proxy password)"),
    "server.drain_secs": Key("on SIGTERM/SIGINT, seconds in-flight requests may take to finish",
                             above(0)),
    "server.max_sse_line_mb": Key("longest server-sent-event line accepted from an upstream, "
                                  "in MiB", above(0)),
    "server.keep_alive_secs": Key("idle seconds before the listener closes a keep-alive "
                                  "connection", above(0)),
    "server.allowed_hosts": Key("Host names the key-less listener answers to besides loopback "
                                "ones", item=host),
    "server.cors_origins": Key("web origins allowed to call tokn (CORS); none by default",
                               item=web_origin),
    "server.max_body_mb": Key("largest request body accepted, in MiB (413 above it)", above(0)),
    "server.header_timeout_secs": Key("seconds a connection has to send a request head (on the "
                                      "proxy: to authenticate)", above(0)),
    "server.body_timeout_secs": Key("seconds a request body may stall before the connection is "
                                    "closed", above(0)),
    "server.max_connections": Key("connections peers beyond this machine may hold on each "
                                  "port", at_least(1)),
    "server.max_client_connections": Key("connections one address beyond this machine may "
                                         "hold on each port", at_least(1)),
    "timeouts.connect_secs": Key("connecting to an upstream", above(0)),
    "timeouts.first_byte_secs": Key("to the response headers of a streaming request (also a "
                                    "model listing or token exchange)", above(0)),
    "timeouts.response_secs": Key("a whole non-stream answer", above(0)),
    "timeouts.stream_idle_secs": Key("the longest gap between two chunks of a stream",
                                     above(0)),
    "proxy_mode.host": Key("proxy address", host),
    "proxy_mode.port": Key("proxy port", port),
    "proxy_mode.route_mode": Key("default mode of intercepted flows", one_of(*ROUTE_MODES)),
    "proxy_mode.intercept_hosts": Key("hosts decrypted besides the built-in LLM API hosts "
                                      "(the CA must be regenerated after a change)",
                                      item=host_pattern),
    "proxy_mode.passthrough_hosts": Key("hosts never decrypted", item=host_pattern),
    "proxy_mode.provider_modes": Key("route mode per provider, e.g. anthropic = "
                                     "\"passthrough\"", item=one_of(*ROUTE_MODES)),
    "proxy_mode.upstream_ca_bundle": Key("extra CA bundle to verify upstreams (corporate "
                                         "TLS inspection)"),
    "proxy_mode.upstream_overrides": Key("host -> HOST:PORT to connect to instead (TLS name "
                                         "unchanged)", item=host_port),
    "pool.strategy": Key("which healthy account goes first", one_of(*STRATEGIES)),
    "pool.failure_cooldown_secs": Key("rest after a failure (doubles per failure)",
                                      at_least(0)),
    "pool.max_cooldown_secs": Key("longest rest after failures", at_least(0)),
    "pool.sticky_sessions": Key("keep a session on the account that served it"),
    "pool.default_provider": Key("provider for models no account lists"),
    "usage.enabled": Key("record one usage row per upstream attempt"),
    "usage.record_bodies": Key("also store request/response bodies"),
    "usage.body_cap_bytes": Key("bytes kept of each stored body", at_least(0)),
    "usage.url": Key("PostgreSQL for the usage rows of every replica (postgresql://user:pw@"
                     "host/db; needs tokn[team]); empty: the local SQLite file",
                     url("postgresql", "postgres")),
    "usage.buffer_rows": Key("rows held in memory while PostgreSQL is unreachable", at_least(1)),
    "state.url": Key("Redis shared by replicas: account health, sticky sessions, tokens "
                     "(redis:// or rediss://; needs tokn[team]); empty: this process only",
                     url("redis", "rediss")),
    "state.timeout_secs": Key("longest wait for Redis before local state is used", above(0)),
    "proxy.url": Key("proxy for tokn's own upstream calls (http, https, socks5, socks5h)",
                     url(*OUTBOUND_SCHEMES)),
    "proxy.system": Key("use HTTPS_PROXY / ALL_PROXY from the environment when url is empty"),
    "proxy.no_proxy": Key("hosts reached directly (also NO_PROXY in `tokn proxy env`)",
                          item=no_proxy_entry),
    "logging.level": Key("log level", one_of(*LOG_LEVELS)),
    "logging.format": Key("log line format", one_of(*LOG_FORMATS)),
    "logging.file": Key("the log file (0600, rotated at 10 MB); empty: tokn.log in the "
                        "state dir"),
    "ca.name_constraints": Key("limit the CA to the intercepted hosts"),
    "models.aliases": Key("model alias -> model id, e.g. sonnet = \"claude-sonnet-4.5\"; a key "
                          "with * or ? is a glob (\"claude-opus-*\")", item=model_id),
    "models.fallback": Key("an unserved model: \"nearest\" served one of its family and tier, "
                           "or \"strict\" (404)", one_of(*MODEL_FALLBACKS)),
    "rules.model": Key("[[rules]]: glob on the requested or serving model id (empty: any)"),
    "rules.account": Key("[[rules]]: glob on the account id (empty: any)"),
    "rules.provider": Key("[[rules]]: provider id (empty: any)"),
    "rules.system": Key("[[rules]]: replaces the system prompt"),
    "rules.system_append": Key("[[rules]]: text added after the system prompt"),
    "rules.system_prepend": Key("[[rules]]: text added before the system prompt"),
    "rules.defaults": Key("[[rules]]: parameters set when the client did not, e.g. "
                          "{ max_tokens = 4096, reasoning_effort = \"high\" }"),
    "rules.override": Key("[[rules]]: parameters set whatever the client sent"),
    "rules.strip": Key("[[rules]]: fields removed from the upstream body, e.g. "
                       "[\"service_tier\"]"),
    "accounts.id": Key("the account's name (`--account ID`, `ID/model`)", account_id),
    "accounts.provider": Key("provider id (see README, Providers)"),
    "accounts.base_url": Key("API base URL override", url("https", "http")),
    "accounts.refresh_url": Key("token exchange / refresh URL override", url("https", "http")),
    "accounts.enabled": Key("whether the pool uses the account"),
    "accounts.models": Key("models to offer even if the upstream does not list them"),
    "accounts.settings": Key("provider options (free-form table)"),
    "accounts.timeouts": Key("this account's [timeouts] overrides (connect_secs, "
                             "first_byte_secs, response_secs, stream_idle_secs)",
                             item=above(0)),
}

# Tables whose sub-keys are free-form (``tokn config set --account ID settings.X V``).
FREE_TABLES = ("accounts.settings",)


class Invalid(ValueError):
    """``key = value`` (a table entry or array element included) is not valid: ``reason``."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.key, self.value, self.reason = key, value, reason


def check(key: str, value: Any) -> None:
    """Run ``key``'s checks on ``value``; :class:`Invalid` naming the bad part."""
    row = KEYS.get(key)
    if row is None:
        return
    try:
        if row.check is not None:
            row.check(value)
    except ValueError as exc:
        raise Invalid(key, value, str(exc)) from None
    if row.item is None:
        return
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for sub, item in items:
        try:
            row.item(item)
        except ValueError as exc:
            where = f"{key}.{sub}" if sub is not None else key
            raise Invalid(where, item, str(exc)) from None


def suggest(key: str, known: Iterable[str]) -> str | None:
    """The known key closest to a mistyped ``key``, if one is close: in a known
    section one of its keys (``server.prot`` -> ``server.port``), else any key
    (``sever.port``), else one whose last part is close (``intercept_host``)."""
    known = list(known)
    prefix, _, last = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == prefix}
    if siblings:   # a known section: only its own keys are candidates
        near = close_to(last, list(siblings), 0.7)
        return siblings[near] if near else None
    tails = {k.rpartition(".")[2]: k for k in known}
    near = close_to(last, list(tails), 0.8)
    return close_to(key, known, 0.75) or (tails[near] if near else None)


def close_to(word: str, known: list[str], cutoff: float) -> str | None:
    """The item of ``known`` closest to ``word`` when at least ``cutoff`` alike."""
    import difflib

    near = difflib.get_close_matches(word, known, n=1, cutoff=cutoff)
    return near[0] if near else None
