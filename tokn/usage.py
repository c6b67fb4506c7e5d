"""The usage store: one SQLite row per upstream attempt, written off the
request path by a single writer thread.

Requests call :meth:`UsageStore.record`, which only puts a dict on a queue.
The writer gathers what arrives within :data:`BATCH_SECS` of a row into one
transaction (one ``executemany``, one commit, one look at the file), so under load it wakes and
takes the GIL a few times a second instead of once per request; a flush, a
reset or :meth:`UsageStore.close` ends the wait at once, and ``close`` drains
the queue, so a clean shutdown loses nothing.  A row the database refuses is
logged and dropped; the writer never dies of it.  A database file deleted (or
replaced) while tokn runs is noticed before the next write, logged, and
created afresh, so rows never go to a file nobody can open.

Units: ``ts`` is the time the attempt finished, in epoch **seconds** (REAL);
``ttfb_ms`` / ``latency_ms`` are milliseconds; ``bytes_*`` are bytes.

A row is a :class:`UsageRow`; the table's columns (:data:`COLUMNS`) are built
from its fields.  The schema is versioned through ``PRAGMA user_version`` with
forward-only migrations (``MIGRATIONS[i]`` takes a database from version ``i``
to ``i + 1``).  Fields added to :class:`UsageRow` later are also added to older
databases on open (``ALTER TABLE ... ADD COLUMN``), so a new column never needs
a hand-written migration.

Request and response bodies are stored only when ``[usage] record_bodies =
true``, cut at ``[usage] body_cap_bytes`` (see :func:`capture_body`).  Headers
are never stored, so credentials sent in headers never reach the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tokn import paths
from tokn.usage_feed import Feed

log = logging.getLogger("tokn.usage")


def _col(sql: str, default: Any = None) -> Any:
    return field(default=default, metadata={"sql": sql})


def new_request_id() -> str:
    """A request's id (one per request; every attempt's row carries it)."""
    return secrets.token_hex(8)


@dataclass(slots=True)
class UsageRow:
    """One usage row: the table's columns, in order (the schema is built from
    this class).  Slots, so a misspelt column is an error, not a lost value."""

    ts: float | None = _col("REAL NOT NULL")  # set when recorded
    request_id: str | None = _col("TEXT")
    session_key: str | None = _col("TEXT")
    front_door: str | None = _col("TEXT")  # listener | proxy | dashboard
    route_mode: str | None = _col("TEXT")  # route | switch | passthrough
    client: str | None = _col("TEXT")  # peer host:port
    inbound_format: str | None = _col("TEXT")
    upstream_format: str | None = _col("TEXT")
    provider: str | None = _col("TEXT")
    account: str | None = _col("TEXT")
    model_requested: str | None = _col("TEXT")
    model_served: str | None = _col("TEXT")
    initiator: str | None = _col("TEXT")
    stream: int | None = _col("INTEGER")
    status: int | None = _col("INTEGER")
    error: str | None = _col("TEXT")
    input_tokens: int = _col("INTEGER DEFAULT 0", 0)
    output_tokens: int = _col("INTEGER DEFAULT 0", 0)
    cache_read_tokens: int = _col("INTEGER DEFAULT 0", 0)
    cache_write_tokens: int = _col("INTEGER DEFAULT 0", 0)
    reasoning_tokens: int = _col("INTEGER DEFAULT 0", 0)
    estimated: int = _col("INTEGER DEFAULT 0", 0)
    credits: float | None = _col("REAL")
    ttfb_ms: float | None = _col("REAL")
    latency_ms: float | None = _col("REAL")
    bytes_in: int | None = _col("INTEGER")
    bytes_out: int | None = _col("INTEGER")
    request_body: str | None = _col("TEXT")
    response_body: str | None = _col("TEXT")
    # added after version 1 (older stores get them on open: _add_missing_columns)
    key_name: str | None = _col("TEXT")  # who called: admin, anonymous or a person's key name

    def set_usage(self, usage: Any) -> None:
        """The token counts of a converter :class:`~tokn.convert.Usage`."""
        self.input_tokens, self.output_tokens = usage.input_tokens, usage.output_tokens
        self.cache_read_tokens = usage.cache_read_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        self.estimated = int(usage.estimated)

    def update(self, values: dict[str, Any]) -> None:
        """Set columns by name (``AttributeError`` for a name that is none)."""
        for name, value in values.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in NAMES}


COLUMNS: tuple[tuple[str, str], ...] = tuple((f.name, f.metadata["sql"])
                                             for f in fields(UsageRow))
NAMES = tuple(name for name, _ in COLUMNS)
# Columns whose missing value is stored as 0 (token counts), not NULL.
_ZERO = frozenset(name for name, decl in COLUMNS if decl.endswith("DEFAULT 0"))

# Frozen: version 1's table exactly as first released.  Never edit a released
# migration; append a new one (or just add to COLUMNS, see _add_missing_columns).
_V1_COLUMNS = (
    "ts REAL NOT NULL, request_id TEXT, session_key TEXT, front_door TEXT, route_mode TEXT, "
    "client TEXT, inbound_format TEXT, upstream_format TEXT, provider TEXT, account TEXT, "
    "model_requested TEXT, model_served TEXT, initiator TEXT, stream INTEGER, status INTEGER, "
    "error TEXT, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0, "
    "cache_read_tokens INTEGER DEFAULT 0, cache_write_tokens INTEGER DEFAULT 0, "
    "reasoning_tokens INTEGER DEFAULT 0, estimated INTEGER DEFAULT 0, credits REAL, "
    "ttfb_ms REAL, latency_ms REAL, bytes_in INTEGER, bytes_out INTEGER, request_body TEXT, "
    "response_body TEXT"
)
MIGRATIONS: tuple[str, ...] = (
    f"CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, {_V1_COLUMNS})",
    "CREATE INDEX requests_ts ON requests (ts)",
    "CREATE INDEX requests_request_id ON requests (request_id)",  # the dashboard's detail view
)
SCHEMA_VERSION = len(MIGRATIONS)

_STOP = object()
_BATCH = 500  # rows per transaction at most
BATCH_SECS = 0.1  # how long the writer gathers rows before committing them


def default_path() -> Path:
    return paths.data_dir() / "usage.sqlite3"


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    for name, decl in COLUMNS:
        if name not in have:
            # ADD COLUMN cannot add NOT NULL without a default; old rows get NULL.
            decl = decl.replace("NOT NULL", "").strip()
            with conn:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {decl}")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating) the store at ``path``."""
    paths.ensure_private_dir(path.parent)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        log.warning("usage store %s has schema version %d, newer than this tokn (%d); "
                    "using it as is", path, version, SCHEMA_VERSION)
    for number, statement in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn:
            conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    _add_missing_columns(conn)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            path.with_name(path.name + suffix).chmod(0o600)
    return conn


