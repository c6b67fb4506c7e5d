"""Addon: one usage row for every flow the proxy forwards itself (switch and
passthrough), and event streams relayed as they come.

For those flows it reads the model and the stream switch from the request
body (when mitmproxy buffered it), watches an event stream on its way to the
client (usage, and whether it really ended), keeps the flow in flight for the
shutdown drain, judges a switched account's answer the way its provider says
(:meth:`~tokn.pool.Pool.mark_refused`), and records the row through the one
recorder (:mod:`tokn.recorder`).  Route flows are recorded by the pipeline.
"""

from __future__ import annotations

import json

from mitmproxy import http

from tokn import endings, wire
from tokn.convert import FORMATS, extract_usage, stream_converter
from tokn.endings import Ending
from tokn.mitm.services import INFO, FlowInfo, ProxyServices


class UsageObserver:
    name = "tokn_observer"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(INFO)
        if info is None or info.attempt is None or flow.response is not None:
            return
        # mitmproxy forwards it: in flight until its response or error; if the
        # shutdown drain ends first, its row says so
        info.flight = self.services.drain.begin()
        info.flight.on_stop = lambda: self._record(
            flow, endings.shut_down(self.services.config().server.drain_secs))

    def request(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(INFO)
        if info is None or info.attempt is None or info.fmt not in FORMATS \
                or flow.response is not None \
                or flow.request.raw_content is None:  # streamed: too large to look at
            return
        try:
            body = json.loads(flow.request.content or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        found = wire.match(flow.request.method, flow.request.path)
        if isinstance(body, dict) and found is not None:  # Gemini keeps these in the path
            body = found[0].body_of(body, found[1])
        if isinstance(body, dict):
            info.attempt.row.model_requested = body.get("model")
            info.attempt.row.stream = int(bool(body.get("stream")))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get(INFO)
        if info is None:
            return
        if info.attempt is not None:
            info.attempt.first_byte()
        if "text/event-stream" not in flow.response.headers.get("content-type", ""):
            return  # JSON bodies are small; mitmproxy streams any over stream_large_bodies
        if info.attempt is None or info.fmt not in FORMATS:
            flow.response.stream = True
            return
        cfg = self.services.config()
        info.converter = stream_converter(info.fmt, info.fmt,
                                          max_line=int(cfg.server.max_sse_line_mb * 1024 * 1024))
        info.capture = self.services.recorder.body_capture()

        def observe(chunk: bytes) -> bytes:
            info.bytes_out += len(chunk)
            info.capture.feed(chunk)
            if info.observe_error is None:
                try:
                    info.converter.feed(chunk) if chunk else info.converter.close()
                except ValueError as exc:  # a line over the cap: stop looking, pass on
                    info.observe_error = str(exc)
            return chunk

        flow.response.stream = observe

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow, cut: Ending | None = None) -> None:
        info: FlowInfo | None = flow.metadata.pop(INFO, None)
        if info is None:
            return
        if info.flight is not None:
            self.services.drain.end(info.flight)
        attempt = info.attempt
        if attempt is None:
            return  # route flows are recorded by the pipeline
        recorder = self.services.recorder
        conv, response = info.converter, flow.response
        usage = conv.usage if conv is not None else None
        served = conv.model if conv is not None else None
        if usage is None and response is not None and response.content \
                and info.fmt in FORMATS:
            try:
                data = json.loads(response.content)
                usage = extract_usage(info.fmt, data)
                served = data.get("model")
            except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
                usage = None
        ending = cut or ending_of(flow, info)
        status = response.status_code if response is not None else 0
        if info.provider is not None:
            self._judge(flow, info, ending, status)
        row = attempt.row
        row.bytes_in = len(flow.request.raw_content or b"")
        row.request_body = recorder.capture(flow.request.content or b"")
        if info.capture is not None:
            row.response_body = info.capture.text()
        elif response is not None and response.raw_content is not None:
            row.response_body = recorder.capture(response.content or b"")
        attempt.finish(ending, status=status,
                       error=f"usage not observed: {info.observe_error}"
                       if info.observe_error else None,
                       usage=usage, served=served,
                       bytes_out=info.bytes_out or (len(response.raw_content or b"")
                                                    if response is not None else 0))

    def _judge(self, flow: http.HTTPFlow, info: FlowInfo, ending: Ending | None,
               status: int) -> None:
        """The switched account's health, as its provider judges the answer."""
        pool, provider = self.services.pool, info.provider
        assert provider is not None
        if ending is not None and ending.status in (endings.UPSTREAM_FAILED, endings.TIMED_OUT):
            pool.mark_failure(provider.account_id, f"{ending.reason} (switch)")
        elif ending is None and status < 400:
            pool.mark_success(provider.account_id)
        elif status >= 400:
            response = flow.response
            assert response is not None
            raw = response.get_content(strict=False) if response.raw_content is not None else b""
            body = raw or b""
            pool.mark_refused(provider, status, body, response.headers,
                              f"HTTP {status} (switch)")


def ending_of(flow: http.HTTPFlow, info: FlowInfo) -> Ending | None:
    """How a flow mitmproxy forwarded really ended (``None``: as its status says)."""
    if flow.error is not None:
        message = str(flow.error.msg or flow.error)
        if "client disconnected" in message.lower():
            return endings.client_closed()
        if flow.response is None:
            return Ending(endings.UPSTREAM_FAILED, f"upstream connection failed: {message}")
        return Ending(endings.UPSTREAM_FAILED, f"upstream stream broke: {message}")
    conv = info.converter
    if conv is None or info.observe_error is not None or flow.response is None \
            or flow.response.status_code >= 400:
        return None  # (a stream tokn stopped observing went through unchanged)
    if conv.invalid is not None:
        return endings.invalid_event(conv.invalid)
    if conv.upstream_error is not None:
        return endings.upstream_error(conv.upstream_error)
    if not conv.ended:
        return endings.upstream_cut()
    return None

