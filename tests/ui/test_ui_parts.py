"""The dashboard's pure parts: charts, quota lines, row filters, the live
feed, the usage page's days, redirect targets, p95, and the pool's and the
config file's account switches."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import account, write_config
from tests.providers.test_zai import PARSED as ZAI_PARSED
from tokn import accounts, state
from tokn.config import ConfigError, load_config
from tokn.pool import Pool
from tokn.ui.charts import columns, compact, hbars
from tokn.ui.data import day_points
from tokn.ui.quotas import quota_view
from tokn.ui.web import safe_next
from tokn.usage import MIGRATIONS
from tokn.usage_feed import Feed
from tokn.usage_query import Group, Report, RowFilter, Totals, p95


# --- charts ---------------------------------------------------------------------------
def test_hbars_scale_to_the_largest_and_escape_labels():
    svg = str(hbars([("<b>big</b>", 100), ("small", 25), ("none", 0)], title="t & u"))
    widths = [float(w) for w in re.findall(r'class="bar"[^>]*width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(4 * widths[1]) and widths[2] == 0
    assert "<b>" not in svg and "&lt;b&gt;big&lt;/b&gt;" in svg and "t &amp; u" in svg
    assert "no requests" in str(hbars([], title="x"))


def test_columns_one_bar_per_point_labels_thinned():
    points = [(f"2026-01-{d:02d}", d) for d in range(1, 31)]
    svg = str(columns(points, title="days"))
    assert svg.count('class="bar"') == 30
    assert 5 <= len(re.findall(r"2026-01-\d\d</text>", svg)) <= 10
    heights = [float(h) for h in re.findall(r'class="bar"[^>]*height="([\d.]+)"', svg)]
    assert heights == sorted(heights) and heights[-1] > heights[0] > 0
    # the axis runs from 0 to a round top above the largest value (30 -> 50)
    assert ">0</text>" in svg and ">25</text>" in svg and ">50</text>" in svg
    assert heights[-1] == pytest.approx((240 - 10 - 26) * 30 / 50, abs=0.1)


def test_compact():
    assert [compact(v) for v in (0, 7, 999, 1000, 1250, 2_500_000, 3e9)] == \
        ["0", "7", "999", "1k", "1.2k", "2.5M", "3G"]


# --- quotas ---------------------------------------------------------------------------
def test_quota_view_copilot_snapshots():
    view = quota_view({"plan": "individual", "quota_reset_date": "2026-12-01", "quotas": {
        "chat": {"unlimited": True},
        "premium_interactions": {"entitlement": 300, "remaining": 213,
                                 "percent_remaining": 71.0, "unlimited": False}}})
    assert view.plan == "individual" and view.resets == "2026-12-01"
    assert [(q.name, q.text, q.percent_left) for q in view.lines] == [
        ("chat", "unlimited", None), ("premium requests", "213 of 300 left", 71.0)]


def test_quota_view_kiro_credits_and_error():
    view = quota_view({"plan": "KIRO PRO", "quotas": {"credits": {
        "used": 12.5, "entitlement": 1000, "remaining": 987.5, "percent_remaining": 98.75}}})
    assert view.lines[0].text == "987.50 of 1,000 left (12.50 used)"
    assert view.lines[0].percent_left == 98.75
    assert quota_view({"usage_error": "HTTP 403: denied"}).error == "HTTP 403: denied"


def test_quota_view_zai_windows():
    view = quota_view(ZAI_PARSED)
    assert view.plan == "pro"
    names = [q.name for q in view.lines]
    assert names == ["tokens (5h)", "mcp_calls (1mo)"]
    assert view.lines[0].percent_left == 88.0
    assert view.lines[1].text.startswith("2% used (28 of 1,000), resets 2026-0")


# --- row filters: SQL and Python agree ----------------------------------------------------
ROW = st.fixed_dictionaries({
    "status": st.one_of(st.none(), st.sampled_from([200, 201, 399, 400, 404, 429, 499, 502])),
    "model_requested": st.sampled_from([None, "m-a", "m-b"]),
    "model_served": st.sampled_from([None, "m-a", "m-c"]),
    "account": st.sampled_from([None, "a1", "a2"]),
    "front_door": st.sampled_from([None, "listener", "proxy"]),
    "route_mode": st.sampled_from([None, "route", "switch"]),
})
FILTER = st.builds(RowFilter, status=st.sampled_from(["", "ok", "error", "404", "429"]),
                   model=st.sampled_from(["", "m-a", "m-c"]),
                   account=st.sampled_from(["", "a1"]),
                   front_door=st.sampled_from(["", "proxy"]),
                   route_mode=st.sampled_from(["", "route"]))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, max_size=12), where=FILTER)
def test_row_filter_sql_and_python_agree(rows, where):
    conn = sqlite3.connect(":memory:")
    conn.execute(MIGRATIONS[0])
    for i, row in enumerate(rows):
        conn.execute(f"INSERT INTO requests (ts, request_id, {', '.join(row)}) VALUES "
                     f"(?, ?, {', '.join('?' for _ in row)})", (i, str(i), *row.values()))
    clause, args = where.sql()
    in_sql = [r[0] for r in conn.execute(f"SELECT request_id FROM requests{clause} ORDER BY id",
                                         args)]
    assert in_sql == [str(i) for i, row in enumerate(rows) if where.matches(row)]


def test_row_filter_parse():
    assert RowFilter.parse({"status": "429", "model": " m ", "other": "x"}) == \
        RowFilter(status="429", model="m")
    for bad in ("teapot", "42", "600"):
        with pytest.raises(ValueError, match="status"):
            RowFilter.parse({"status": bad})


def test_p95_nearest_rank():
    assert p95([]) is None and p95([5.0]) == 5.0
    assert p95([float(v) for v in range(1, 101)]) == 95.0
    assert p95([float(v) for v in range(1, 21)]) == 19.0


# --- the live feed ----------------------------------------------------------------------
def test_feed_delivers_across_threads_keeps_a_backlog_and_drops_for_the_slow():
    feed = Feed(backlog=3)

    async def main():
        with feed.subscribe() as sub:
            worker = threading.Thread(target=feed.publish,
                                      args=({"request_id": "t", "request_body": "big",
                                             "error": "e" * 900},))
            worker.start()
            worker.join()
            seq, row = await sub.get(2)
            assert row["request_id"] == "t" and "request_body" not in row
            assert len(row["error"]) == 501
            assert await sub.get(0.05) is None
            for i in range(600):
                feed.publish({"request_id": str(i)})
            assert sub.dropped == 100 and sub.queue.qsize() == 500
            assert (await sub.get(1))[1]["request_id"] == "100"
        assert feed.subscribers == 0
        return seq

    first = asyncio.run(main())
    assert first == 1 and feed.last_seq == 601
    assert [s for s, _ in feed.recent()] == [599, 600, 601]
    assert [s for s, _ in feed.recent(600)] == [601]


# --- usage page days ----------------------------------------------------------------------
def test_day_points_fill_the_window_with_zeros():
    def at(day: str) -> float:
        return time.mktime(time.strptime(day, "%Y-%m-%d"))

    report = Report(since=None, until=None, by="day", groups=[
        Group("2026-03-02", Totals(requests=4)), Group("2026-03-05", Totals(requests=1))])
    points = day_points(report, "requests", at("2026-03-01"), at("2026-03-06"), at("2026-04-01"))
    assert points == [("2026-03-01", 0), ("2026-03-02", 4), ("2026-03-03", 0),
                      ("2026-03-04", 0), ("2026-03-05", 1)]
    report.totals.first_ts = None
    assert day_points(report, "requests", None, None, at("2026-04-01")) == []


@pytest.mark.parametrize("value, expected", [
    ("/ui/usage?since=7d", "/ui/usage?since=7d"), (None, "/ui/"), ("//evil.example/ui/", "/ui/"),
    ("https://evil.example/ui/", "/ui/"), ("/ui/\\evil", "/ui/"), ("/v1/models", "/ui/"),
    ("/ui/\nx", "/ui/")])
def test_safe_next(value, expected):
    assert safe_next(value) == expected


# --- enabling, disabling, removing --------------------------------------------------------
def two_accounts() -> None:
    write_config({"accounts": [account("a", "openai", api_key="sk-a-000000000"),
                               account("b", "openai", api_key="sk-b-000000000",
                                       enabled=False)]})


def test_config_file_switches_keep_the_rest():
    two_accounts()
    assert accounts.set_enabled("b", True) is True
    assert accounts.set_enabled("b", True) is False
    assert accounts.set_enabled("a", False) is True
    cfg = load_config()
    assert [(a.id, a.enabled) for a in cfg.accounts] == [("a", False), ("b", True)]
    state.update("health", "a", {"failures": 2})
    state.update("health", "b", {"failures": 1})
    assert accounts.remove("a") == "openai"
    assert accounts.remove("a") is None
    assert [a.id for a in load_config().accounts] == ["b"]
    assert state.read("health") == {"b": {"failures": 1}}  # only the removed one's state goes
    with pytest.raises(ConfigError, match="no account"):
        accounts.set_enabled("zz", True)


def test_pool_switches_accounts_in_and_out():
    two_accounts()
    live = [load_config()]

    def enable(account_id: str, enabled: bool) -> None:
        accounts.set_enabled(account_id, enabled)
        live[0] = load_config()
        pool.swap(pool.build(live[0].accounts, keep=pool.providers))

    async def main():
        nonlocal pool
        async with httpx.AsyncClient() as client:
            pool = Pool(lambda: live[0], client)
            assert list(pool.providers) == ["a"]
            first = pool.providers["a"]
            pool.mark_failure("a", "boom")
            enable("b", True)
            assert list(pool.providers) == ["a", "b"]
            # the unchanged account keeps its provider object and its health
            assert pool.providers["a"] is first and pool.health["a"].failures == 1
            enable("a", False)
            assert list(pool.providers) == ["b"]
            pool.mark_success("a")  # a request that was already under way: no error
            assert state.read("health")["a"]["failures"] == 1  # out of rotation: not saved
            accounts.remove("b")
            live[0] = load_config()
            pool.swap(pool.build(live[0].accounts, keep=pool.providers))
            assert pool.providers == {}

    pool = None
    asyncio.run(main())
