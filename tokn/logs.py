"""Logging from ``[logging]`` (level, text or JSON lines, optional file) and the
reader behind ``tokn logs`` (tail, level filter, follow).

Records at the configured level go to the log file: ``[logging].file``, by
default ``tokn.log`` in the state dir (0600, rotated at 10 MB, 3 old files
kept).  A tokn in the foreground also prints them on stderr; one whose stderr
*is* the log file (``tokn start``, the launchd agent) writes them once, and
after a rotation its stdout and stderr follow the new file.

Line shapes (one record per line; a traceback's extra lines follow it):

* text: ``2026-11-01 10:00:00,123 INFO tokn.request <message>``
* json: ``{"ts": "2026-11-01T09:00:00.123Z", "level": "info", "logger": ...,
  "message": ..., <fields>}`` where ``<fields>`` are whatever the caller passed
  as ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from tokn.config import Config

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class OnceFormatter(logging.Formatter):
    """Formats a record once for all the handlers sharing this formatter (the
    file and stderr), not once per handler; :meth:`render` makes the line."""

    def format(self, record: logging.LogRecord) -> str:
        done = record.__dict__.get("tokn_text")
        if done is not None and done[0] is self:
            return done[1]
        text = self.render(record)
        record.tokn_text = (self, text)
        return text

    def render(self, record: logging.LogRecord) -> str:
        return super().format(record)

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """logging's default time (``2026-11-01 10:00:00,123``), its seconds
        formatted once per second, not once per record."""
        if datefmt:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)  # one assignment: threads see old or new
        return self.default_msec_format % (text, record.msecs)


class JsonFormatter(OnceFormatter):
    def render(self, record: logging.LogRecord) -> str:
        data = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update({k: v for k, v in fields.items() if k not in ("ts", "level")})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file created 0600 every time: the first one and each new
    one after a rotation (request lines name accounts and clients).

    With ``std_streams`` (this process's stdout and stderr were the log file)
    each new file also becomes fds 1 and 2, so what is printed or dumped there
    (a crash's traceback) lands in the current file, not a rotated one."""

    def __init__(self, *args: Any, std_streams: bool = False, **kwargs: Any) -> None:
        self.std_streams = std_streams
        super().__init__(*args, **kwargs)

    def _open(self) -> TextIO:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # an existing file keeps no wider mode either
        if self.std_streams:
            for std in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    std.flush()
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        self._size = os.fstat(fd).st_size
        self._sized = time.monotonic()
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115

    def emit(self, record: logging.LogRecord) -> None:
        """logging's rotation check stats the path twice, seeks and formats the
        record once more; this one counts what it wrote, and reads the file's
        real size (others append to it: a traceback on fd 2) once a second."""
        try:
            if self.stream is None:
                self.stream = self._open()
            size = len(self.format(record).encode("utf-8", "replace")) + 1
            now = time.monotonic()
            if now - self._sized >= 1.0:
                self._sized = now
                self.stream.flush()
                self._size = os.fstat(self.stream.fileno()).st_size
            if self.maxBytes > 0 and self._size + size >= self.maxBytes:
                self.doRollover()
            logging.FileHandler.emit(self, record)
            self._size += size
        except Exception:  # noqa: BLE001 - logging's own contract: report, go on
            self.handleError(record)


def log_file(cfg: Config) -> Path:
    """The log file: ``[logging].file`` (``~`` expanded), else ``tokn.log`` in
    the state dir."""
    return Path(cfg.logging.file).expanduser() if cfg.logging.file else default_log_file()


def default_log_file() -> Path:
    from tokn import paths

    return paths.state_dir() / "tokn.log"


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def stderr_is_log(cfg: Config) -> bool:
    """Whether this process's stderr is the log file (started by ``tokn start``
    or a launchd agent): then it is written once, not twice."""
    return _same_file(2, log_file(cfg))


def formatter_of(cfg: Config) -> logging.Formatter:
    return JsonFormatter() if cfg.logging.format == "json" else OnceFormatter(TEXT_FORMAT)


def apply_logging(cfg: Config) -> None:
    """Take up a changed ``[logging]`` level and format in the running process
    (the file stays the one :func:`setup_logging` opened)."""
    root = logging.getLogger("tokn")
    root.setLevel(cfg.logging.level.upper())
    formatter = formatter_of(cfg)
    for handler in root.handlers:
        handler.setFormatter(formatter)


