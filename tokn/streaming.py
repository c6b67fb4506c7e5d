"""Relaying one upstream event stream to the client, honestly.

:class:`Relay` reads the upstream through a :class:`~tokn.convert.StreamConverter`
with every wait bounded (``[timeouts] stream_idle_secs``, and a drain cut at
shutdown).  First :meth:`Relay.look_ahead` reads until the upstream's first
valid event: an upstream that fails before that (garbage, an empty or cut
stream, an error event, silence) has sent the client nothing yet, so the
pipeline can fail over.  Then :meth:`Relay.body` streams the rest and always
ends the client's stream properly: the upstream's own end, or an error event
in the client's format naming what went wrong.  ``on_end`` gets the
:class:`~tokn.endings.Ending` (``None`` for a clean one) exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tokn import endings
from tokn.drain import InFlight
from tokn.endings import Ending
from tokn.usage import BodyCapture

# What a broken upstream stream raises: transport errors, a line over the cap
# or corrupt framing (ValueError, e.g. KiroStreamError).
BROKEN = (httpx.HTTPError, ValueError)


class Relay:
    def __init__(self, up: Any, conv: Any, flight: InFlight, *, idle_secs: float,
                 drain_secs: float, capture: BodyCapture,
                 on_end: Callable[[Ending | None, int], None]) -> None:
        self.up = up
        self.conv = conv
        self.flight = flight
        self.idle_secs = idle_secs
        self.drain_secs = drain_secs
        self.capture = capture
        self.on_end = on_end
        self.sent = 0
        self._chunks = up.chunks().__aiter__()
        self._head: list[bytes] = []
        self._exhausted = False
        self._finished = False

    async def _next(self, secs: float) -> bytes | None:
        async with self.flight.bounded(secs):
            try:
                return await self._chunks.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return None

    def _timed_out(self) -> Ending:
        return endings.shut_down(self.drain_secs) if self.flight.cut \
            else endings.stalled(self.idle_secs)

    def _verdict(self) -> Ending | None:
        """How the upstream stream failed, judged from what it sent."""
        conv = self.conv
        if conv.invalid is not None:
            return endings.invalid_event(conv.invalid)
        if conv.upstream_error is not None:
            return endings.upstream_error(conv.upstream_error)
        if self._exhausted and not conv.ended:
            return endings.upstream_cut()
        return None

    async def look_ahead(self, window: float) -> Ending | None:
        """Read until the first valid upstream event, within ``window`` seconds.

        Returns the ending when the stream already failed (nothing reached the
        client; the upstream response is closed), else ``None``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        conv = self.conv
        try:
            while not (conv.events or conv.invalid or conv.ended or self._exhausted):
                left = deadline - loop.time()
                try:
                    chunk = await self._next(min(self.idle_secs, left))
                except TimeoutError:
                    if self.flight.cut or left > self.idle_secs:
                        ending: Ending | None = self._timed_out()
                    else:
                        ending = endings.no_answer(window, stream=True)
                    break
                out = conv.feed(chunk) if chunk is not None else conv.flush()
                if out:
                    self._head.append(out)
            else:
                ending = self._verdict()
        except BROKEN as exc:
            ending = endings.upstream_broke(exc)
        except BaseException:
            self._finished = True
            await self.up.aclose()
            raise
        if ending is not None:
            self._finished = True
            await self.up.aclose()
        return ending

    async def body(self) -> AsyncIterator[bytes]:
        """The client's stream: what was read ahead, the rest, a proper end."""
        conv = self.conv
        ending: Ending | None = None
        try:
            for out in self._head:
                yield self._out(out)
            self._head = []
            try:
                while conv.invalid is None and conv.upstream_error is None \
                        and not self._exhausted:
                    chunk = await self._next(self.idle_secs)
                    out = conv.feed(chunk) if chunk is not None else conv.flush()
                    if out:
                        yield self._out(out)
                ending = self._verdict()
            except TimeoutError:
                ending = self._timed_out()
            except BROKEN as exc:
                ending = endings.upstream_broke(exc)
            if ending is None:
                tail = conv.close()
            elif conv.upstream_error is not None and conv.passthrough:
                tail = b""  # the upstream's own error event already went through
            else:
                tail = conv.error(ending.reason)
            if tail:
                yield self._out(tail)
        except (asyncio.CancelledError, GeneratorExit):
            ending = endings.shut_down(self.drain_secs) if self.flight.cut \
                else endings.client_closed()
            raise
        finally:
            await self.finish(ending)

    async def finish(self, ending: Ending | None) -> None:
        """Report the ending (once) and close the upstream.  Also called for a
        body that was never iterated (the client went away first); reporting
        comes before the close, which a cancellation may interrupt."""
        if not self._finished:
            self._finished = True
            self.on_end(ending, self.sent)
        await self.up.aclose()

    async def abandon(self) -> None:
        await self.finish(endings.shut_down(self.drain_secs) if self.flight.cut
                          else endings.client_closed())

    def _out(self, data: bytes) -> bytes:
        self.sent += len(data)
        self.capture.feed(data)
        return data
