"""The dashboard's read-only pages: overview, usage, requests (list and
detail) and config.  Each handler gathers plain values and renders a template;
store reads go through :class:`tokn.ui.data.UsageReader` (off the loop)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from tokn import ca, config, state
from tokn.accounts import health_of
from tokn.config_keys import ROUTE_MODES
from tokn.server.ui_auth import Session
from tokn.server.usage_routes import parse_params
from tokn.ui import charts
from tokn.ui.data import BREAKDOWNS, METRICS, UsageReader, day_points, local_midnight
from tokn.ui.quotas import QuotaCache, quota_view
from tokn.ui.web import Web
from tokn.usage_query import RowFilter

FRONT_DOORS = ("listener", "proxy", "dashboard")
RANGES = (("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"))
USAGE_FILTERS = ("since", "until", "account", "provider", "model")
CHART_ROWS = 12
LIST_ROWS = 100
INITIATOR_NOTES = {"user": "user (premium on Copilot)", "agent": "agent (free on Copilot)"}


def ca_fingerprint() -> str | None:
    """SHA-256 of tokn's CA certificate, when it exists (never creates it)."""
    files = ca.ca_files()
    if not files.cert_path.is_file():
        return None
    blocks = ca.split_pem_certs(files.cert_path.read_bytes())
    return ca.fingerprint_sha256(blocks[0]) if blocks else None


def pretty_body(text: str | None) -> str | None:
    """A stored body, indented when it is JSON."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def shown(value: Any) -> str:
    """A config value as the config file would spell it (an empty string as ``""``)."""
    return value if isinstance(value, str) and value else json.dumps(value, default=str)


class Pages:
    def __init__(self, web: Web, runtime: Any, reader: UsageReader, quotas: QuotaCache) -> None:
        self.web = web
        self.runtime = runtime
        self.reader = reader
        self.quotas = quotas

    # --- overview -------------------------------------------------------------------
    def account_rows(self, today: dict[str, Any]) -> list[dict[str, Any]]:
        """Every configured account with health, plan/quota and today's figures."""
        pool = self.runtime.pool
        info = state.read("account-info")
        failing = pool.listing_errors()
        rows = []
        for acc in self.runtime.cfg.accounts:
            record = dataclasses.asdict(pool.health[acc.id]) if acc.id in pool.health else None
            entry = self.quotas.get(acc.id) if acc.id in pool.providers else None
            view = quota_view(entry.facts) if entry is not None and entry.facts else None
            saved = info.get(acc.id) if isinstance(info.get(acc.id), dict) else {}
            rows.append({
                "id": acc.id, "provider": acc.provider, "enabled": acc.enabled,
                "health": health_of(record, enabled=acc.enabled),
                "listing_error": failing[acc.id].message if acc.id in failing else None,
                "quota": view, "plan": (view.plan if view else None) or saved.get("plan"),
                "quota_error": entry.error if entry is not None else None,
                "quota_pending": entry is not None and entry.facts is None and not entry.error,
                "today": today.get(acc.id),
            })
        return rows

    async def overview(self, request: Request, session: Session) -> Response:
        report = await self.reader.report(since=local_midnight(time.time()), by="account")
        fingerprint = await asyncio.to_thread(ca_fingerprint)
        return self.web.render(
            request, session, "overview.html", page="overview",
            accounts=self.account_rows({g.key: g.totals for g in report.groups}),
            totals=report.totals, api_url=self.runtime.api_url,
            proxy_url=self.runtime.proxy_url, fingerprint=fingerprint,
            recording=self.runtime.usage is not None)

    # --- usage ----------------------------------------------------------------------
    async def usage(self, request: Request, session: Session) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in USAGE_FILTERS and v}
        params.setdefault("since", "7d")
        metric = request.query_params.get("metric", "requests")
        error = None
        if metric not in METRICS:
            error, metric = f"unknown metric {metric!r}", "requests"
        try:
            kwargs = parse_params(params)
        except ValueError as exc:
            error, params, kwargs = str(exc), {"since": "7d"}, parse_params({"since": "7d"})
        days, groups = await self.reader.breakdowns(kwargs)
        label, value = METRICS[metric]
        charts_by = []
        for name in BREAKDOWNS:
            report = groups[name]
            ordered = sorted(report.groups, key=lambda g: (-value(g.totals), g.key))
            bars = [(INITIATOR_NOTES.get(g.key, g.key) if name == "initiator" else g.key,
                     value(g.totals)) for g in ordered[:CHART_ROWS]]
            charts_by.append({"name": name, "groups": ordered, "chart": charts.hbars(
                bars, title=f"{label} by {name}", unit=label)})
        points = day_points(days, metric, kwargs.get("since"), kwargs.get("until"), time.time())
        return self.web.render(
            request, session, "usage.html", page="usage", error=error, params=params,
            metric=metric, metrics=METRICS, ranges=RANGES, totals=days.totals,
            day_chart=charts.columns(points, title=f"{label} per day", unit=label),
            breakdowns=charts_by, days=days.groups, recording=self.runtime.usage is not None)

    # --- requests -------------------------------------------------------------------
    async def requests(self, request: Request, session: Session) -> Response:
        error = None
        try:
            where = RowFilter.parse(request.query_params)
        except ValueError as exc:
            error, where = str(exc), RowFilter()
        store = self.runtime.usage
        after = store.feed.last_seq if store is not None else 0  # before the read: no gap
        rows = await self.reader.recent(where, LIST_ROWS)
        live = "/ui/events?" + urlencode({**where.active(), "after": after})
        return self.web.render(
            request, session, "requests.html", page="requests", error=error, rows=rows,
            where=where, live_url=live if store is not None else None,
            accounts=[a.id for a in self.runtime.cfg.accounts], front_doors=FRONT_DOORS,
            route_modes=ROUTE_MODES, record_bodies=self.runtime.cfg.usage.record_bodies)

    async def request_detail(self, request: Request, session: Session) -> Response:
        request_id = request.path_params["request_id"]
        rows = await self.reader.attempts(request_id)
        if not rows:
            return self.web.problem(request, session, 404, "No such request",
                                    f"the usage store has no request {request_id!r}.")
        for row in rows:
            row["request_body"] = pretty_body(row.get("request_body"))
            row["response_body"] = pretty_body(row.get("response_body"))
        return self.web.render(request, session, "request.html", page="requests",
                               request_id=request_id, attempts=rows,
                               record_bodies=self.runtime.cfg.usage.record_bodies)

    # --- config ---------------------------------------------------------------------
    async def config_page(self, request: Request, session: Session) -> Response:
        cfg = self.runtime.cfg
        data = dataclasses.asdict(cfg)
        sections = [(name, [(k, shown(v)) for k, v in config.flatten(
            config.masked(data[name]))]) for name in config.SECTIONS]
        accounts = []
        for acc in data["accounts"]:
            fields = acc.pop("fields")
            accounts.append((acc["id"], [(k, shown(v)) for k, v in config.flatten(
                config.masked({**acc, **fields}))]))
        return self.web.render(request, session, "config.html", page="config",
                               sections=sections, accounts=accounts,
                               path=str(cfg.path) if cfg.path else None,
                               warnings=cfg.warnings)
