"""One usage row per attempt, for both front doors: timing, body capture, the
log line and the usage store.

The pipeline starts an :class:`Attempt` for every upstream try (and for a
request that failed before any: no account, the client gone); the proxy's
usage observer starts one for every flow it forwards itself (switch and
passthrough).  :meth:`Attempt.finish` records the row exactly once, however
the attempt ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tokn.config import Config
from tokn.endings import Ending
from tokn.limits import Limiter, is_person
from tokn.usage import BodyCapture, UsageRow, UsageStore, capture_body

log = logging.getLogger("tokn.request")


def log_request(row: UsageRow) -> None:
    """One line per request: id, mode, front door, provider/account, requested ->
    served model ("-": none served), status, latency, a person's key name (team
    mode; never the key) and, for a failure, its reason; structured fields for
    ``[logging] format = "json"``."""
    status, error = row.status or 0, row.error
    fields = {"request_id": row.request_id, "key": row.key_name, "mode": row.route_mode,
              "front_door": row.front_door, "provider": row.provider,
              "account": row.account, "model": row.model_requested,
              "model_served": row.model_served, "stream": bool(row.stream),
              "status": status, "latency_ms": round(row.latency_ms or 0.0, 1),
              "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
              "error": error}
    (log.warning if status >= 500 or error else log.info)(
        "%s %s %s %s/%s %s -> %s %d %.0fms%s%s", fields["request_id"], fields["mode"],
        fields["front_door"], fields["provider"] or "-", fields["account"] or "-",
        fields["model"] or "-", fields["model_served"] or "-", status, fields["latency_ms"],
        f" key: {row.key_name}" if is_person(row.key_name) else "",
        f" reason: {error}" if error else "", extra={"fields": fields})


class Recorder:
    """Where finished attempts go: the log, and the usage store when enabled.
    ``config`` returns the settings in force (``[usage]`` body capture)."""

    def __init__(self, store: UsageStore | None, config: Callable[[], Config],
                 limiter: Limiter | None = None) -> None:
        self.store = store
        self.config = config
        self.limiter = limiter  # a person's tokens count towards their day

    def begin(self, row: UsageRow) -> Attempt:
        """An attempt whose request columns are ``row``, timed from now."""
        return Attempt(self, row)

    def capture(self, data: Any) -> str | None:
        """A body as stored (``None`` unless ``[usage] record_bodies``)."""
        return capture_body(self.config(), data)

    def body_capture(self) -> BodyCapture:
        """A collector for a streamed body (inert unless ``[usage] record_bodies``)."""
        return BodyCapture(self.config())

    def record(self, row: UsageRow) -> None:
        log_request(row)
        if self.limiter is not None and row.route_mode != "passthrough":  # own credentials
            self.limiter.spend(row.key_name, row.input_tokens + row.output_tokens
                               + row.cache_read_tokens + row.cache_write_tokens)
        if self.store is not None:
            self.store.record(row)


class Attempt:
    """One attempt's usage row, recorded exactly once however the attempt
    ended (the first :meth:`finish` wins)."""

    def __init__(self, recorder: Recorder, row: UsageRow) -> None:
        self.recorder = recorder
        self.row = row
        self.started = time.perf_counter()
        self.done = False

    def first_byte(self) -> None:
        """The upstream's answer began (its headers, or its whole body): now."""
        self.row.ttfb_ms = (time.perf_counter() - self.started) * 1000

    def finish(self, ending: Ending | None, *, status: int = 0, error: str | None = None,
               usage: Any = None, served: str | None = None, bytes_out: int | None = None,
               extra: dict[str, Any] | None = None) -> None:
        """Record the row: with ``ending`` its status and reason win over the
        upstream's ``status`` / ``error``; ``extra`` sets more columns by name."""
        if self.done:
            return
        self.done = True
        if ending is not None:
            status, error = ending.status, ending.reason
        row = self.row
        row.status, row.error, row.model_served, row.bytes_out = status, error, served, bytes_out
        row.latency_ms = (time.perf_counter() - self.started) * 1000
        if usage is not None:
            row.set_usage(usage)
        if extra:
            row.update(extra)
        self.recorder.record(row)
