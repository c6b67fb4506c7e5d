"""A FakeLLM that misbehaves the ways real upstreams do, on request.

``FaultyLLM(fault=..., fault_after=N, **FakeLLM kwargs)``; ``fault`` may be
changed at run time (``None`` = behave).  Faults hit POSTs only (model
listings keep working):

* ``silent``: accept the request, never answer (until the fake closes);
* ``headers_then_silent``: answer 200 ``text/event-stream`` headers, then nothing;
* ``stall``: stream ``fault_after`` events, then go quiet (connection open);
* ``cut``: stream ``fault_after`` events, then end the body cleanly without
  the stream's final event;
* ``drop``: stream ``fault_after`` events, then reset the connection;
* ``garbage``: a 200 event stream of HTML;
* ``not_json``: a 200 event stream whose events' data is not JSON;
* ``long_line``: a 200 event stream whose first line is ``fault_after`` bytes long;
* ``error_event``: stream ``fault_after`` events, then the API's own error event.

Waiting faults (``silent``, ``stall``...) hold their handler thread until
:meth:`close` (or :meth:`release`), so tests end promptly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from tests.fakes.base import Exchange, StreamDropped
from tests.fakes.llm import FakeLLM

FAULTS = ("silent", "headers_then_silent", "stall", "cut", "drop", "garbage", "not_json",
          "long_line", "error_event")


class FaultyLLM(FakeLLM):
    def __init__(self, *, fault: str | None = None, fault_after: int = 2, **kw: Any) -> None:
        super().__init__(**kw)
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        self.fault_after = fault_after
        self._released = threading.Event()

    def release(self) -> None:
        """Let every waiting fault end (its connection is dropped)."""
        self._released.set()

    def close(self) -> None:
        self.release()
        super().close()

    def _hold(self, ex: Exchange) -> None:
        self._released.wait(300)
        ex.drop()

    def route(self, ex: Exchange) -> bool:
        fault = self.fault
        if ex.req.method != "POST" or fault in (None, "stall", "cut", "drop", "error_event"):
            return super().route(ex)
        if fault == "silent":
            self._hold(ex)
            return True
        ex.start_stream()
        if fault == "headers_then_silent":
            self._hold(ex)
            return True
        if fault == "garbage":
            ex.write(b"<html><body><h1>Service Unavailable</h1></body></html>\n\n")
        elif fault == "not_json":
            ex.write(b"data: {this is not json\n\n")
            ex.write(b"data: [DONE]\n\n")
        elif fault == "long_line":
            ex.write(b"data: " + b"x" * self.fault_after + b"\n\n")
        ex.end_stream()
        return True

    def _stream(self, ex: Exchange, events: Iterable[tuple[str | None, Any] | None],
                headers: dict[str, str] | None = None) -> bool:
        if self.fault in ("stall", "cut", "drop", "error_event"):
            events = self._then_fault(ex, events)
        return super()._stream(ex, events, headers)

    def _then_fault(self, ex: Exchange, events: Iterable[tuple[str | None, Any] | None]
                    ) -> Iterator[tuple[str | None, Any] | None]:
        """The first ``fault_after`` events, then the fault (``cut``: the stream
        just ends there)."""
        sent = 0
        for item in events:
            if item is not None:
                if sent == self.fault_after:
                    break
                sent += 1
            yield item
        if self.fault == "error_event":
            self._error_event(ex)
        elif self.fault in ("stall", "drop"):
            if self.fault == "stall":
                self._released.wait(300)
            ex.drop(rst=True)
            raise StreamDropped(self.fault)  # no chunked end after the drop

    @staticmethod
    def _error_event(ex: Exchange) -> None:
        path = ex.req.path
        if path.endswith("/messages"):
            ex.sse({"type": "error", "error": {"type": "overloaded_error",
                                               "message": "Overloaded"}}, "error")
        elif path.endswith("/responses"):
            ex.sse({"type": "error", "code": "server_error", "message": "Overloaded",
                    "sequence_number": 99}, "error")
        else:
            ex.write("data: " + json.dumps({"error": {"message": "Overloaded",
                                                      "type": "server_error"}}) + "\n\n")
