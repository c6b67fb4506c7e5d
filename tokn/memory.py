"""Giving the memory a burst used back to the system once it is over.

After 500 concurrent streams through the proxy, ``tokn serve`` held ~75 MB
more than before, for good: the connections' buffers, TLS state and request
objects were freed, but glibc's ``malloc`` keeps freed memory for reuse and
returns only what lies at the top of its heap.  ``malloc_trim(0)`` hands back
every free page, wherever it is.  :func:`trim_after_bursts` calls it when the
process is idle and its RSS has grown since the last trim, so a burst costs
memory while it lasts, and ~one C call after.

Where the C library has no ``malloc_trim`` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger("tokn")

CHECK_SECS = 10.0  # how often the RSS is looked at (one small /proc read)
SLACK = 16 * 1024 * 1024  # RSS growth since the last trim worth a trim


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where the C library lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # e.g. musl
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def trim_after_bursts(busy: Callable[[], bool], *, every: float = CHECK_SECS,
                            slack: int = SLACK, trim: Callable[[], object] | None = None,
                            rss: Callable[[], int] = rss_bytes) -> None:
    """Every ``every`` seconds: when nothing is ``busy`` and the RSS has grown by
    more than ``slack`` since the last trim (or the start), ``trim`` (default:
    :func:`malloc_trim`); runs until cancelled.  Returns at once without one."""
    trim = trim or malloc_trim()
    if trim is None:
        return
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
