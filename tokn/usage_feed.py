"""Live usage rows: a small in-process publish/subscribe beside the usage store.

Every row :meth:`tokn.usage.UsageStore.record` queues is also published here
(both front doors end there), as a summary without bodies.  The dashboard's
live tail subscribes; a ring buffer of the latest summaries lets a page that
just opened (or an ``EventSource`` that reconnects with ``Last-Event-ID``)
start with what it missed.

A subscriber that falls behind loses its oldest undelivered rows, never
blocks the publisher: recording stays off the request path.  ``publish`` may
be called from any thread; delivery happens on each subscriber's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

# The columns a live row carries (bodies stay in the store: the detail view reads them).
SUMMARY = ("ts", "request_id", "front_door", "route_mode", "client", "inbound_format",
           "upstream_format", "provider", "account", "model_requested", "model_served",
           "initiator", "stream", "status", "error", "input_tokens", "output_tokens",
           "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "estimated",
           "ttfb_ms", "latency_ms")
ERROR_CHARS = 500
BACKLOG = 200
QUEUE = 500


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The live form of a usage row: :data:`SUMMARY` columns, error cut short."""
    out = {name: row.get(name) for name in SUMMARY}
    if isinstance(out["error"], str) and len(out["error"]) > ERROR_CHARS:
        out["error"] = out["error"][:ERROR_CHARS] + "…"
    return out


class Subscription:
    """Rows published after :meth:`Feed.subscribe`, as ``(seq, summary)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(QUEUE)
        self.dropped = 0

    def _put(self, item: tuple[int, dict[str, Any]]) -> None:  # on self.loop
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    async def get(self, timeout: float) -> tuple[int, dict[str, Any]] | None:
        """The next row, or ``None`` after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None


class Feed:
    def __init__(self, backlog: int = BACKLOG) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._recent: collections.deque[tuple[int, dict[str, Any]]] = \
            collections.deque(maxlen=backlog)
        self._subs: set[Subscription] = set()

    def publish(self, row: dict[str, Any]) -> None:
        item_row = summary(row)
        with self._lock:
            self._seq += 1
            item = (self._seq, item_row)
            self._recent.append(item)
            subs = list(self._subs)
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for sub in subs:
            if sub.loop is here:
                sub._put(item)
            else:
                with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
                    sub.loop.call_soon_threadsafe(sub._put, item)

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest row published (0: none yet)."""
        with self._lock:
            return self._seq

    def recent(self, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """Buffered rows with a sequence number above ``after``, oldest first."""
        with self._lock:
            return [item for item in self._recent if item[0] > after]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Receive every row published while the block runs (on this loop)."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)
