"""Reports over the usage store: time parsing, window boundaries, totals, groups."""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokn.usage import MIGRATIONS, empty_connection
from tokn.usage_query import GROUPS, iso, p95, parse_since, query, reports, stamp

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_parse_since_durations_are_seconds_back_from_now():
    assert parse_since("24h", now=NOW) == NOW - 86_400
    assert parse_since("7d", now=NOW) == NOW - 7 * 86_400
    assert parse_since("30m", now=NOW) == NOW - 1_800  # m = minutes, never months
    assert parse_since("90s", now=NOW) == NOW - 90
    assert parse_since("2w", now=NOW) == NOW - 14 * 86_400
    assert parse_since(" 1.5H ", now=NOW) == NOW - 5_400


def test_parse_since_dates_are_local_unless_an_offset_is_given():
    assert parse_since("2026-11-01") == dt.datetime(2026, 11, 1).timestamp()
    assert parse_since("2026-11-01T10:00") == dt.datetime(2026, 11, 1, 10).timestamp()
    assert parse_since("2026-11-01 10:00:30") == dt.datetime(2026, 11, 1, 10, 0, 30).timestamp()
    utc = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC).timestamp()
    assert parse_since("2026-11-01T10:00Z") == utc
    assert parse_since("2026-11-01T12:00+02:00") == utc


def test_parse_since_epoch_seconds():
    assert parse_since("1767225600") == 1_767_225_600.0
    assert parse_since("1767225600.25") == 1_767_225_600.25
    assert parse_since(1767225600) == 1_767_225_600.0


@pytest.mark.parametrize("bad, words", [
    ("yesterday", "cannot read 'yesterday'"),
    ("", "empty"),
    ("24x", "cannot read"),
    ("2026-13-01", "cannot read"),
    ("1767225600000", "milliseconds"),  # a peer's ms value must not pass as seconds
    ("-5", "cannot read"),
])
def test_parse_since_rejects_with_a_clear_message(bad, words):
    with pytest.raises(ValueError) as err:
        parse_since(bad, now=NOW)
    assert words in str(err.value)
    assert "24h" in str(err.value) or "milliseconds" in str(err.value)


def test_iso_and_stamp_label_units():
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert stamp(NOW) == {"epoch_s": NOW, "iso": "2027-01-15T08:00:00.000Z"}
    assert stamp(None) is None


# --- query -------------------------------------------------------------------------
@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:")
    c.execute(MIGRATIONS[0])
    yield c
    c.close()


def add(conn, **row):
    base = {"ts": NOW, "provider": "openai-compatible", "account": "a1", "model_requested": "m",
            "model_served": "m", "status": 200, "input_tokens": 0, "output_tokens": 0,
            "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
            "latency_ms": 100.0, "initiator": None}
    base.update(row)
    cols = ", ".join(base)
    conn.execute(f"INSERT INTO requests ({cols}) VALUES ({', '.join('?' for _ in base)})",
                 list(base.values()))


def test_since_is_inclusive_and_until_exclusive_exactly_at_the_boundary(conn):
    add(conn, ts=NOW - 0.001, input_tokens=1)
    add(conn, ts=NOW, input_tokens=10)          # exactly at since: counted
    add(conn, ts=NOW + 60, input_tokens=100)
    add(conn, ts=NOW + 3600, input_tokens=1000)  # exactly at until: not counted
    r = query(conn, since=NOW, until=NOW + 3600)
    assert (r.totals.requests, r.totals.input_tokens) == (2, 110)
    # consecutive windows partition the rows: nothing twice, nothing lost
    a = query(conn, until=NOW).totals.input_tokens
    b = query(conn, since=NOW, until=NOW + 3600).totals.input_tokens
    c = query(conn, since=NOW + 3600).totals.input_tokens
    assert (a, b, c) == (1, 110, 1000)
    assert a + b + c == query(conn).totals.input_tokens


def test_totals(conn):
    add(conn, input_tokens=10, output_tokens=5, cache_read_tokens=3, cache_write_tokens=2,
        reasoning_tokens=1, latency_ms=100.0)
    add(conn, input_tokens=20, output_tokens=7, latency_ms=300.0, estimated=1)
    add(conn, status=502, error="boom", latency_ms=200.0)
    add(conn, status=None, latency_ms=None)
    t = query(conn).totals
    assert (t.requests, t.input_tokens, t.output_tokens) == (4, 30, 12)
    assert (t.cache_read_tokens, t.cache_write_tokens, t.reasoning_tokens) == (3, 2, 1)
    assert t.total_tokens == 30 + 12 + 3 + 2
    assert t.errors == 2 and t.error_rate == 0.5
    assert t.median_latency_ms == 200.0  # median of 100, 300, 200 (ms; NULL skipped)
    assert t.estimated_rows == 1
    assert (t.first_ts, t.last_ts) == (NOW, NOW)
    d = t.to_dict()
    assert d["first"] == {"epoch_s": NOW, "iso": "2027-01-15T08:00:00.000Z"}
    assert d["error_rate"] == 0.5 and d["median_latency_ms"] == 200.0


