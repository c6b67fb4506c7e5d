"""Usage rows in PostgreSQL (``[usage] url``), shared by every replica.

:class:`PgUsageStore` has the public face of :class:`tokn.usage.UsageStore`
(``record``, ``flush``, ``reset``, ``close``, ``feed``): requests only append
to a buffer, one writer thread commits batches.  While PostgreSQL is
unreachable the rows stay buffered (at most ``[usage] buffer_rows``; beyond
that the newest are dropped and counted, with an error) and are written once
it is back, with a warning per outage.  Rows still unwritten at shutdown go to
the local SQLite file (:func:`tokn.usage.default_path`), named in a warning.

The table has the SQLite store's columns (from :class:`tokn.usage.UsageRow`),
so :mod:`tokn.usage_query` runs unchanged over :class:`PgReader`, which
speaks its SQL (``?`` parameters, the local-day expression) to PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import psycopg

from tokn import usage as usage_mod
from tokn.shared import redacted
from tokn.usage_feed import Feed
from tokn.usage_query import GROUPS

log = logging.getLogger("tokn.usage")

BATCH = 500
RETRY_SECS = 2.0
CONNECT_TIMEOUT_SECS = 5
_TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "TEXT": "TEXT"}
_LOCK_ID = 0x746F6B6E  # "tokn": serialises schema changes between replicas


def _decl(sql: str) -> str:
    head, _, rest = sql.partition(" ")
    return f"{_TYPES[head]} {rest}".strip()


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the ``requests`` table (and columns added since) if missing."""
    cols = ", ".join(f"{name} {_decl(sql)}" for name, sql in usage_mod.COLUMNS)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS requests "
                     f"(id BIGSERIAL PRIMARY KEY, {cols})")
        for name, sql in usage_mod.COLUMNS:
            conn.execute(f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {name} "
                         f"{_decl(sql).replace('NOT NULL', '').strip()}")
        conn.execute("CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)")
        conn.execute("CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id)")


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECS, autocommit=True)


# --- reading: tokn.usage_query's SQL on PostgreSQL -----------------------------------
class Row(tuple):
    """A result row read by position or by column name (like ``sqlite3.Row``)."""

    names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self.names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


def _row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in cursor.description or ())
    kind = type("Row", (Row,), {"names": names, "__slots__": ()})
    return lambda values: kind(values)


_SQLITE_DAY = GROUPS["day"]
_PG_DAY = "to_char(to_timestamp(ts), 'YYYY-MM-DD')"  # in the session's (local) time zone


def translate(sql: str) -> str:
    """SQLite-flavoured SQL of :mod:`tokn.usage_query` -> PostgreSQL's."""
    return sql.replace(_SQLITE_DAY, _PG_DAY).replace("%", "%%").replace("?", "%s")


def local_zone() -> str:
    """This machine's time zone name, for ``--by day`` to mean local days."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    with contextlib.suppress(OSError):
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return "UTC"


class PgReader:
    """A read connection :mod:`tokn.usage_query` functions take like a
    ``sqlite3`` one (``execute`` with ``?`` parameters, rows by index or name)."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        ensure_schema(self.conn)
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("SELECT set_config('TimeZone', %s, false)", (local_zone(),))

    def execute(self, sql: str, args: Any = ()) -> Any:
        cur = self.conn.cursor(row_factory=_row_factory)
        return cur.execute(translate(sql), tuple(args))

    def close(self) -> None:
        self.conn.close()


# --- writing ------------------------------------------------------------------------
_INSERT = (f"INSERT INTO requests ({', '.join(usage_mod.NAMES)}) "
           f"VALUES ({', '.join('%s' for _ in usage_mod.NAMES)})")


