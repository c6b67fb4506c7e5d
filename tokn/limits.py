"""Per-key limits (team mode): requests per minute, tokens per day, model globs.

The counts live behind one small async interface, :class:`Counters`: named
integer counters that expire at a given time.  :class:`LocalCounters` keeps
them in memory and in a 0600 JSON file in the state dir, so they survive a
restart; a shared backend (Redis, for several tokn processes:
:mod:`tokn.shared.counters`) implements the same methods.

:class:`Limiter` decides: :meth:`Limiter.admit` is awaited once per request
before any upstream is tried (a refusal says status, message and
``Retry-After``); :meth:`Limiter.spend` queues a finished request's tokens for
its key's day, applied by the limiter's background task (:meth:`Limiter.start`)
and on :meth:`Limiter.aclose`, so recording a row never waits on a counter.
Windows are fixed: the current minute (UTC) for requests per minute, the local
calendar day for tokens per day (the same day ``tokn usage --by day`` groups
by).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tokn import paths
from tokn.identity import Identity

log = logging.getLogger("tokn.limits")

WRITE_EVERY_SECS = 1.0  # LocalCounters writes its file at most this often


class Counters(Protocol):
    """Named counters that expire (the whole interface a backend implements).
    Called on the event loop; a backend never waits longer than its own
    short timeout."""

    async def add(self, name: str, amount: int, expires_at: float) -> int:
        """Add ``amount`` to ``name`` (created at 0, gone after ``expires_at``,
        epoch seconds); the new value."""
        ...

    async def get(self, name: str) -> int:
        """The current value of ``name`` (0 when absent or expired)."""
        ...

    def close(self) -> None:
        """Write out what is pending (the backend's own resources only)."""
        ...


def default_path() -> Path:
    return paths.state_dir() / "limits.json"


class LocalCounters:
    """Counters in this process, kept in ``path`` (JSON, 0600) so they survive
    a restart; ``path=None`` keeps them in memory.

    The file is written at most once per ``write_every`` seconds after a
    change (one write for a burst of requests, not one each) and on
    :meth:`close`: a graceful stop keeps every count, a crash (``kill -9``)
    loses at most the last ``write_every`` seconds of them."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time,
                 write_every: float = WRITE_EVERY_SECS) -> None:
        self.path = path
        self.clock = clock
        self.write_every = write_every
        self.writes = 0  # times the file was written
        self._values: dict[str, list[float]] = {}  # name -> [value, expires_at]
        self._timer: asyncio.TimerHandle | None = None  # the pending write
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

    async def add(self, name: str, amount: int, expires_at: float) -> int:
        now = self.clock()
        entry = self._live(name, now)
        if entry is None:
            entry = self._values[name] = [0, expires_at]
        entry[0] += amount
        for other in [k for k, (_, exp) in self._values.items() if exp <= now]:
            del self._values[other]
        if self.path is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.write_every, self._write)
        return int(entry[0])

    async def get(self, name: str) -> int:
        entry = self._live(name, self.clock())
        return int(entry[0]) if entry is not None else 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._write()

    def _write(self) -> None:
        """Replace the file (atomic rename, no fsync: it must survive a restart
        of tokn, not a power cut)."""
        self._timer = None
        if self.path is None:
            return
        try:
            paths.ensure_private_dir(self.path.parent)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(self._values, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
            self.writes += 1
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


def _day_counter(name: str, day: str) -> str:
    """The counter of ``name``'s tokens on ``day`` (``YYYY-MM-DD``)."""
    return f"tpd:{name}:{day}"


def is_person(name: str | None) -> bool:
    return bool(name) and name not in ("admin", "anonymous", "proxy")


class Limiter:
    """Applies a person's key limits over :class:`Counters`.

    Spent tokens wait in ``pending`` (one entry per counter, that is per key
    and day, so it stays as small as the keys file) until the background task
    started by :meth:`start` adds them to the counters, just after the
    response; :meth:`aclose` applies what is left (a graceful stop loses no
    counted tokens).  :meth:`admit` counts the pending tokens too."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock
        self.pending: dict[str, list[float]] = {}  # counter -> [tokens, expires_at]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def tokens_today(self, name: str) -> int:
        day, _ = day_window(self.clock())
        return await self._spent(_day_counter(name, day))

    async def _spent(self, counter: str) -> int:
        return await self.counters.get(counter) + self._pending(counter)

    def _pending(self, counter: str) -> int:
        entry = self.pending.get(counter)
        return int(entry[0]) if entry is not None else 0

    async def admit(self, identity: Identity, model: str | None) -> Refusal | None:
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
            spent = await self._spent(_day_counter(name, day))
            if spent >= identity.tokens_per_day:
                return Refusal(429, f"key {name!r} used its {identity.tokens_per_day:,} "
                               f"tokens for today ({spent:,} so far); it may send again at "
                               "midnight (local time of the tokn server).",
                               "tokens_per_day_exceeded", midnight - now)
        if identity.rpm is not None:
            minute, end = minute_window(now)
            counter = f"rpm:{name}:{minute}"
            if await self.counters.add(counter, 1, end) > identity.rpm:
                await self.counters.add(counter, -1, end)  # a refused request does not count
                return Refusal(429, f"key {name!r} may send {identity.rpm} request(s) per "
                               "minute; wait for the next minute.", "rate_limit_exceeded",
                               end - now)
        return None

    def spend(self, name: str | None, tokens: int) -> None:
        """Queue a finished request's tokens for its key's day (people's keys
        only); never waits.  Called on the event loop."""
        if not is_person(name) or tokens <= 0:
            return
        day, midnight = day_window(self.clock())
        entry = self.pending.setdefault(_day_counter(name, day), [0, midnight])
        entry[0] += tokens
        self._wake.set()

    async def flush(self) -> None:
        """Add the pending tokens to the counters (each counter's share leaves
        ``pending`` once it is applied, so :meth:`admit` always sees it)."""
        while self.pending:
            counter, entry = next(iter(self.pending.items()))
            tokens = int(entry[0])
            await self.counters.add(counter, tokens, entry[1])
            entry[0] -= tokens  # what was spent meanwhile stays pending
            if entry[0] <= 0 and self.pending.get(counter) is entry:
                del self.pending[counter]

    def start(self) -> None:
        """Apply spent tokens in the background (in the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the task must outlive a backend's bug
                log.exception("limits: could not count spent tokens")

    async def aclose(self) -> None:
        """Apply every pending spend, then close the counters."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            self.counters.close()
