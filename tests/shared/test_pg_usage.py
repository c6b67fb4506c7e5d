"""The PostgreSQL usage store: the same reports as SQLite, rows buffered
while PostgreSQL is down and written when it is back, none lost at shutdown."""

from __future__ import annotations

import psycopg
import pytest

from tokn import usage
from tokn.shared.pg_usage import PgReader, PgUsageStore
from tokn.usage_query import GROUPS, RowFilter, attempts, query, recent, reports

ROWS = [
    {"ts": 1767225600.0 + i * 3600 * 7, "request_id": f"r{i // 2}", "provider":
     ("github-copilot", "openai", "kiro")[i % 3], "account": ("a", "b")[i % 2],
     "model_requested": ("gpt-4.1", "claude-sonnet-4.5")[i % 2], "model_served": None,
     "initiator": ("user", "agent")[i % 2], "status": (200, 200, 429, None)[i % 4],
     "input_tokens": 10 * i, "output_tokens": i, "estimated": i % 2 == 0,
     "credits": 0.25 if i % 3 == 2 else None, "latency_ms": 100.0 + i if i % 5 else None,
     "front_door": "listener", "route_mode": "route"}
    for i in range(23)
]


def _pg_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]


def test_reports_match_sqlite(pg_server, tmp_path):
    local = usage.UsageStore(tmp_path / "u.sqlite3")
    shared = PgUsageStore(pg_server.url)
    for row in ROWS:
        local.record(dict(row))
        shared.record(dict(row))
    assert local.flush() and shared.flush()
    lite, pg = local.connect_reader(), PgReader(pg_server.url)
    try:
        for by in (None, *GROUPS):
            for since in (None, ROWS[5]["ts"]):
                kwargs = dict(by=by, since=since, account="a" if by == "model" else None)
                assert query(pg, **kwargs).to_dict() == query(lite, **kwargs).to_dict(), by
        for since in (None, ROWS[5]["ts"]):  # every report from two scans (the dashboard)
            assert {by: r.to_dict() for by, r in reports(pg, [None, *GROUPS],
                                                          since=since).items()} == \
                {by: r.to_dict() for by, r in reports(lite, [None, *GROUPS],
                                                       since=since).items()}
        for where in (RowFilter(), RowFilter(status="error"), RowFilter(model="gpt-4.1")):
            assert [{k: v for k, v in r.items() if k != "id"} for r in recent(pg, where, 7)] \
                == [{k: v for k, v in r.items() if k != "id"} for r in recent(lite, where, 7)]
        assert len(attempts(pg, "r3")) == 2
        assert [r["status"] for r in attempts(pg, "r3")] == \
            [r["status"] for r in attempts(lite, "r3")]
    finally:
        lite.close()
        pg.close()
        local.close()
        shared.close()


def test_rows_are_buffered_while_postgresql_is_down(pg_server, caplog):
    store = PgUsageStore(pg_server.url)
    try:
        store.record({"status": 200, "account": "before"})
        assert store.flush()
        pg_server.stop()
        for i in range(5):
            store.record({"status": 200, "account": f"down-{i}"})
        assert not store.flush(1.0)  # nowhere to write them yet
        assert store.pending == 5
        assert any("unreachable" in r.getMessage() for r in caplog.records)
        pg_server.start()
        assert store.flush(20.0)
        with psycopg.connect(pg_server.url) as conn:
            accounts = [r[0] for r in conn.execute("SELECT account FROM requests ORDER BY id")]
        assert accounts == ["before", *[f"down-{i}" for i in range(5)]]
        assert store.dropped == 0
    finally:
        store.close()


def test_buffer_is_bounded(pg_server):
    pg_server.stop()
    store = PgUsageStore(pg_server.url, buffer_rows=3)
    try:
        for i in range(5):
            store.record({"status": 200, "account": f"x{i}"})
        assert store.pending == 3 and store.dropped == 2
    finally:
        store.close()
        pg_server.start()


def test_rows_unwritten_at_shutdown_go_to_the_local_sqlite_file(pg_server):
    store = PgUsageStore(pg_server.url)
    store.record({"status": 200, "account": "first"})
    assert store.flush()
    pg_server.stop()
    try:
        store.record({"status": 201, "account": "late"})
        store.close(timeout=20)
        assert store.spilled == usage.default_path()
        conn = usage.connect_readonly(usage.default_path())
        try:
            assert [tuple(r) for r in conn.execute("SELECT account, status FROM requests")] \
                == [("late", 201)]
        finally:
            conn.close()
    finally:
        pg_server.start()
    assert _pg_count(pg_server.url) == 1


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:1/none"])
def test_reader_of_an_unreachable_server_fails_fast(url):
    with pytest.raises(psycopg.OperationalError):
        PgReader(url)
