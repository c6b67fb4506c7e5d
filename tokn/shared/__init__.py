"""State shared by several tokn replicas (``pip install 'tokn[team]'``).

``[state] url = "redis://..."``: account health, sticky sessions and tokens
(with the single-flight refresh lock) live in Redis (:mod:`.link`,
:mod:`.pool_state`, :mod:`.tokens`); ``[usage] url = "postgresql://..."``:
usage rows go to PostgreSQL (:mod:`.pg_usage`).  Without them tokn keeps its
embedded defaults (memory, state files, SQLite).
"""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokn.config import Config


def redacted(url: str) -> str:
    """``url`` without its password (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def missing_extra(cfg: Config) -> str | None:
    """Why ``cfg``'s shared backends cannot be used here (the ``tokn[team]``
    clients are not installed), or ``None``."""
    need = [(key, module) for key, url, module in (
        ("[state] url", cfg.state.url, "redis"), ("[usage] url", cfg.usage.url, "psycopg"))
        if url and importlib.util.find_spec(module) is None]
    if not need:
        return None
    return (f"{' and '.join(k for k, _ in need)} need(s) the {', '.join(m for _, m in need)} "
            "client: pip install 'tokn[team]'")


def usage_reader(cfg: Config) -> Any:
    """A read connection to ``cfg``'s usage store for :mod:`tokn.usage_query`:
    PostgreSQL with ``[usage] url``, else the local SQLite file (empty when
    nothing was recorded yet)."""
    if cfg.usage.url:
        from tokn.shared.pg_usage import PgReader

        return PgReader(cfg.usage.url)
    from tokn import usage

    return usage.open_readonly(usage.default_path())


def usage_where(cfg: Config) -> str:
    """Where ``cfg``'s usage rows are (a path, or the URL without password)."""
    if cfg.usage.url:
        return redacted(cfg.usage.url)
    from tokn import usage

    return str(usage.default_path())
