"""The dashboard's reads of the usage store, off the event loop.

Every query is a :mod:`tokn.usage_query` function (the numbers ``tokn usage``
and ``GET /v1/usage`` print) run in a worker thread on its own read-only
connection, at most :data:`SLOTS` at a time, so a heavy report never holds up
the API.  Plus the pure shaping the usage page needs (metrics, days filled in).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable
from typing import Any

from tokn import usage as usage_mod
from tokn.usage import UsageStore
from tokn.usage_query import GROUPS, Report, RowFilter, Totals, attempts, query, recent, reports

SLOTS = 1  # one report at a time: the API keeps the other core
FLUSH_SECS = 2.0
# Usage page metrics: name -> (label, value of a Totals)
METRICS: dict[str, tuple[str, Callable[[Totals], float]]] = {
    "requests": ("requests", lambda t: t.requests),
    "tokens": ("tokens", lambda t: t.total_tokens),
    "output": ("output tokens", lambda t: t.output_tokens),
    "errors": ("errors", lambda t: t.errors),
    "premium": ("premium requests", lambda t: t.premium_requests),
}
# The breakdowns the usage page draws, every grouping tokn usage knows but the day
# (drawn as its own chart): a new entry in usage_query.GROUPS is one more chart.
BREAKDOWNS = tuple(name for name in GROUPS if name != "day")


def _run(connect: Callable[[], Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    conn = connect()  # nothing recorded yet: an empty store, the same answers
    try:
        return fn(conn, *args)
    finally:
        conn.close()


class UsageReader:
    """Reads the running store (SQLite or PostgreSQL: its ``connect_reader``),
    or the local SQLite file when usage recording is off."""

    def __init__(self, store: UsageStore | Any | None) -> None:
        self.store = store
        self.connect: Callable[[], Any] = (
            store.connect_reader if store is not None
            else lambda: usage_mod.open_readonly(usage_mod.default_path()))
        self._slots: asyncio.Semaphore | None = None

    async def run(self, fn: Callable[..., Any], *args: Any, flush: bool = False) -> Any:
        """``fn(conn, *args)`` in a worker thread; ``flush`` first commits the
        rows recorded so far (bounded: a busy writer only delays, never blocks)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(SLOTS)
        async with self._slots:
            if flush and self.store is not None:
                await asyncio.to_thread(self.store.flush, FLUSH_SECS)
            return await asyncio.to_thread(_run, self.connect, fn, args)

    async def report(self, **kwargs: Any) -> Report:
        return await self.run(lambda conn: query(conn, **kwargs))

    async def breakdowns(self, kwargs: dict[str, Any]) -> tuple[Report, dict[str, Report]]:
        """The day report (with the totals) and one report per :data:`BREAKDOWNS`
        entry, each with the totals: one thread hop, two scans of the rows."""
        def every(conn: sqlite3.Connection) -> tuple[Report, dict[str, Report]]:
            got = reports(conn, ["day", *BREAKDOWNS], **kwargs)
            return got["day"], {name: got[name] for name in BREAKDOWNS}

        return await self.run(every, flush=True)

    async def recent(self, where: RowFilter, limit: int = 100) -> list[dict[str, Any]]:
        return await self.run(recent, where, limit, flush=True)

    async def attempts(self, request_id: str) -> list[dict[str, Any]]:
        return await self.run(attempts, request_id, flush=True)


def local_midnight(now: float) -> float:
    """Epoch seconds of today's local midnight."""
    day = dt.datetime.fromtimestamp(now).astimezone()
    return day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def day_points(report: Report, metric: str, since: float | None, until: float | None,
               now: float) -> list[tuple[str, float]]:
    """``(YYYY-MM-DD, value)`` for every local day of the window, days without
    rows as 0 (a window without a start begins at the first row)."""
    value = METRICS[metric][1]
    have = {g.key: value(g.totals) for g in report.groups}
    start = since if since is not None else report.totals.first_ts
    if start is None:
        return []
    first = dt.date.fromtimestamp(start)
    # until is exclusive: a window ending at midnight does not show that day
    last = dt.date.fromtimestamp(min(until - 0.001, now) if until is not None else now)
    if (last - first).days > 366 * 3:  # a silly window: just the days that have rows
        return sorted(have.items())
    out = []
    day = first
    while day <= last:
        key = day.isoformat()
        out.append((key, have.get(key, 0)))
        day += dt.timedelta(days=1)
    return out