def test_premium_requests_are_successful_user_initiated_copilot_calls(conn):
    add(conn, provider="github-copilot", initiator="user")                 # 1
    add(conn, provider="github-copilot", initiator="user", status=399)     # 2
    add(conn, provider="github-copilot", initiator="agent")
    add(conn, provider="github-copilot", initiator="user", status=429)
    add(conn, provider="github-copilot", initiator=None)
    add(conn, provider="openai", initiator="user")
    assert query(conn).totals.premium_requests == 2


def test_filters(conn):
    add(conn, account="a1", provider="p1", model_requested="x", model_served="x-2025",
        input_tokens=1)
    add(conn, account="a2", provider="p1", model_requested="y", model_served="y",
        input_tokens=10)
    add(conn, account="a2", provider="p2", model_requested="x", model_served="x",
        input_tokens=100)
    assert query(conn, account="a2").totals.input_tokens == 110
    assert query(conn, provider="p1").totals.input_tokens == 11
    assert query(conn, model="x").totals.input_tokens == 101        # requested
    assert query(conn, model="x-2025").totals.input_tokens == 1     # or served
    assert query(conn, account="a2", provider="p1").totals.input_tokens == 10
    assert query(conn, account="nobody").totals.requests == 0
    assert query(conn, account="nobody").totals.median_latency_ms is None


def test_group_by_each_dimension(conn):
    add(conn, account="a1", provider="p1", model_served="m1", initiator="user",
        input_tokens=1, latency_ms=10.0)
    add(conn, account="a1", provider="p1", model_served="m2", initiator="agent",
        input_tokens=2, latency_ms=30.0)
    add(conn, account="a2", provider="p2", model_served=None, model_requested="m3",
        initiator=None, input_tokens=4, latency_ms=50.0)
    by_account = query(conn, by="account")
    assert [(g.key, g.totals.requests, g.totals.input_tokens) for g in by_account.groups] == [
        ("a1", 2, 3), ("a2", 1, 4)]
    assert by_account.groups[0].totals.median_latency_ms == 20.0
    assert by_account.totals.input_tokens == 7
    assert {g.key for g in query(conn, by="provider").groups} == {"p1", "p2"}
    assert {g.key for g in query(conn, by="model").groups} == {"m1", "m2", "m3"}
    assert {g.key for g in query(conn, by="initiator").groups} == {"user", "agent", "-"}
    with pytest.raises(ValueError, match="use one of"):
        query(conn, by="colour")


def test_group_by_local_day(conn):
    day1 = dt.datetime(2026, 11, 1, 23, 30).timestamp()
    day2 = dt.datetime(2026, 11, 2, 0, 30).timestamp()
    add(conn, ts=day2, input_tokens=2)
    add(conn, ts=day1, input_tokens=1)
    add(conn, ts=day2 + 60, input_tokens=2)
    groups = query(conn, by="day").groups
    assert [(g.key, g.totals.input_tokens) for g in groups] == [("2026-11-01", 1),
                                                                 ("2026-11-02", 4)]
    # the day group and --since DATE agree about where a day starts
    assert query(conn, since=parse_since("2026-11-02")).totals.input_tokens == 4


def test_report_json_shape(conn):
    add(conn, input_tokens=3)
    data = query(conn, since=NOW - 10, until=NOW + 10, by="account", account="a1").to_dict()
    assert data["window"]["since"] == {"epoch_s": NOW - 10, "iso": "2027-01-15T07:59:50.000Z"}
    assert data["window"]["until"]["epoch_s"] == NOW + 10
    assert data["window"]["since_inclusive"] and data["window"]["until_exclusive"]
    assert data["filters"] == {"account": "a1"}
    assert data["totals"]["input_tokens"] == 3
    assert data["groups"][0]["key"] == "a1"


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                          st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))),
                max_size=40))
def test_sql_latency_percentiles_match_python(rows):
    """The median and p95 SQLite computes are statistics.median and nearest-rank p95."""
    conn = sqlite3.connect(":memory:")
    conn.execute(MIGRATIONS[0])
    conn.executemany("INSERT INTO requests (ts, account, latency_ms) VALUES (1, ?, ?)", rows)
    report = query(conn, by="account")

    def expect(values):
        return (statistics.median(values) if values else None, p95(values))

    totals = report.totals
    assert (totals.median_latency_ms, totals.p95_latency_ms) == \
        pytest.approx(expect([v for _, v in rows if v is not None]))
    for group in report.groups:
        values = [v for k, v in rows if k == group.key and v is not None]
        assert (group.totals.median_latency_ms, group.totals.p95_latency_ms) == \
            pytest.approx(expect(values))


