"""Who is calling: resolved once at a front door, then carried with the request.

The listener reads the key a client presents (``Authorization: Bearer``,
``x-api-key``, or Google's ``x-goog-api-key`` / ``?key=``); the proxy reads
``Proxy-Authorization: Basic`` once per client connection.  Both turn it into
an :class:`Identity` with :meth:`tokn.keys.KeyRing.identify` (the admin key, a
person's key), and the identity travels with the request (the proxy hands it
to the listener on its internal hop) to the pipeline and the usage log.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """A caller as tokn knows it: ``admin`` (the API key), ``anonymous`` (no
    key is configured, so every caller is admitted) or a person's key (team
    mode, :mod:`tokn.keys`) with its limits.  ``name`` is what usage rows and
    logs record; never the key itself."""

    name: str
    admin: bool = False  # may do everything (else: the model APIs only)
    rpm: int | None = None  # requests per minute
    tokens_per_day: int | None = None
    models: tuple[str, ...] = ()  # globs of the models it may use (empty: all)
    digest: str = ""  # of the person's key (a rotated key is another identity)


ADMIN = Identity("admin", admin=True)
ANONYMOUS = Identity("anonymous", admin=True)
# Names no person's key may take (they mean the identities above, or the
# proxy's fallback for a hop without a name).
RESERVED = frozenset({"admin", "anonymous", "proxy"})


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

