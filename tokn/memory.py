"""Giving the memory a burst used back to the system once it is over.

After 500 concurrent streams through the proxy, ``tokn serve`` held ~70 MB
more than before, for good.  Two things kept it: the connections' objects
(mitmproxy's layers, their generators) form reference cycles, freed only by
the cyclic garbage collector, which runs on allocations, so never while the
process is idle; and glibc's ``malloc`` keeps freed memory for reuse,
returning only what lies at the top of its heap.  :func:`trim_after_bursts`
runs :func:`release` (a collection of what requests left, :func:`settle`
having set what start-up made aside; then ``malloc_trim(0)``: every free page
back, wherever it is) when the process is idle and its RSS has grown
since the last time, so a burst costs memory while it lasts, and one
collection after.

Where the C library has no ``malloc_trim`` (musl, macOS) only the collection
is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger("tokn")

SUPPORTED = sys.platform.startswith("linux")  # RSS from /proc
CHECK_SECS = 10.0  # how often the RSS is looked at (one small /proc read)
SLACK = 8 * 1024 * 1024  # RSS growth since the last trim worth a trim


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where the C library lacks it."""
    if not SUPPORTED:
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # e.g. musl
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def settle() -> None:
    """Once started: collect, then leave what is alive (modules, config, the
    app: ~100,000 objects) out of later collections (``gc.freeze``), so that
    :func:`release`'s collection takes well under a millisecond, not ~50 ms,
    and the collector's full passes under load scan only what requests made."""
    gc.collect()
    gc.freeze()


def release() -> None:
    """Free what only the cyclic collector can, then give free pages back."""
    gc.collect()
    trim = malloc_trim()
    if trim is not None:
        trim()


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def trim_after_bursts(busy: Callable[[], bool], *, every: float = CHECK_SECS,
                            slack: int = SLACK, trim: Callable[[], object] = release,
                            rss: Callable[[], int] = rss_bytes) -> None:
    """Every ``every`` seconds: when nothing is ``busy`` and the RSS has grown by
    more than ``slack`` since the last ``trim`` (or the lowest reading since),
    ``trim`` (:func:`release`); runs until cancelled."""
    floor = rss()
    while True:
        await asyncio.sleep(every)
        if busy():
            continue
        before = rss()
        floor = min(floor, before)
        if before - floor <= slack:
            continue
        trim()
        floor = rss()
        log.debug("memory: gave %.1f MB back after a burst (RSS %.1f MB)",
                  (before - floor) / 2**20, floor / 2**20)