# --- every report from two scans ---------------------------------------------------
def reference(conn, by, **filters):
    """A report as one SQL GROUP BY per key computes it (what query did before
    reports() folded one grouped scan): the groups' aggregates and latencies."""
    from tokn.usage_query import _AGG, GROUPS, _where

    where, args = _where(filters.get("since"), filters.get("until"), filters.get("account"),
                         filters.get("provider"), filters.get("model"), filters.get("key"))
    out = {}
    for row in conn.execute(f"SELECT {GROUPS[by]}, {_AGG} FROM requests{where} GROUP BY 1",
                            args):
        out[row[0]] = list(row[1:])
    lat: dict = {}
    for k, v in conn.execute(f"SELECT {GROUPS[by]}, latency_ms FROM requests{where}"
                             f"{' AND' if where else ' WHERE'} latency_ms IS NOT NULL", args):
        lat.setdefault(k, []).append(v)
    return out, lat


ROW = st.fixed_dictionaries({
    "ts": st.floats(NOW - 5 * 86400, NOW + 86400, allow_nan=False),
    "provider": st.sampled_from(["github-copilot", "openai", "kiro", None]),
    "account": st.sampled_from(["a1", "a2", None]),
    "model_requested": st.sampled_from(["m1", "m2", None]),
    "model_served": st.sampled_from(["m1", "m3", None]),
    "initiator": st.sampled_from(["user", "agent", None]),
    "key_name": st.sampled_from(["admin", "ann", None]),
    "status": st.sampled_from([200, 201, 400, 429, 500, None]),
    "input_tokens": st.integers(0, 10_000),
    "output_tokens": st.integers(0, 10_000),
    "cache_read_tokens": st.integers(0, 100),
    "reasoning_tokens": st.integers(0, 100),
    "estimated": st.sampled_from([0, 1, None]),
    "credits": st.sampled_from([None, 0.25, 1.0, 3.5]),
    "latency_ms": st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)),
})


@settings(max_examples=80, deadline=None)
@given(st.lists(ROW, max_size=60), st.sampled_from([{}, {"account": "a1"}, {"model": "m1"},
                                                      {"since": NOW - 2 * 86400},
                                                      {"provider": "kiro", "until": NOW}]))
def test_reports_from_two_scans_are_each_keys_own_group_by(rows, filters):
    conn = empty_connection()  # every column (key_name came later)
    for row in rows:
        cols = ", ".join(row)
        conn.execute(f"INSERT INTO requests ({cols}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))
    got = reports(conn, [None, *GROUPS], **filters)
    totals = query(conn, **filters).totals
    for by in GROUPS:
        report = got[by]
        assert report.totals == totals
        sums, lat = reference(conn, by, **filters)
        assert {g.key for g in report.groups} == set(sums)
        for group in report.groups:
            agg, t = sums[group.key], group.totals
            assert [t.requests, t.input_tokens, t.output_tokens, t.cache_read_tokens,
                    t.cache_write_tokens, t.reasoning_tokens, t.premium_requests, t.errors,
                    t.estimated_rows, t.first_ts, t.last_ts] == agg[:9] + agg[10:]
            assert t.credits == pytest.approx(agg[9])
            values = lat.get(group.key, [])
            assert (t.median_latency_ms, t.p95_latency_ms) == pytest.approx(
                (statistics.median(values) if values else None, p95(values)))
        if by == "day":
            assert [g.key for g in report.groups] == sorted(sums)
    assert got[None].groups == [] and got[None].totals == totals
    # the totals as one SQL aggregate computes them
    from tokn.usage_query import _AGG, _where

    where, args = _where(filters.get("since"), filters.get("until"), filters.get("account"),
                         filters.get("provider"), filters.get("model"), None)
    agg = list(conn.execute(f"SELECT {_AGG} FROM requests{where}", args).fetchone())
    assert [totals.requests, totals.input_tokens, totals.output_tokens, totals.errors,
            totals.premium_requests, totals.first_ts, totals.last_ts] == \
        [agg[0], agg[1], agg[2], agg[7], agg[6], agg[10], agg[11]]
    assert totals.credits == pytest.approx(agg[9])
    if not filters:
        assert totals.requests == len(rows)


def test_reports_refuses_an_unknown_key(conn):
    with pytest.raises(ValueError, match="cannot group by 'colour'"):
        reports(conn, ["day", "colour"])
