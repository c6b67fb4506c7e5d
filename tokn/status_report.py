"""What ``tokn status`` reports: the running instance (its status file), its
accounts' health and the last hour of the usage log.

:func:`gather` builds the stable JSON document of ``tokn status --json``
(``schema`` 1; fields are only ever added).  Times are ``{"epoch_s", "iso"}``
like ``tokn usage --json``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tokn import __version__, instance, paths, state
from tokn.accounts import HEALTH_STATE, health_of
from tokn.config import Config, ConfigError, load_config
from tokn.logs import log_file
from tokn.ports import accepts
from tokn.usage_query import Totals, query, stamp

SCHEMA = 1
LAST_HOUR = 3600.0


def _door(found: instance.Running, name: str) -> dict[str, Any] | None:
    where = found.status.get(name)
    if not isinstance(where, dict) or not isinstance(where.get("port"), int):
        return None
    host = str(where.get("host") or "127.0.0.1")
    return {"url": where.get("url"), "host": host, "port": where["port"],
            "bind": where.get("bind", host), "accepting": accepts(host, where["port"])}


def _accounts(cfg: Config, now: float) -> list[dict[str, Any]]:
    saved = state.read(HEALTH_STATE)
    out = []
    for acc in cfg.accounts:
        health = health_of(saved.get(acc.id), enabled=acc.enabled, now=now)
        out.append({"id": acc.id, "provider": acc.provider, "enabled": acc.enabled,
                    "health": health["status"], "text": health["text"],
                    "until": stamp(health["until"]), "failures": health["failures"],
                    "last_error": health["last_error"]})
    return out


def _last_hour(cfg: Config, now: float) -> tuple[Totals, str | None]:
    from tokn.shared import missing_extra, usage_reader

    problem = missing_extra(cfg) if cfg.usage.url else None
    if problem:
        return Totals(), f"cannot read the usage store: {problem}"
    try:
        conn = usage_reader(cfg)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: a problem, not a crash
        return Totals(), f"cannot reach the usage store: {str(exc).strip()}"
    try:
        return query(conn, since=now - LAST_HOUR).totals, None
    except Exception as exc:  # noqa: BLE001 - sqlite3 or PostgreSQL: a problem, not a crash
        return Totals(), f"cannot read the usage store: {exc}"
    finally:
        conn.close()


def _reload(done: Any) -> dict[str, Any] | None:
    """The last reload the process recorded (``count`` 0: none yet)."""
    if not isinstance(done, dict):
        return None
    at = done.get("at")
    return {"count": int(done.get("count") or 0),
            "at": stamp(at) if isinstance(at, int | float) else None,
            "applied": done.get("applied"), "message": done.get("message")}


def _config(done: Any) -> dict[str, Any] | None:
    """The config file content the process last took up or refused (None:
    it has not looked yet)."""
    if not isinstance(done, dict):
        return None
    at = done.get("at")
    return {"generation": int(done.get("generation") or 0),
            "at": stamp(at) if isinstance(at, int | float) else None,
            "applied": done.get("applied"), "message": done.get("message"),
            "restart": [str(k) for k in done.get("restart") or ()]}


def gather(now: float | None = None) -> dict[str, Any]:
    """The whole ``tokn status`` document (see the README for its fields)."""
    now = time.time() if now is None else now
    found = instance.running()
    problems: list[str] = []
    try:
        cfg = load_config()
    except ConfigError as exc:
        cfg = Config()
        problems.append(str(exc))
    status = found.status if found else {}
    started = status.get("started_at")
    totals, usage_error = _last_hour(cfg, now)
    if usage_error:
        problems.append(usage_error)
    hour = totals.to_dict()
    return {
        "schema": SCHEMA,
        "running": found is not None,
        "ready": bool(found and found.ready),  # false while it is still starting
        "pid": found.pid if found else None,
        "version": status.get("version"),
        "cli_version": __version__,
        "started": stamp(started) if isinstance(started, int | float) else None,
        "uptime_secs": round(now - started, 1) if isinstance(started, int | float) else None,
        "supervisor": status.get("supervisor"),
        "listener": _door(found, "listener") if found else None,
        "proxy": _door(found, "proxy") if found else None,
        "service": status.get("service"),
        "reload": _reload(status.get("reload")),
        "config": _config(status.get("config")),
        "home": os.environ.get("TOKN_HOME") or None,
        "config_file": str(paths.config_file()),
        "log_file": str(status.get("log_file") or log_file(cfg)),
        "accounts": _accounts(cfg, now),
        "last_hour": {k: hour[k] for k in (
            "requests", "errors", "error_rate", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_write_tokens", "total_tokens", "premium_requests",
            "median_latency_ms", "p95_latency_ms")},
        "problems": problems,
    }
