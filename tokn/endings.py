"""How a request really ended, when no upstream status says it: the status and
reason its usage row, log line and client error carry.

Both front doors (the pipeline and the proxy addon) take these from here, so
one ending reads the same wherever it happened:

======  =============================================================
status  ending
======  =============================================================
499     the client closed the connection before the answer was complete
502     the upstream broke off, sent an invalid stream, or reported an
        error in the middle of a stream
503     tokn shut down before the answer was complete
504     the upstream did not answer, or went silent, within ``[timeouts]``
======  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

CLIENT_CLOSED = 499
UPSTREAM_FAILED = 502
SHUT_DOWN = 503
TIMED_OUT = 504


@dataclass(frozen=True)
class Ending:
    status: int
    reason: str


def describe(exc: BaseException) -> str:
    """``TypeName: text`` of an exception.  Many httpx errors carry no text of
    their own (a reset is ``ReadError('')``): then the text of the first cause
    that has one, e.g. ``ReadError: [Errno 104] Connection reset by peer``."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        text = str(cause).strip()
        if text:
            return f"{type(exc).__name__}: {text}"
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return type(exc).__name__


def upstream_broke(exc: BaseException) -> Ending:
    return Ending(UPSTREAM_FAILED, f"upstream stream broke: {describe(exc)}")


def upstream_cut() -> Ending:
    return Ending(UPSTREAM_FAILED, "upstream stream ended before its final event")


def invalid_event(data: str) -> Ending:
    return Ending(UPSTREAM_FAILED, f"upstream sent an invalid stream event: {data[:120]!r}")


def upstream_error(message: str) -> Ending:
    return Ending(UPSTREAM_FAILED, f"upstream reported an error mid-stream: {message}")


def stalled(secs: float) -> Ending:
    return Ending(TIMED_OUT, f"upstream stream stalled: no data for {secs:g} s "
                             "([timeouts] stream_idle_secs)")


def no_answer(secs: float, *, stream: bool) -> Ending:
    if stream:
        return Ending(TIMED_OUT, f"upstream sent no response headers and first event within "
                                 f"{secs:g} s ([timeouts] first_byte_secs)")
    return Ending(TIMED_OUT, f"upstream did not answer within {secs:g} s "
                             "([timeouts] response_secs)")


def client_closed() -> Ending:
    return Ending(CLIENT_CLOSED, "client closed the connection before the answer was complete")


def shut_down(drain_secs: float) -> Ending:
    return Ending(SHUT_DOWN, f"tokn shut down before the answer was complete "
                             f"([server] drain_secs = {drain_secs:g})")