class PgUsageStore:
    """A bounded buffer + one writer thread in front of PostgreSQL."""

    def __init__(self, url: str, buffer_rows: int = 100000) -> None:
        self.url = url
        self.where = redacted(url)
        self.buffer_rows = max(int(buffer_rows), 1)
        self.feed = Feed()
        self.dropped = 0      # rows refused by the database, or beyond the buffer (logged)
        self.spilled: Path | None = None  # where rows unwritten at shutdown went
        self._rows: deque[tuple[Any, ...]] = deque()
        self._cond = threading.Condition()
        self._queued = 0      # rows accepted so far
        self._done = 0        # of those, committed or dropped
        self._stop = False
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="tokn-usage-pg", daemon=True)
        self._thread.start()

    def record(self, row: usage_mod.UsageRow | dict[str, Any]) -> None:
        if isinstance(row, usage_mod.UsageRow):
            row = row.as_dict()
        if row.get("ts") is None:
            row["ts"] = time.time()
        self.feed.publish(row)
        values = usage_mod.row_values(row)
        with self._cond:
            if len(self._rows) >= self.buffer_rows:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("usage: PostgreSQL at %s is unreachable and %d rows are "
                              "buffered ([usage] buffer_rows); %d row(s) dropped so far",
                              self.where, len(self._rows), self.dropped)
                return
            self._rows.append(values)
            self._queued += 1
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def connect_reader(self) -> PgReader:
        return PgReader(self.url)

    # --- writer thread --------------------------------------------------------------
    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while True:
            with self._cond:
                while not self._rows and not self._stop:
                    self._cond.wait()
                if not self._rows:
                    break
                batch = [self._rows[i] for i in range(min(BATCH, len(self._rows)))]
            try:
                if conn is None or conn.closed:
                    conn = connect(self.url)
                    ensure_schema(conn)
                written = self._write(conn, batch)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("usage: PostgreSQL at %s is unreachable (%s); buffering "
                                "rows (up to %d) until it is back", self.where,
                                str(exc).strip().splitlines()[0] if str(exc) else
                                type(exc).__name__, self.buffer_rows)
                with self._cond:
                    if self._stop:
                        break
                    self._cond.wait(RETRY_SECS)
                continue
            if self._down_since is not None:
                log.warning("usage: PostgreSQL at %s is reachable again (down %.0f s); "
                            "writing the %d buffered rows", self.where,
                            time.monotonic() - self._down_since, len(self._rows))
                self._down_since = None
            with self._cond:
                for _ in batch:
                    self._rows.popleft()
                self._done += len(batch)
                self.dropped += len(batch) - written
                self._cond.notify_all()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._spill()

    def _write(self, conn: psycopg.Connection, batch: list[tuple[Any, ...]]) -> int:
        """Commit ``batch``; a batch refused for its data is written row by row,
        dropping (and logging) the rows refused.  Returns the rows written."""
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_INSERT, batch)
            return len(batch)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error:
            pass
        written = 0
        for values in batch:
            try:
                with conn.transaction():
                    conn.execute(_INSERT, values)
                written += 1
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except psycopg.Error as exc:
                log.error("usage: dropped a row PostgreSQL refused (%s: %s): %.300r",
                          type(exc).__name__, exc, values)
        return written

    def _spill(self) -> None:
        """Rows PostgreSQL never got (stopped while it was down) -> the local
        SQLite store, so none is lost."""
        with self._cond:
            rows = list(self._rows)
            self._rows.clear()
            self._done += len(rows)
            self._cond.notify_all()
        if not rows:
            return
        path = usage_mod.default_path()
        try:
            conn = usage_mod.connect(path)
            try:
                with conn:
                    conn.executemany(usage_mod.INSERT_SQL, rows)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - nowhere left to put them: say so
            self.dropped += len(rows)
            log.error("usage: PostgreSQL at %s was unreachable at shutdown and %d row(s) "
                      "could not be saved to %s either (%s); they are lost", self.where,
                      len(rows), path, exc)
            return
        self.spilled = path
        log.warning("usage: PostgreSQL at %s was unreachable at shutdown; %d row(s) were "
                    "saved to %s instead", self.where, len(rows), path)

    # --- control ----------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row recorded so far is written (True if it was)."""
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._done >= target or
                                       not self._thread.is_alive(), timeout)

    def reset(self, timeout: float = 30.0) -> int:
        """Delete every row (after the rows recorded so far are written)."""
        if not self.flush(timeout):
            raise TimeoutError("the usage rows recorded so far could not be written to "
                               "PostgreSQL in time")
        conn = connect(self.url)
        try:
            ensure_schema(conn)
            return conn.execute("DELETE FROM requests").rowcount
        finally:
            conn.close()

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
