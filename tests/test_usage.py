"""The usage store: writer thread, bad rows, drain on close, reset, migrations, bodies."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time

from tokn import usage
from tokn.config import Config
from tokn.usage import MIGRATIONS, NAMES, SCHEMA_VERSION, BodyCapture, UsageStore, capture_body


def rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT request_id, input_tokens FROM requests ORDER BY id").fetchall()
    finally:
        conn.close()


def test_record_is_off_the_request_path_and_flush_commits(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        started = time.perf_counter()
        for i in range(200):
            store.record({"request_id": f"r{i}", "input_tokens": i})
        assert time.perf_counter() - started < 0.5  # only queue puts
        assert store.flush()
        got = rows(tmp_path / "u.sqlite3")
        assert [r[0] for r in got] == [f"r{i}" for i in range(200)]
        assert sum(r[1] for r in got) == sum(range(200))
    finally:
        store.close()


def test_default_ts_is_epoch_seconds(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    before = time.time()
    store.record({"request_id": "a"})
    store.close()
    conn = sqlite3.connect(tmp_path / "u.sqlite3")
    (ts,) = conn.execute("SELECT ts FROM requests").fetchone()
    assert before <= ts <= time.time()


def test_close_drains_everything_queued(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    for i in range(2_000):
        store.record({"request_id": str(i)})
    store.close()
    assert len(rows(tmp_path / "u.sqlite3")) == 2_000


def test_bad_rows_are_logged_and_the_writer_keeps_going(tmp_path, caplog):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        store.record({"request_id": "before"})
        store.record("not a row")  # type: ignore[arg-type]
        store.record({"request_id": "huge", "input_tokens": 2**70})  # sqlite: int overflow
        store.record({"request_id": "odd", "error": {"nested": [1, 2]}, "stream": True})
        store.record({"request_id": "after"})
        assert store.flush()
        assert store._thread.is_alive()
        assert store.dropped == 2
        assert [r[0] for r in rows(tmp_path / "u.sqlite3")] == ["before", "odd", "after"]
        assert any("dropped a row" in r.message for r in caplog.records)
        store.record({"request_id": "later"})
        assert store.flush()
        assert rows(tmp_path / "u.sqlite3")[-1][0] == "later"
    finally:
        store.close()


def test_reset_is_ordered_after_queued_rows_and_recording_continues(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        for i in range(300):
            store.record({"request_id": str(i)})
        assert store.reset() == 300  # no flush needed: the reset queues behind them
        store.record({"request_id": "new"})
        assert store.flush()
        assert rows(tmp_path / "u.sqlite3") == [("new", 0)]
    finally:
        store.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")

    def work(n):
        for i in range(250):
            store.record({"request_id": f"{n}-{i}", "input_tokens": 1})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert len(rows(tmp_path / "u.sqlite3")) == 2_000


def test_files_are_private(tmp_path):
    store = UsageStore(tmp_path / "d" / "u.sqlite3")
    store.close()
    assert stat.S_IMODE((tmp_path / "d" / "u.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_default_path_is_under_tokn_home(tokn_home):
    assert usage.default_path() == tokn_home / "data" / "usage.sqlite3"


# --- migrations ----------------------------------------------------------------------
def test_v1_database_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(MIGRATIONS[0])  # what tokn's schema version 1 created
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO requests (ts, request_id, input_tokens) VALUES (1.5, 'old', 7)")
    conn.commit()
    conn.close()

    migrated = usage.connect(path)
    try:
        assert migrated.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        indexes = {r[1] for r in migrated.execute("PRAGMA index_list(requests)")}
        assert {"requests_ts", "requests_request_id"} <= indexes
        assert migrated.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert tuple(migrated.execute("SELECT ts, request_id, input_tokens FROM requests")
                     .fetchone()) == (1.5, "old", 7)
    finally:
        migrated.close()
    store = UsageStore(path)
    store.record({"request_id": "new", "input_tokens": 3})
    store.close()
    assert rows(path) == [("old", 7), ("new", 3)]


def test_older_table_missing_columns_gets_them(tmp_path):
    """A store written by a build whose table lacked later columns (no migration
    was written for them): opening adds them, old rows keep NULL/defaults."""
    path = tmp_path / "older.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "ts REAL NOT NULL, request_id TEXT, input_tokens INTEGER DEFAULT 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO requests (ts, request_id, input_tokens) VALUES (2.0, 'x', 5)")
    conn.commit()
    conn.close()

    store = UsageStore(path)
    store.record({name: None for name in NAMES} | {"ts": 3.0, "request_id": "y",
                                                   "cache_read_tokens": 4,
                                                   "response_body": "hi"})
    store.close()
    conn = sqlite3.connect(path)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(requests)")}
    assert set(NAMES) <= cols
    got = conn.execute("SELECT request_id, input_tokens, cache_read_tokens, response_body "
                       "FROM requests ORDER BY id").fetchall()
    assert got == [("x", 5, 0, None), ("y", 0, 4, "hi")]


def test_readonly_connection_reads_while_the_writer_writes(tmp_path):
    path = tmp_path / "u.sqlite3"
    store = UsageStore(path)
    try:
        store.record({"request_id": "a"})
        store.flush()
        ro = usage.connect_readonly(path)
        try:
            assert ro.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1
            store.record({"request_id": "b"})
            store.flush()
            assert ro.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 2
            try:
                ro.execute("DELETE FROM requests")
                raise AssertionError("a read-only connection wrote")
            except sqlite3.OperationalError:
                pass
        finally:
            ro.close()
    finally:
        store.close()


# --- bodies --------------------------------------------------------------------------
def _cfg(record: bool, cap: int = 65536) -> Config:
    cfg = Config()
    cfg.usage.record_bodies = record
    cfg.usage.body_cap_bytes = cap
    return cfg


def test_bodies_are_not_captured_by_default():
    assert Config().usage.record_bodies is False
    assert capture_body(Config(), b'{"model": "x"}') is None
    cap = BodyCapture(Config())
    cap.feed(b"data: {}\n\n")
    assert cap.text() is None


def test_capture_body_caps_and_says_so():
    assert capture_body(_cfg(True), {"model": "m", "n": 1}) == '{"model":"m","n":1}'
    assert capture_body(_cfg(True), "short") == "short"
    text = capture_body(_cfg(True, cap=10), b"x" * 25)
    assert text.startswith("x" * 10) and "15 more bytes of 25" in text
    # a multi-byte character cut in half is dropped, never garbled
    assert capture_body(_cfg(True, cap=5), "aaé€".encode()).startswith("aaé\n")


def test_body_capture_streams_up_to_the_cap():
    cap = BodyCapture(_cfg(True, cap=8))
    for _ in range(5):
        cap.feed(b"abcd")
    text = cap.text()
    assert text.startswith("abcdabcd\n") and "12 more bytes of 20" in text


class CountingStore(UsageStore):
    """A store that counts its transactions (calls of the writer's ``_write``)."""

    def __init__(self, path):
        self.writes = 0
        super().__init__(path)

    def _write(self, conn, rows):
        self.writes += 1
        super()._write(conn, rows)


def test_rows_arriving_steadily_are_committed_in_batches_not_one_by_one(tmp_path):
    store = CountingStore(tmp_path / "u.sqlite3")
    try:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 0.4:
            store.record({"request_id": f"r{n}"})
            n += 1
            time.sleep(0.002)
        elapsed = time.monotonic() - started
        assert store.flush()
        assert len(rows(tmp_path / "u.sqlite3")) == n
        # one transaction per BATCH_SECS window (+ the flush's), not one per row
        assert store.writes <= elapsed / usage.BATCH_SECS + 2, (store.writes, n, elapsed)
        assert n >= 20
    finally:
        store.close()


def test_a_batch_is_committed_within_its_window_without_a_flush(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        store.record({"request_id": "alone"})
        deadline = time.monotonic() + 5
        while not rows(tmp_path / "u.sqlite3") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rows(tmp_path / "u.sqlite3") == [("alone", 0)]
    finally:
        store.close()


def test_flush_and_close_do_not_wait_for_the_batch_window(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        waited = 0.0
        for round_ in range(10):
            store.record({"request_id": f"f{round_}"})
            started = time.monotonic()
            assert store.flush()
            waited += time.monotonic() - started
            assert len(rows(tmp_path / "u.sqlite3")) == round_ + 1
        # each flush cuts its window short: waiting the windows out would take
        # 10 x BATCH_SECS at least
        assert waited < 10 * usage.BATCH_SECS * 0.8, waited
        store.record({"request_id": "last"})
    finally:
        store.close()
    assert rows(tmp_path / "u.sqlite3")[-1] == ("last", 0)


def test_batched_writes_interleaved_with_flushes_and_resets_lose_nothing(tmp_path):
    store = UsageStore(tmp_path / "u.sqlite3")
    try:
        def writer(k):
            for i in range(300):
                store.record({"request_id": f"w{k}-{i}", "input_tokens": 1})
                if i % 50 == 0:
                    store.flush()

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.flush()
        got = rows(tmp_path / "u.sqlite3")
        assert len(got) == 1200 and len({r[0] for r in got}) == 1200
        assert store.reset() == 1200
        store.record({"request_id": "after-reset"})
    finally:
        store.close()
    assert rows(tmp_path / "u.sqlite3") == [("after-reset", 0)]
