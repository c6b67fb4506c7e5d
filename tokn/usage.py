"""The usage store: one SQLite row per upstream attempt, written off the
request path by a single writer thread.

Requests call :meth:`UsageStore.record`, which only puts a dict on a queue.
The writer batches rows into transactions; :meth:`UsageStore.close` drains the
queue, so a clean shutdown loses nothing.  The schema is versioned through
``PRAGMA user_version`` with forward-only migrations.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tokn import paths

COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL NOT NULL"),
    ("request_id", "TEXT"),
    ("session_key", "TEXT"),
    ("front_door", "TEXT"),
    ("route_mode", "TEXT"),
    ("client", "TEXT"),
    ("inbound_format", "TEXT"),
    ("upstream_format", "TEXT"),
    ("provider", "TEXT"),
    ("account", "TEXT"),
    ("model_requested", "TEXT"),
    ("model_served", "TEXT"),
    ("initiator", "TEXT"),
    ("stream", "INTEGER"),
    ("status", "INTEGER"),
    ("error", "TEXT"),
    ("input_tokens", "INTEGER DEFAULT 0"),
    ("output_tokens", "INTEGER DEFAULT 0"),
    ("cache_read_tokens", "INTEGER DEFAULT 0"),
    ("cache_write_tokens", "INTEGER DEFAULT 0"),
    ("reasoning_tokens", "INTEGER DEFAULT 0"),
    ("estimated", "INTEGER DEFAULT 0"),
    ("credits", "REAL"),
    ("ttfb_ms", "REAL"),
    ("latency_ms", "REAL"),
    ("bytes_in", "INTEGER"),
    ("bytes_out", "INTEGER"),
    ("request_body", "TEXT"),
    ("response_body", "TEXT"),
)
NAMES = tuple(name for name, _ in COLUMNS)

MIGRATIONS: tuple[str, ...] = (
    "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{n} {t}" for n, t in COLUMNS) + ")",
    "CREATE INDEX requests_ts ON requests (ts)",
)

_STOP = object()


def default_path() -> Path:
    return paths.data_dir() / "usage.sqlite3"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating) the store at ``path``."""
    paths.ensure_private_dir(path.parent)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, statement in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn:
            conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    try:
        path.chmod(0o600)
    except OSError:
        pass
    return conn


class UsageStore:
    """Queue + one writer thread in front of the SQLite file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        connect(self.path).close()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tokn-usage", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (unknown keys ignored; ``ts`` defaults to now)."""
        row.setdefault("ts", time.time())
        self._queue.put(row)

    def _run(self) -> None:
        conn = connect(self.path)
        sql = (f"INSERT INTO requests ({', '.join(NAMES)}) "
               f"VALUES ({', '.join('?' for _ in NAMES)})")
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while item is not _STOP and len(batch) < 500:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(item)
                rows = [b for b in batch if b is not _STOP and not isinstance(b, threading.Event)]
                if rows:
                    with conn:
                        conn.executemany(sql, [tuple(r.get(n) for n in NAMES) for r in rows])
                for b in batch:
                    if isinstance(b, threading.Event):
                        b.set()
                if any(b is _STOP for b in batch):
                    return
        finally:
            conn.close()

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every row queued so far is committed."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
