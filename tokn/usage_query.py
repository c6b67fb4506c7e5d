"""Reports over the usage store (pure functions over a ``sqlite3`` connection).

Units, everywhere: ``ts`` / ``since`` / ``until`` are epoch **seconds**
(floats); ``*_latency_ms`` are milliseconds.  ``since`` is inclusive and
``until`` exclusive: a row at exactly ``since`` is counted, one at exactly
``until`` is not, so consecutive windows never count a row twice.

Dates and date-times without an explicit offset are read in local time, and
``--by day`` groups by local calendar day, so ``--since 2026-11-01`` and the
``2026-11-01`` day group mean the same span.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import sqlite3
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

GROUPS: dict[str, str] = {
    "account": "COALESCE(account, '-')",
    "provider": "COALESCE(provider, '-')",
    "model": "COALESCE(model_served, model_requested, '-')",
    "day": "strftime('%Y-%m-%d', ts, 'unixepoch', 'localtime')",
    "initiator": "COALESCE(initiator, '-')",
    "key": "COALESCE(key_name, '-')",  # who called: admin, anonymous or a person's key
}
PREMIUM_PROVIDER = "github-copilot"

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400,
          "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)$", re.IGNORECASE)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# Epoch seconds reach 1e11 in the year 5138; a bigger number is milliseconds.
_MAX_EPOCH_S = 1e11

HELP_TIME = ("a duration back from now (30m, 24h, 7d, 2w; m = minutes), a local date "
             "(2026-11-01), a local date-time (2026-11-01T10:00, or with Z / +02:00), "
             "or epoch seconds (1767225600)")


def parse_since(value: str | float | int, now: float | None = None) -> float:
    """A ``--since`` / ``--until`` value -> epoch seconds.

    Raises :class:`ValueError` saying which forms are accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"cannot read {value!r} as a time; use {HELP_TIME}")
    if isinstance(value, int | float):
        return _epoch(float(value), repr(value))
    text = str(value).strip()
    if not text:
        raise ValueError(f"an empty time was given; use {HELP_TIME}")
    now = time.time() if now is None else now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    if _NUMBER.match(text):
        return _epoch(float(text), text)
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time; use {HELP_TIME}") from None
    return parsed.timestamp()  # naive -> local time


def _epoch(number: float, shown: str) -> float:
    if number < 0:
        raise ValueError(f"{shown} is negative; epoch seconds start at 0 (1970-01-01)")
    if number >= _MAX_EPOCH_S:
        raise ValueError(f"{shown} looks like epoch milliseconds; tokn takes epoch seconds "
                         f"(divide by 1000: {number / 1000:.3f})")
    return number


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 in UTC with milliseconds (``...Z``)."""
    if ts is None:
        return None
    stamp = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(ts: float | None) -> dict[str, Any] | None:
    """A time as both labelled forms: ``{"epoch_s": ..., "iso": ...}``."""
    return None if ts is None else {"epoch_s": ts, "iso": iso(ts)}


@dataclass
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    premium_requests: int = 0
    errors: int = 0
    estimated_rows: int = 0
    credits: float | None = None
    median_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_tokens
                + self.cache_write_tokens)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("first_ts")
        data.pop("last_ts")
        data["total_tokens"] = self.total_tokens
        data["error_rate"] = round(self.error_rate, 6)
        for name in ("median_latency_ms", "p95_latency_ms"):
            if data[name] is not None:
                data[name] = round(data[name], 3)
        data["first"] = stamp(self.first_ts)
        data["last"] = stamp(self.last_ts)
        return data


@dataclass
class Group:
    key: str
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, **self.totals.to_dict()}


@dataclass
class Report:
    since: float | None
    until: float | None
    by: str | None
    filters: dict[str, str] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    groups: list[Group] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": {"since": stamp(self.since), "until": stamp(self.until),
                       "since_inclusive": True, "until_exclusive": True},
            "units": {"time": "epoch seconds (epoch_s) and ISO-8601 UTC (iso)",
                      "latency": "milliseconds", "tokens": "tokens"},
            "filters": self.filters,
            "by": self.by,
            "totals": self.totals.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
        }


def _where(since: float | None, until: float | None, account: str | None,
           provider: str | None, model: str | None,
           key: str | None = None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if since is not None:
        clauses.append("ts >= ?")
        args.append(since)
    if until is not None:
        clauses.append("ts < ?")
        args.append(until)
    if account:
        clauses.append("account = ?")
        args.append(account)
    if provider:
        clauses.append("provider = ?")
        args.append(provider)
    if model:
        clauses.append("(model_requested = ? OR model_served = ?)")
        args += [model, model]
    if key:
        clauses.append("key_name = ?")
        args.append(key)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_AGG = f"""COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
 COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0),
 COALESCE(SUM(reasoning_tokens), 0),
 COALESCE(SUM(CASE WHEN provider = '{PREMIUM_PROVIDER}' AND initiator = 'user'
                   AND status < 400 THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN status IS NULL OR status >= 400 THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN estimated <> 0 THEN 1 ELSE 0 END), 0),
 SUM(credits), MIN(ts), MAX(ts)"""


def p95(values: list[float]) -> float | None:
    """The 95th percentile (nearest rank: the smallest value with at least 95 %
    of the values at or below it); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def _latencies(totals: Totals, values: list[float]) -> None:
    ordered = sorted(values)  # (cheap for sorted runs, which :func:`_scan` gives)
    totals.median_latency_ms = statistics.median(ordered) if ordered else None
    totals.p95_latency_ms = p95(ordered)


