"""Pure decisions of the proxy: route mode, endpoint mapping, allowlist regex."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

from tokn.config import ROUTE_MODES

MODE_HEADER = "x-tokn-route-mode"

# (method, path suffix) -> inbound format, most specific first.  A suffix
# match covers every host's prefix: /v1/... (OpenAI, Anthropic), Copilot's
# un-prefixed paths, /api/paas/v4/... (Z.ai), /api/v1/... (OpenRouter).
ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/chat/completions", "chat"),
    ("POST", "/messages/count_tokens", "count_tokens"),
    ("POST", "/messages", "messages"),
    ("POST", "/responses", "responses"),
    ("POST", "/embeddings", "embeddings"),
    ("GET", "/models", "models"),
)

LISTENER_PATHS = {
    "chat": "/v1/chat/completions",
    "count_tokens": "/v1/messages/count_tokens",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
    "embeddings": "/v1/embeddings",
    "models": "/v1/models",
}


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


def map_endpoint(method: str, path: str) -> str | None:
    """The standard endpoint for a request, or ``None`` when tokn has none."""
    path = path.split("?", 1)[0].rstrip("/")
    for verb, suffix, fmt in ENDPOINTS:
        if method.upper() == verb and path.endswith(suffix):
            return fmt
    return None


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
