"""Requests in flight, their bounded waits, and draining them at shutdown.

A request's :class:`Hangup` (in its ASGI scope, from the listener's protocol
or the proxy's in-process hop) says when its client went away.

Every request the listener serves (and every flow the proxy forwards itself)
is an :class:`InFlight` registered with the process's :class:`Drain`.  Waits on
an upstream go through :meth:`InFlight.bounded`, so each is bounded by a
``[timeouts]`` value *and* can be cut short when the drain period is over::

    async with inbound.flight.bounded(120):
        chunk = await anext(chunks)        # TimeoutError after 120 s, or at once
                                           # after Drain.cut() (then flight.cut)

On SIGTERM the server stops accepting, :meth:`Drain.wait` gives what is in
flight ``[server].drain_secs`` to finish, then :meth:`Drain.cut` ends the rest,
each with an error its client understands and a usage row saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

HANGUP = "tokn.hangup"  # the ASGI scope key of a request's Hangup (the listener's app needs one)


class Hangup:
    """Whether a request's client went away before its answer was complete, and
    what to call when it does (one callback: the handler's)."""

    __slots__ = ("lost", "_callback")

    def __init__(self) -> None:
        self.lost = False
        self._callback: Callable[[], object] | None = None

    def on_lost(self, callback: Callable[[], object] | None) -> None:
        self._callback = callback

    def fire(self) -> None:
        self.lost = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


class Bounded:
    """:meth:`InFlight.bounded`'s block: an ``asyncio.timeout`` the drain can
    cut short (a class, not a generator: a stream enters one per chunk)."""

    __slots__ = ("flight", "secs", "timeout")

    def __init__(self, flight: InFlight, secs: float) -> None:
        self.flight = flight
        self.secs = secs
        self.timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self.flight.cut:
            raise TimeoutError
        self.timeout = asyncio.timeout(self.secs)
        await self.timeout.__aenter__()
        self.flight._timeout = self.timeout

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        self.flight._timeout = None
        assert self.timeout is not None
        return await self.timeout.__aexit__(kind, exc, tb)


class InFlight:
    """One request being served."""

    def __init__(self) -> None:
        self.cut = False  # the drain period ended before this request did
        self.on_stop: Callable[[], None] | None = None  # extra work when cut
        self._timeout: asyncio.Timeout | None = None
        self._at_end: list[Callable[[], Awaitable[None]]] = []

    def bounded(self, secs: float) -> Bounded:
        """Let the block run at most ``secs`` seconds (then :class:`TimeoutError`);
        after :meth:`Drain.cut` it raises at once, with ``cut`` set."""
        return Bounded(self, secs)

    def at_end(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when the HTTP exchange is over, however it ended
        (e.g. record a row for a stream whose body was never iterated)."""
        self._at_end.append(callback)

    async def end(self) -> None:
        callbacks, self._at_end = self._at_end, []
        for callback in callbacks:
            await callback()

    def stop(self) -> None:
        self.cut = True
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())
        if self.on_stop is not None:
            self.on_stop()


class Drain:
    """The process's requests in flight."""

    def __init__(self) -> None:
        self.live: set[InFlight] = set()
        self.draining = False  # set once shutdown began
        self.secs = 0.0  # the drain period, for messages

    def begin(self) -> InFlight:
        flight = InFlight()
        self.live.add(flight)
        return flight

    def end(self, flight: InFlight) -> None:
        self.live.discard(flight)

    @contextlib.contextmanager
    def track(self) -> Iterator[InFlight]:
        flight = self.begin()
        try:
            yield flight
        finally:
            self.end(flight)

    async def wait(self, secs: float, hurry: asyncio.Event | None = None) -> bool:
        """Wait until nothing is in flight (True) or ``secs`` passed / ``hurry``
        was set (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + secs
        while self.live:
            if loop.time() >= deadline or (hurry is not None and hurry.is_set()):
                return False
            await asyncio.sleep(0.05)
        return True

    def cut(self) -> int:
        """End the bounded waits of everything still in flight; returns how many."""
        live = list(self.live)
        for flight in live:
            flight.stop()
        return len(live)