def _totals(row: Any) -> Totals:
    values = list(row)
    return Totals(*[int(v) for v in values[:9]], credits=values[9], first_ts=values[10],
                  last_ts=values[11])


def query(conn: sqlite3.Connection, since: float | None = None, until: float | None = None,
          account: str | None = None, provider: str | None = None, model: str | None = None,
          by: str | None = None, key: str | None = None) -> Report:
    """Totals (and per-``by`` groups) of the rows with ``since <= ts < until``.

    An error is a row with ``status >= 400`` or no status.  A premium request
    is a GitHub Copilot attempt the user initiated that succeeded
    (``provider = 'github-copilot' AND initiator = 'user' AND status < 400``).
    ``model`` matches the requested or the served model; ``key`` the caller's
    key name (``admin``, ``anonymous`` or a person's).  Latency: the median
    and the 95th percentile (:func:`p95`) of the rows that have one.
    """
    return reports(conn, [by], since=since, until=until, account=account,
                   provider=provider, model=model, key=key)[by]


def reports(conn: sqlite3.Connection, bys: list[str | None], since: float | None = None,
            until: float | None = None, account: str | None = None,
            provider: str | None = None, model: str | None = None,
            key: str | None = None) -> dict[str | None, Report]:
    """:func:`query` for each of ``bys`` (``None``: the totals alone), from two
    scans of the rows however many reports: the aggregates grouped by every
    key at once (all additive, folded here per key), and the latencies with
    their keys."""
    keyed = [by for by in bys if by is not None]
    unknown = [by for by in keyed if by not in GROUPS]
    if unknown:
        raise ValueError(f"cannot group by {unknown[0]!r}; use one of: {', '.join(GROUPS)}")
    where, args = _where(since, until, account, provider, model, key)
    filters = {k: v for k, v in (("account", account), ("provider", provider),
                                 ("model", model), ("key", key)) if v}
    total, sums, latencies, per_latencies = _scan(conn, [GROUPS[by] for by in keyed],
                                                  where, args)
    totals = _totals(total)
    _latencies(totals, latencies)  # once: every report has the same totals
    out: dict[str | None, Report] = {}
    for by in bys:
        report = Report(since=since, until=until, by=by, filters=filters,
                        totals=replace(totals))
        if by is not None:
            i = keyed.index(by)
            report.groups = _groups(by, sums[i], per_latencies[i])
        out[by] = report
    return out


def _groups(by: str, sums: dict[str, list[Any]], latencies: dict[str, list[float]]
            ) -> list[Group]:
    groups = []
    for group_key, agg in sums.items():
        group = Group(group_key, _totals(agg))
        _latencies(group.totals, latencies.get(group_key, []))
        groups.append(group)
    if by == "day":
        groups.sort(key=lambda g: g.key)
    else:
        groups.sort(key=lambda g: (-g.totals.requests, g.key))
    return groups


_ZERO = (0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None)  # _AGG over no rows


def _fold(into: list[Any] | None, row: Any) -> list[Any]:
    """``into`` plus one ``_AGG`` row: counts and sums added (``credits``
    stays ``None`` until a row has some), the first ``ts`` the least, the last
    the greatest."""
    if into is None:
        return list(row)
    for i in range(9):
        into[i] += row[i]
    if row[9] is not None:
        into[9] = row[9] if into[9] is None else into[9] + row[9]
    if row[10] is not None and (into[10] is None or row[10] < into[10]):
        into[10] = row[10]
    if row[11] is not None and (into[11] is None or row[11] > into[11]):
        into[11] = row[11]
    return into