def setup_logging(cfg: Config) -> Path:
    """Log to the log file (and to stderr, unless stderr is that file);
    returns the file's path."""
    from tokn import paths

    root = logging.getLogger("tokn")
    root.setLevel(cfg.logging.level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = formatter_of(cfg)
    path = log_file(cfg)
    detached = stderr_is_log(cfg)
    if cfg.logging.file:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        paths.ensure_private_dir(path.parent)
    handler = PrivateRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                         encoding="utf-8", std_streams=detached)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    if not detached:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(formatter)
        root.addHandler(stderr)
    root.propagate = False
    return path


# --- reading ---------------------------------------------------------------------------
_TEXT_LEVEL = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}\S* (DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL) ")


def line_level(line: str) -> int | None:
    """The level number of a record's first line (text or JSON); None for a
    continuation line (e.g. a traceback)."""
    stripped = line.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            return LEVELS.get(data["level"].lower(), 0)
        return None
    match = _TEXT_LEVEL.match(line)
    return LEVELS[match.group(1).lower()] if match else None


def level_number(name: str) -> int:
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown level {name!r}; use one of: debug, info, warning, "
                         "error, critical") from None


def records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """Group lines into records: ``(level, [first line, continuation lines...])``.
    Lines before any record start are reported at level 0."""
    current: list[str] = []
    level = 0
    for line in lines:
        found = line_level(line)
        if found is None and current:
            current.append(line)
            continue
        if current:
            yield level, current
        current, level = [line], (found or 0)
    if current:
        yield level, current


def tail(path: Path, n: int = 50, min_level: int = 0) -> list[str]:
    """The last ``n`` records at ``min_level`` or above, as lines."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return _last(fh.read().splitlines(), n, min_level)


def tail_for_follow(path: Path, n: int = 50, min_level: int = 0) -> tuple[list[str], int]:
    """:func:`tail` of the complete lines, and the byte offset after them: where
    :func:`follow` resumes, so a line written in between is not lost."""
    with open(path, "rb") as fh:
        raw = fh.read()
    end = raw.rfind(b"\n") + 1
    return _last(raw[:end].decode("utf-8", "replace").splitlines(), n, min_level), end


def _last(lines: list[str], n: int, min_level: int) -> list[str]:
    kept = [rec for level, rec in records(lines) if level >= min_level]
    if n >= 0:
        kept = kept[-n:] if n else []
    return [line for rec in kept for line in rec]


def follow(path: Path, min_level: int = 0, write: Callable[[str], Any] | None = None,
           stop: Callable[[], bool] = lambda: False, poll: float = 0.2,
           from_end: bool = True, start: int | None = None) -> None:
    """Print records appended to ``path`` until ``stop()`` is true (or Ctrl-C),
    from byte ``start`` (what :func:`tail_for_follow` read up to), else from its
    end (``from_end``) or its start.

    Survives rotation and truncation: when the file is replaced or shrinks it
    is reopened from its start.
    """
    out: Callable[[str], Any] = write or _stdout_writer(sys.stdout)
    fh: TextIO | None = None
    ino = None
    pending = ""
    keep = False  # whether the current record passes the level filter

    def emit(line: str) -> None:
        nonlocal keep
        level = line_level(line)
        if level is not None:
            keep = level >= min_level
        elif min_level == 0:
            keep = True
        if keep:
            out(line)

    try:
        while not stop():
            if fh is None:
                try:
                    fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                except FileNotFoundError:
                    from_end = False  # it appears later: read it whole
                    time.sleep(poll)
                    continue
                ino = os.fstat(fh.fileno()).st_ino
                if start is not None:
                    fh.seek(start)  # a line boundary: the UTF-8 decoder starts clean
                elif from_end:
                    fh.seek(0, os.SEEK_END)
                from_end, start = False, None  # files appearing later: from the start
            chunk = fh.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    emit(line)
                continue
            try:
                st = os.stat(path)
                rotated = st.st_ino != ino or st.st_size < fh.tell()
            except FileNotFoundError:
                rotated = True
            if rotated:
                fh.close()
                fh = None
                continue
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()


def _stdout_writer(stream: TextIO) -> Callable[[str], Any]:
    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write