def empty_connection() -> sqlite3.Connection:
    """An empty store in memory with every column (a report before anything
    was recorded has the same shape)."""
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute(MIGRATIONS[0])
    _add_missing_columns(conn)
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing store for reading only (safe while a server writes: WAL)."""
    if not path.is_file():
        raise FileNotFoundError(f"no usage store at {path} (nothing recorded yet)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


# --- bodies -----------------------------------------------------------------------
def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "replace")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _cut(raw: bytes, cap: int, total: int) -> str:
    text = raw[:cap].decode("utf-8", "ignore") if cap > 0 else ""
    if total > cap:
        text += f"\n[tokn: truncated, {total - cap} more bytes of {total}]"
    return text


def capture_body(cfg: Any, data: Any) -> str | None:
    """The text to store for a request/response body, or ``None`` when bodies
    are not recorded (``[usage] record_bodies = false``, the default).

    ``data`` may be bytes, str or a JSON-able object (e.g. the parsed request
    body).  The result holds at most ``[usage] body_cap_bytes`` bytes of it,
    plus a note saying how much was cut.
    """
    if cfg is None or not cfg.usage.record_bodies or data is None:
        return None
    raw = _as_bytes(data)
    return _cut(raw, max(int(cfg.usage.body_cap_bytes), 0), len(raw))


class BodyCapture:
    """Collects a streamed body chunk by chunk, keeping at most the cap.

    ``BodyCapture(cfg)`` is inert (``feed`` is a no-op, ``text()`` is ``None``)
    unless ``[usage] record_bodies`` is true.
    """

    def __init__(self, cfg: Any) -> None:
        self.enabled = bool(cfg is not None and cfg.usage.record_bodies)
        self.cap = max(int(cfg.usage.body_cap_bytes), 0) if self.enabled else 0
        self.total = 0
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        if not self.enabled or not chunk:
            return
        self.total += len(chunk)
        room = self.cap - len(self._buf)
        if room > 0:
            self._buf += chunk[:room]

    def text(self) -> str | None:
        return _cut(bytes(self._buf), self.cap, self.total) if self.enabled else None


# --- the store ----------------------------------------------------------------------
def _value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if v is None or isinstance(v, int | float | str | bytes):
        return v
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, default=str)
    return str(v)


INSERT_SQL = (f"INSERT INTO requests ({', '.join(NAMES)}) "
              f"VALUES ({', '.join('?' for _ in NAMES)})")
_PLAIN = frozenset((int, float, str, bytes))  # stored as they are
_ZERO_AT = frozenset(i for i, name in enumerate(NAMES) if name in _ZERO)


def row_values(row: Any) -> tuple[Any, ...]:
    """A row dict -> the values of :data:`NAMES`, in order (token counts 0 when
    missing, ``ts`` now when missing)."""
    if not isinstance(row, dict):
        raise TypeError(f"a usage row must be a dict, not {type(row).__name__}")
    get = row.get
    values = [get(n) for n in NAMES]
    for i, v in enumerate(values):
        if v is None:
            if i in _ZERO_AT:
                values[i] = 0
        elif type(v) not in _PLAIN:
            values[i] = _value(v)
    if values[0] is None:
        values[0] = time.time()
    return tuple(values)


def open_readonly(path: Path) -> sqlite3.Connection:
    """:func:`connect_readonly`, or an empty in-memory store of the same shape
    when nothing was recorded yet (reports then come out empty)."""
    try:
        return connect_readonly(path)
    except FileNotFoundError:
        return empty_connection()


def _is_control(item: Any) -> bool:
    return item is _STOP or isinstance(item, threading.Event | _Reset)


class _Reset:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.deleted = 0
        self.error: BaseException | None = None


class UsageStore:
    """Queue + one writer thread in front of the SQLite file; every recorded
    row is also published on :attr:`feed` (the dashboard's live tail)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.feed = Feed()
        connect(self.path).close()
        self._inode: int | None = None  # of the file the writer's connection has open
        self._urgent = threading.Event()  # a flush/reset/close waits: commit now
        self.dropped = 0  # rows the database refused (logged)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tokn-usage", daemon=True)
        self._thread.start()

    def record(self, row: UsageRow | dict[str, Any]) -> None:
        """Queue one row (a dict's unknown keys are ignored; ``ts`` defaults to
        now, epoch seconds)."""
        if isinstance(row, UsageRow):
            row = row.as_dict()
        if isinstance(row, dict):
            if row.get("ts") is None:
                row["ts"] = time.time()
            self.feed.publish(row)
        self._queue.put(row)

    @property
    def where(self) -> str:
        """Where the rows go (shown by ``/v1/usage`` and the dashboard)."""
        return str(self.path)

    def connect_reader(self) -> sqlite3.Connection:
        """A read-only connection for :mod:`tokn.usage_query` (empty when nothing
        was recorded yet)."""
        return open_readonly(self.path)

    # --- writer thread ------------------------------------------------------------
    def _write(self, conn: sqlite3.Connection, rows: list[Any]) -> None:
        try:
            with conn:
                conn.executemany(INSERT_SQL, [row_values(r) for r in rows])
            return
        except Exception:  # noqa: BLE001 - find the bad row(s) one by one below
            pass
        for r in rows:
            try:
                with conn:
                    conn.execute(INSERT_SQL, row_values(r))
            except Exception as exc:  # noqa: BLE001 - a bad row must not stop the writer
                self.dropped += 1
                log.error("usage: dropped a row the store refused (%s: %s): %.300r",
                          type(exc).__name__, exc, r)

    def _open(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        """The writer's connection, reopened when its file was deleted or replaced
        (SQLite would keep writing into the unlinked file and lose every row)."""
        try:
            inode: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if conn is not None and inode is not None and inode == self._inode:
            return conn
        if conn is not None:
            log.warning("usage: %s was deleted or replaced while tokn was running; "
                        "creating it again", self.path)
            with contextlib.suppress(Exception):
                conn.close()
        conn = connect(self.path)
        self._inode = os.stat(self.path).st_ino
        return conn

    def _reset(self, conn: sqlite3.Connection, cmd: _Reset) -> None:
        try:
            with conn:
                cmd.deleted = conn.execute("DELETE FROM requests").rowcount
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            cmd.error = exc
        finally:
            cmd.done.set()

    def _gather(self) -> list[Any]:
        """The next batch: the first item, then whatever arrives within
        :data:`BATCH_SECS` (less when a flush, reset or close is waiting)."""
        item = self._queue.get()
        batch = [item]
        if isinstance(item, dict) and not self._urgent.is_set():
            self._urgent.wait(BATCH_SECS)
        self._urgent.clear()
        while not _is_control(item) and len(batch) < _BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        return batch

    def _put_control(self, item: Any) -> None:
        self._queue.put(item)
        self._urgent.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            batch = self._gather()
            try:
                conn = self._open(conn)
                rows: list[Any] = []
                for b in batch:
                    if b is _STOP or isinstance(b, threading.Event | _Reset):
                        if rows:
                            self._write(conn, rows)
                            rows = []
                        if isinstance(b, _Reset):
                            self._reset(conn, b)
                        elif isinstance(b, threading.Event):
                            b.set()
                    else:
                        rows.append(b)
                if rows:
                    self._write(conn, rows)
            except Exception:  # noqa: BLE001 - e.g. the file vanished: keep serving
                log.exception("usage: the writer hit an error; %d queued item(s) lost",
                              len(batch))
                for b in batch:
                    if isinstance(b, threading.Event):
                        b.set()
                    elif isinstance(b, _Reset):
                        b.done.set()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                time.sleep(0.1)
            if any(b is _STOP for b in batch):
                if conn is not None:
                    conn.close()
                return

    # --- control ------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row queued so far is committed (True if it was)."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._put_control(done)
        return done.wait(timeout)

    def reset(self, timeout: float = 30.0) -> int:
        """Delete every stored row, after the rows queued so far are written.

        Runs on the writer thread, so it is ordered with respect to
        :meth:`record`; recording keeps working afterwards.  Returns how many
        rows were deleted.
        """
        if not self._thread.is_alive():
            conn = connect(self.path)
            try:
                with conn:
                    return conn.execute("DELETE FROM requests").rowcount
            finally:
                conn.close()
        cmd = _Reset()
        self._put_control(cmd)
        if not cmd.done.wait(timeout):
            raise TimeoutError("the usage store did not finish resetting in time")
        if cmd.error is not None:
            raise cmd.error
        return cmd.deleted

    @property
    def pending(self) -> int:
        """Items still on the queue (approximate)."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._put_control(_STOP)
            self._thread.join(timeout)