def _scan(conn: sqlite3.Connection, keys: list[str], where: str, args: list[Any]
          ) -> tuple[Any, list[dict[str, list[Any]]], list[float], list[dict[str, list[float]]]]:
    """The totals (an ``_AGG`` row), per key expression its groups' ``_AGG``
    rows, all latencies, and per key its groups' latencies."""
    n = len(keys)
    head = "".join(f"{k}, " for k in keys)
    group_by = (" GROUP BY " + ", ".join(str(i + 1) for i in range(n))) if n else ""
    total: list[Any] | None = None
    sums: list[dict[str, list[Any]]] = [{} for _ in keys]
    for row in conn.execute(f"SELECT {head}{_AGG} FROM requests{where}{group_by}", args):
        agg = row[n:]
        if not agg[0]:
            continue  # no GROUP BY and no rows: one row of zeros
        total = _fold(total, agg)
        for i, per in enumerate(sums):
            per[row[i]] = _fold(per.get(row[i]), agg)
    # latencies in order, per combination of keys (one dict step a row), then
    # each key's groups gather their combinations' runs (sorted back cheaply)
    latencies: list[float] = []
    runs: dict[tuple[Any, ...], list[float]] = {}
    for row in conn.execute(f"SELECT {head}latency_ms FROM requests{where}"
                            f"{' AND' if where else ' WHERE'} latency_ms IS NOT NULL"
                            " ORDER BY latency_ms", args):
        latencies.append(row[n])
        runs.setdefault(tuple(row[:n]), []).append(row[n])
    per_latencies: list[dict[str, list[float]]] = [{} for _ in keys]
    for combination, values in runs.items():
        for i, per in enumerate(per_latencies):
            per.setdefault(combination[i], []).extend(values)
    return (total if total is not None else _ZERO), sums, latencies, per_latencies


# --- single rows (the dashboard's request list and detail view) ------------------------
ROW_FILTERS = ("status", "model", "account", "front_door", "route_mode")


@dataclass(frozen=True)
class RowFilter:
    """Which rows a request list shows; every field empty = all.

    ``status``: ``"ok"`` (below 400), ``"error"`` (400 and above, or none) or
    one status code; ``model`` matches the requested or the served model.  The
    same test as SQL (:meth:`sql`, for the store) and in Python
    (:meth:`matches`, for live rows).
    """

    status: str = ""
    model: str = ""
    account: str = ""
    front_door: str = ""
    route_mode: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RowFilter:
        """From query parameters (others ignored); ``ValueError`` on a bad status."""
        values = {f.name: str(params.get(f.name) or "").strip() for f in fields(cls)}
        status = values["status"]
        if status and status not in ("ok", "error") and not \
                (status.isdigit() and 100 <= int(status) <= 599):
            raise ValueError(f"status: {status!r} is not ok, error or an HTTP status code")
        return cls(**values)

    def active(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def sql(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.status == "ok":
            clauses.append("status < 400")
        elif self.status == "error":
            clauses.append("(status IS NULL OR status >= 400)")
        elif self.status:
            clauses.append("status = ?")
            args.append(int(self.status))
        if self.model:
            clauses.append("(model_requested = ? OR model_served = ?)")
            args += [self.model, self.model]
        for name in ("account", "front_door", "route_mode"):
            if getattr(self, name):
                clauses.append(f"{name} = ?")
                args.append(getattr(self, name))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def matches(self, row: Mapping[str, Any]) -> bool:
        status = row.get("status")
        if self.status == "ok" and not (status is not None and status < 400):
            return False
        if self.status == "error" and not (status is None or status >= 400):
            return False
        if self.status.isdigit() and status != int(self.status):
            return False
        if self.model and self.model not in (row.get("model_requested"),
                                             row.get("model_served")):
            return False
        return all(row.get(name) == getattr(self, name)
                   for name in ("account", "front_door", "route_mode") if getattr(self, name))


LIST_COLUMNS = "id, " + ", ".join((
    "ts", "request_id", "front_door", "route_mode", "client", "inbound_format",
    "upstream_format", "provider", "account", "model_requested", "model_served", "initiator",
    "stream", "status", "error", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "estimated", "ttfb_ms", "latency_ms"))


def recent(conn: sqlite3.Connection, where: RowFilter = RowFilter(),
           limit: int = 100) -> list[dict[str, Any]]:
    """The latest ``limit`` rows matching ``where``, newest first (no bodies)."""
    clause, args = where.sql()
    return [dict(r) for r in conn.execute(
        f"SELECT {LIST_COLUMNS} FROM requests{clause} ORDER BY id DESC LIMIT ?",
        [*args, limit])]


def attempts(conn: sqlite3.Connection, request_id: str) -> list[dict[str, Any]]:
    """Every row (upstream attempt) of one request, bodies included, in order."""
    return [dict(r) for r in conn.execute(
        "SELECT * FROM requests WHERE request_id = ? ORDER BY id", (request_id,))]


def last_used_by_key(conn: sqlite3.Connection) -> dict[str, float]:
    """Each caller's key name -> the time of its latest row (epoch seconds)."""
    return {name: ts for name, ts in conn.execute(
        "SELECT key_name, MAX(ts) FROM requests WHERE key_name IS NOT NULL GROUP BY key_name")}
