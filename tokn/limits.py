"""Per-key limits (team mode): requests per minute, tokens per day, model globs.

The counts live behind one small interface, :class:`Counters`: named integer
counters that expire at a given time.  :class:`LocalCounters` keeps them in
memory and in a 0600 JSON file in the state dir, so they survive a restart; a
shared backend (e.g. Redis, for several tokn processes) implements the same
three methods.

:class:`Limiter` decides: :meth:`Limiter.admit` is asked once per request
before any upstream is tried (a refusal says status, message and
``Retry-After``); :meth:`Limiter.spend` adds a finished request's tokens to
its key's day.  Windows are fixed: the current minute (UTC) for requests per
minute, the local calendar day for tokens per day (the same day ``tokn usage
--by day`` groups by).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tokn import paths
from tokn.identity import Identity

log = logging.getLogger("tokn.limits")


class Counters(Protocol):
    """Named counters that expire (the whole interface a backend implements)."""

    def add(self, name: str, amount: int, expires_at: float) -> int:
        """Add ``amount`` to ``name`` (created at 0, gone after ``expires_at``,
        epoch seconds); the new value."""
        ...

    def get(self, name: str) -> int:
        """The current value of ``name`` (0 when absent or expired)."""
        ...

    def close(self) -> None:
        """Write out what is pending and let go of resources."""
        ...


def default_path() -> Path:
    return paths.state_dir() / "limits.json"


class LocalCounters:
    """Counters in this process, written through to ``path`` (JSON, 0600) on
    every change so they survive a restart; ``path=None`` keeps them in memory."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, list[float]] = {}  # name -> [value, expires_at]
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("limits: cannot read %s (%s); counting from zero", path, exc)
            return
        now = self.clock()
        if isinstance(data, dict):
            for name, pair in data.items():
                if isinstance(pair, list) and len(pair) == 2 and all(
                        isinstance(v, int | float) for v in pair) and pair[1] > now:
                    self._values[str(name)] = [int(pair[0]), float(pair[1])]

    def _live(self, name: str, now: float) -> list[float] | None:
        entry = self._values.get(name)
        if entry is not None and entry[1] <= now:
            del self._values[name]
            return None
        return entry

    def add(self, name: str, amount: int, expires_at: float) -> int:
        with self._lock:
            now = self.clock()
            entry = self._live(name, now)
            if entry is None:
                entry = self._values[name] = [0, expires_at]
            entry[0] += amount
            value = int(entry[0])
            for other in [k for k, (_, exp) in self._values.items() if exp <= now]:
                del self._values[other]
            self._write()
            return value

    def get(self, name: str) -> int:
        with self._lock:
            entry = self._live(name, self.clock())
            return int(entry[0]) if entry is not None else 0

    def close(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        """Replace the file (atomic rename, no fsync: it must survive a restart
        of tokn, not a power cut)."""
        if self.path is None:
            return
        try:
            paths.ensure_private_dir(self.path.parent)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(self._values, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("limits: cannot write %s: %s", self.path, exc)


# --- the decisions ------------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """Why a request may not go on: an HTTP status, a message for the caller,
    an error code and, for a limit, the seconds until it may retry."""

    status: int
    message: str
    code: str
    retry_after: float | None = None


def model_allowed(model: str, globs: Iterable[str]) -> bool:
    """Whether ``model`` (or the part after a ``provider/`` prefix) matches one
    of ``globs`` (case-insensitive shell patterns); no globs allow every model."""
    globs = tuple(globs)
    if not globs:
        return True
    names = {model.lower(), model.rsplit("/", 1)[-1].lower()}
    return any(fnmatch.fnmatchcase(name, glob.lower()) for name in names for glob in globs)


def day_window(now: float) -> tuple[str, float]:
    """``(YYYY-MM-DD, next local midnight as epoch seconds)`` of ``now``."""
    local = dt.datetime.fromtimestamp(now).astimezone()
    midnight = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.strftime("%Y-%m-%d"), midnight.timestamp()


def minute_window(now: float) -> tuple[int, float]:
    """``(minute number, its end as epoch seconds)`` of ``now``."""
    minute = int(now // 60)
    return minute, (minute + 1) * 60.0


def is_person(name: str | None) -> bool:
    return bool(name) and name not in ("admin", "anonymous", "proxy")


class Limiter:
    """Applies a person's key limits over :class:`Counters`."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock

    def tokens_today(self, name: str) -> int:
        day, _ = day_window(self.clock())
        return self.counters.get(f"tpd:{name}:{day}")

    def admit(self, identity: Identity, model: str | None) -> Refusal | None:
        """``None`` when ``identity`` may send this request now (it then counts
        towards its requests per minute), else why not."""
        if identity.admin:
            return None
        name = identity.name
        if model is not None and not model_allowed(model, identity.models):
            return Refusal(403, f"key {name!r} may not use model {model!r}; it may use: "
                           f"{', '.join(identity.models)}.", "model_not_allowed")
        now = self.clock()
        if identity.tokens_per_day is not None:
            day, midnight = day_window(now)
            spent = self.counters.get(f"tpd:{name}:{day}")
            if spent >= identity.tokens_per_day:
                return Refusal(429, f"key {name!r} used its {identity.tokens_per_day:,} "
                               f"tokens for today ({spent:,} so far); it may send again at "
                               "midnight (local time of the tokn server).",
                               "tokens_per_day_exceeded", midnight - now)
        if identity.rpm is not None:
            minute, end = minute_window(now)
            counter = f"rpm:{name}:{minute}"
            if self.counters.add(counter, 1, end) > identity.rpm:
                self.counters.add(counter, -1, end)  # a refused request does not count
                return Refusal(429, f"key {name!r} may send {identity.rpm} request(s) per "
                               "minute; wait for the next minute.", "rate_limit_exceeded",
                               end - now)
        return None

    def spend(self, name: str | None, tokens: int) -> None:
        """Add a finished request's tokens to its key's day (people's keys only)."""
        if not is_person(name) or tokens <= 0:
            return
        day, midnight = day_window(self.clock())
        self.counters.add(f"tpd:{name}:{day}", tokens, midnight)

    def close(self) -> None:
        self.counters.close()
