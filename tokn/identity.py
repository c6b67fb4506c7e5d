"""Who is calling: resolved once at a front door, then carried with the request.

The listener reads the key a client presents (``Authorization: Bearer``,
``x-api-key``, or Google's ``x-goog-api-key`` / ``?key=``); the proxy reads
``Proxy-Authorization: Basic`` once per client connection.  Both turn it into
an :class:`Identity` with :func:`identify`, and the identity travels with the
request (the proxy hands it to the listener on its internal hop) to the
pipeline and the usage log.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """A caller as tokn knows it: ``admin`` (the API key), ``anonymous`` (no
    key is configured, so every caller is admitted)."""

    name: str


ADMIN = Identity("admin")
ANONYMOUS = Identity("anonymous")


def presented_key(headers: Mapping[str, str],
                  query: Mapping[str, str] | None = None) -> str | None:
    """The key a client sent: ``Authorization: Bearer K``, ``x-api-key: K``,
    ``x-goog-api-key: K`` (Google's SDKs), else the ``key`` query parameter of
    ``query`` (Google's ``?key=K``; only where the caller passes the query)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name) is not None:
            return headers.get(name)
    return query.get("key") if query is not None else None


def key_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison; an unset ``expected`` admits everyone."""
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def identify(api_key: str, presented: str | None) -> Identity | None:
    """The caller presenting ``presented``, or ``None`` when refused."""
    if not api_key:
        return ANONYMOUS
    return ADMIN if key_matches(api_key, presented) else None
