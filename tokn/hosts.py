"""Which hosts the proxy intercepts, which provider owns each, and how a Host or
authority value is read (data and pure functions).

Kept free of mitmproxy so the CA and the shell env can use it cheaply.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# Which provider owns each API host: pattern -> (provider id, path prefix that
# selects it).  The one table of provider hosts: the proxy intercepts these
# (plus ``[proxy_mode].intercept_hosts``), switch mode gives a host's flows to
# its provider, and a provider's ``hosts`` (where its credential may go) are
# its rows.  ``*.`` matches exactly one label or more below the suffix
# (``api.*.githubcopilot.com`` one label in the middle).  Order matters: the
# first match wins, so longer path prefixes come first.
HOST_PROVIDERS: tuple[tuple[str, str, str], ...] = (
    ("api.openai.com", "", "openai"),
    ("api.anthropic.com", "", "anthropic"),
    ("api.githubcopilot.com", "", "github-copilot"),
    ("api.*.githubcopilot.com", "", "github-copilot"),
    ("api.z.ai", "/api/coding/", "zai-coding-plan"),
    ("api.z.ai", "/api/anthropic", "zai-coding-plan"),
    ("api.z.ai", "", "zai"),
    ("open.bigmodel.cn", "/api/coding/", "zhipuai-coding-plan"),
    ("open.bigmodel.cn", "/api/anthropic", "zhipuai-coding-plan"),
    ("open.bigmodel.cn", "", "zhipuai"),
    ("api.deepseek.com", "", "deepseek"),
    ("openrouter.ai", "", "openrouter"),
    ("generativelanguage.googleapis.com", "", "gemini"),
    ("cloudcode-pa.googleapis.com", "", "gemini-cli"),
)

# The route mode a provider's host gets unless [proxy_mode.provider_modes] says
# otherwise: Code Assist's API is no client format tokn serves, so the Gemini
# CLI's own sign-in passes through (usage observed); `switch` gives its flows
# a pooled gemini-cli account.
DEFAULT_PROVIDER_MODES: dict[str, str] = {"gemini-cli": "passthrough"}

# Built-in interception allowlist: every host of the table, in its order.
BUILTIN_INTERCEPT: tuple[str, ...] = tuple(dict.fromkeys(p for p, _, _ in HOST_PROVIDERS))


def hosts_of(provider_id: str) -> tuple[str, ...]:
    """The host patterns ``provider_id`` owns (its rows of the table)."""
    return tuple(dict.fromkeys(p for p, _, pid in HOST_PROVIDERS if pid == provider_id))


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")


def normalize_host(host: str) -> str:
    """Lower case, brackets and one trailing dot removed, IP literals canonical
    (``[0:0::1]`` -> ``::1``).  Not a validator: see :func:`parse_authority`."""
    value = host.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if value.endswith("."):
        value = value[:-1]
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return value


def parse_authority(value: str, default_port: int) -> tuple[str, int]:
    """A ``Host`` / ``:authority`` value as ``(host, port)``: a DNS name, an
    IPv4 literal or a bracketed IPv6 literal, then optionally ``:PORT``.
    Userinfo, paths, spaces, zone ids, non-ASCII or several values raise
    ``ValueError``."""
    if not value or len(value) > 262 or not value.isascii() or any(
            ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ValueError("not a host name")
    if value.startswith("["):
        literal, sep, rest = value[1:].partition("]")
        if not sep or "%" in literal:
            raise ValueError("not a bracketed IPv6 literal")
        host = ipaddress.IPv6Address(literal).compressed  # ValueError when not
    else:
        if value.count(":") > 1:
            raise ValueError("an IPv6 literal must be in brackets")
        name, sep, port_text = value.partition(":")
        rest = sep + port_text
        host = normalize_host(name)
        if not host or not _NAME_RE.match(host) or len(host) > 253:
            raise ValueError("not a host name")
    if not rest:
        return host, default_port
    if not rest.startswith(":") or not _PORT_RE.match(rest[1:]) or not 0 < int(rest[1:]) < 65536:
        raise ValueError("not a port from 1 to 65535")
    return host, int(rest[1:])


def host_matches(pattern: str, host: str) -> bool:
    """Case-insensitive match where ``*`` stands for exactly one DNS label."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    p_labels, h_labels = pattern.split("."), host.split(".")
    if len(p_labels) != len(h_labels):
        return False
    return all(h == p or (p == "*" and h != "") for p, h in zip(p_labels, h_labels))


def intercept_patterns(extra: Iterable[str] = (), minus: Iterable[str] = ()) -> list[str]:
    """Built-in allowlist + ``extra`` (``[proxy_mode].intercept_hosts``), minus
    every pattern listed in ``minus`` (``[proxy_mode].passthrough_hosts``)."""
    removed = {m.lower() for m in minus}
    out: list[str] = []
    for pattern in (*BUILTIN_INTERCEPT, *extra):
        pattern = pattern.lower().strip()
        if pattern and pattern not in removed and pattern not in out:
            out.append(pattern)
    return out


def should_intercept(host: str, patterns: Iterable[str], minus: Iterable[str] = ()) -> bool:
    """True when ``host`` matches an intercept pattern and no passthrough one."""
    if any(host_matches(m, host) for m in minus):
        return False
    return any(host_matches(p, host) for p in patterns)


def provider_for(host: str, path: str = "/") -> str | None:
    """The provider id that owns ``host`` (and ``path``), or ``None``."""
    for pattern, prefix, provider in HOST_PROVIDERS:
        if host_matches(pattern, host) and path.startswith(prefix):
            return provider
    return None
