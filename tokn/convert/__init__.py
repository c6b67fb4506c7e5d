"""Format converters between OpenAI Chat Completions ("chat"), Anthropic Messages
("messages"), OpenAI Responses ("responses") and Google's Gemini
``generateContent`` ("gemini"). Pure: no I/O.

Chat is the hub: every other format converts to and from chat, and any
``src -> dst`` is composed through it (``src == dst`` is the identity).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..sse import DEFAULT_MAX_LINE, SSEEvent, SSEParser, encode_event
from ..wire import stream_error
from .anthropic import request as a_req
from .anthropic import response as a_resp
from .anthropic import stream as a_stream
from .chat import ChatNormalizeStream, for_upstream
from .common import (
    Clock,
    IdFactory,
    Usage,
    default_clock,
    default_ids,
    usage_from_anthropic,
    usage_from_chat,
    usage_from_responses,
)
from .context import NO_HINTS, PLAIN, Dialect, Hints, ToolRef
from .gemini import (
    ChatToGeminiStream,
    GeminiToChatStream,
    chat_request_to_gemini,
    chat_response_to_gemini,
    gemini_request_to_chat,
    gemini_response_to_chat,
    observe_chunk,
    usage_of_response,
)
from .responses import request as r_req
from .responses import response as r_resp
from .responses import stream as r_stream
from .stage import (
    Frame,
    Stage,
)
from .tools import output_tool_name, request_tools, responses_tools_to_chat, uses_output_tool
from .validate import check_request

__all__ = [
    "FORMATS",
    "NO_HINTS",
    "PLAIN",
    "Dialect",
    "Hints",
    "StreamConverter",
    "Usage",
    "convert_request",
    "convert_response",
    "extract_usage",
    "response_hints",
    "stream_converter",
]

FORMATS = ("chat", "messages", "responses", "gemini")

Body = dict[str, Any]

def _gemini_from_chat(chat: Body, dialect: Dialect = PLAIN) -> Body:
    return chat_request_to_gemini(chat)  # Gemini upstreams take no dialect extensions


def _gemini_response_to_chat(body: Body, *, model: str | None = None,
                             hints: Hints = NO_HINTS) -> Body:
    return gemini_response_to_chat(body, model=model)


def _chat_response_to_gemini(body: Body, *, model: str | None = None,
                             hints: Hints = NO_HINTS) -> Body:
    return chat_response_to_gemini(body, model=model)


_REQ_TO_CHAT: dict[str, Callable[[Body], Body]] = {
    "messages": a_req.messages_request_to_chat,
    "responses": r_req.responses_request_to_chat,
    "gemini": gemini_request_to_chat,
}
_REQ_FROM_CHAT: dict[str, Callable[..., Body]] = {
    "messages": a_req.chat_request_to_messages,
    "responses": r_req.chat_request_to_responses,
    "gemini": _gemini_from_chat,
}
_RESP_TO_CHAT: dict[str, Callable[..., Body]] = {
    "messages": a_resp.messages_response_to_chat,
    "responses": r_resp.responses_response_to_chat,
    "gemini": _gemini_response_to_chat,
}
_RESP_FROM_CHAT: dict[str, Callable[..., Body]] = {
    "messages": a_resp.chat_response_to_messages,
    "responses": r_resp.chat_response_to_responses,
    "gemini": _chat_response_to_gemini,
}
_STREAM_TO_CHAT: dict[str, type[Stage]] = {
    "messages": a_stream.MessagesToChatStream,
    "responses": r_stream.ResponsesToChatStream,
    "gemini": GeminiToChatStream,
}
_STREAM_FROM_CHAT: dict[str, type[Stage]] = {
    "messages": a_stream.ChatToMessagesStream,
    "responses": r_stream.ChatToResponsesStream,
    "gemini": ChatToGeminiStream,
}


def _check(*fmts: str) -> None:
    for f in fmts:
        if f not in FORMATS:
            raise ValueError(f"unknown API format {f!r}; expected one of {', '.join(FORMATS)}")


def convert_request(src: str, dst: str, body: Body, *, dialect: Dialect = PLAIN) -> Body:
    """A request body in client format ``src`` as upstream format ``dst``, for an
    upstream that accepts ``dialect``'s extensions.

    Raises :class:`~tokn.errors.ConversionError` for a body that does not have
    the shape of a ``src`` request (see :mod:`tokn.convert.validate`) or asks for
    something the upstream cannot express.
    """
    _check(src, dst)
    if src == dst:
        return body
    check_request(src, body)
    chat = body if src == "chat" else _REQ_TO_CHAT[src](body)
    if dst == "chat":
        return for_upstream(chat, dialect)
    return _REQ_FROM_CHAT[dst](chat, dialect)


def response_hints(client_fmt: str, request: Body | None, upstream_fmt: str,
                   dialect: Dialect = PLAIN) -> Hints:
    """What converting an ``upstream_fmt`` answer to ``request`` (a valid
    ``client_fmt`` request, sent converted for ``dialect``) back needs to know."""
    if not isinstance(request, dict) or client_fmt == upstream_fmt:
        return NO_HINTS
    names: dict[str, ToolRef] = {}
    if client_fmt == "responses":
        tools, names, _ = responses_tools_to_chat(request_tools(request))
        chat = {"tools": tools, "response_format": r_req.format_to_chat(
            (request.get("text") or {}).get("format"))}
    else:
        chat = request if client_fmt == "chat" else {}
    json_tool = None
    if upstream_fmt == "messages" and uses_output_tool(chat, dialect):
        json_tool = output_tool_name(chat)
    return Hints(json_tool=json_tool, tool_names=names)


def convert_response(src: str, dst: str, body: Body, *, model: str | None = None,
                     hints: Hints = NO_HINTS) -> Body:
    """A non-stream response body from upstream format ``src`` as client format ``dst``.

    ``model`` (the name the client asked for) replaces the upstream's model name;
    ``hints`` (:func:`response_hints`) say what the request needs back.
    """
    _check(src, dst)
    if src == dst:
        return body if model is None else {**body, "model": model}
    chat = body if src == "chat" else _RESP_TO_CHAT[src](body, model=model, hints=hints)
    return chat if dst == "chat" else _RESP_FROM_CHAT[dst](chat, model=model, hints=hints)


def extract_usage(fmt: str, body: Body) -> Usage:
    """Usage of a non-stream response body in format ``fmt``."""
    _check(fmt)
    if fmt == "messages":
        return usage_from_anthropic(body.get("usage"))
    if fmt == "responses":
        return usage_from_responses(body.get("usage"))
    if fmt == "gemini":
        return usage_of_response(body)
    return usage_from_chat(body.get("usage"))


def _encode(fmt: str, frames: list[Frame]) -> bytes:
    if fmt in ("chat", "gemini"):  # plain `data:` events
        return b"".join(encode_event(data) for _, data in frames)
    return b"".join(encode_event(data, event) for event, data in frames)


def _parse(ev: SSEEvent) -> Any:
    if ev.data.strip() == "[DONE]":
        return "[DONE]"
    try:
        return json.loads(ev.data)
    except ValueError:
        return None


class StreamConverter:
    """Upstream SSE bytes in format ``src`` in, client SSE bytes in format ``dst`` out.

    ``usage`` and ``model`` are filled from the upstream's events as they pass;
    ``first_output`` turns True once any client-visible bytes were produced.
    For ``src == dst`` bytes pass through unchanged.

    How the upstream stream went, for an honest ending: ``events`` counts its
    valid events; ``ended`` turns True
    at its final event (``[DONE]``, ``message_stop``, ``response.completed``
    ...); ``invalid`` holds the start of the first event whose data is not JSON
    (later events of that ``feed`` are dropped); ``upstream_error`` the message
    of an error event the upstream sent.  ``feed`` raises ``ValueError`` for a
    line longer than ``max_line`` bytes.
    """

    def __init__(
        self,
        src: str,
        dst: str,
        *,
        model: str | None = None,
        ids: IdFactory | None = None,
        clock: Clock | None = None,
        normalize: bool = False,
        include_usage: bool = True,
        hints: Hints = NO_HINTS,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        _check(src, dst)
        self.src, self.dst = src, dst
        self.usage = Usage()
        self.model: str | None = None
        self.first_output = False
        self.events = 0
        self.ended = False
        self.invalid: str | None = None
        self.upstream_error: str | None = None
        self._parser = SSEParser(max_line)
        kw = {"model": model, "ids": ids or default_ids, "clock": clock or default_clock,
              "hints": hints}
        self._stages: list[Stage] = []
        if src != dst:
            if src != "chat":
                self._stages.append(_STREAM_TO_CHAT[src](**kw))
            if dst != "chat":
                self._stages.append(_STREAM_FROM_CHAT[dst](**kw))
        if dst == "chat" and not include_usage:
            self._stages.append(ChatNormalizeStream(keep_usage=False, **kw))
        elif src == dst == "chat" and normalize:
            self._stages.append(ChatNormalizeStream(**kw))
        self._tail = _Tail(dst) if src == dst and not self._stages else None

    @property
    def passthrough(self) -> bool:
        """Bytes go to the client unchanged (the upstream's own events)."""
        return self._tail is not None

    def feed(self, data: bytes) -> bytes:
        frames = self._frames(self._parser.feed(data))
        if self._tail is not None:
            self._tail.see(frames)
            return self._out(data)
        return self._out(self._run(frames, closing=False))

    def flush(self) -> bytes:
        """Take in what is left of the upstream's bytes (a last event without its
        blank line) without ending the client's stream: call it when the
        upstream is done, before deciding between :meth:`close` and :meth:`error`."""
        frames = self._frames(self._parser.close())
        if self._tail is not None:
            self._tail.see(frames)
            return b""  # the raw bytes went through in feed()
        return self._out(self._run(frames, closing=False))

    def close(self) -> bytes:
        frames = self._frames(self._parser.close())
        if self._tail is not None:
            self._tail.see(frames)
            return self._out(self._tail.close())
        return self._out(self._run(frames, closing=True))

    def error(self, message: str) -> bytes:
        if self._tail is not None:
            return self._out(self._tail.error(message))
        return self._out(_encode(self.dst, self._stages[-1].error(message)))

    # -- internals --
    def _out(self, data: bytes) -> bytes:
        if data:
            self.first_output = True
        return data

    def _frames(self, events: list[SSEEvent]) -> list[Frame]:
        frames = []
        for ev in events:
            data = _parse(ev)
            if data is None:
                if ev.data.strip() and self.invalid is None:
                    self.invalid = ev.data.strip()[:200]
                if self.invalid is not None:
                    break
                continue
            self.events += 1
            if data == "[DONE]":
                self.ended = True
            self._observe(data)
            frames.append((ev.event, data))
        return frames

    def _run(self, frames: list[Frame], *, closing: bool) -> bytes:
        for stage in self._stages:
            nxt: list[Frame] = []
            for event, data in frames:
                nxt += stage.feed(event, data)
            if closing:
                nxt += stage.close()
            frames = nxt
        return _encode(self.dst, frames)

    def _observe(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if self.src == "gemini":
            self._observe_gemini(data)
            return
        kind = data.get("type")
        error = data.get("error")
        if kind in ("error", "response.failed") or (self.src == "chat" and error):
            if kind == "response.failed":
                error = (data.get("response") or {}).get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.upstream_error = str(message or data.get("message") or error or kind)[:500]
            self.ended = True
        elif kind in ("message_stop", "response.completed", "response.incomplete") or (
                self.src == "chat" and any(isinstance(c, dict) and c.get("finish_reason")
                                           for c in data.get("choices") or ())):
            self.ended = True
        if self.src == "chat":
            self.model = self.model or data.get("model")
            if data.get("usage"):
                self.usage = usage_from_chat(data["usage"])
        elif self.src == "messages":
            if data.get("type") == "message_start":
                msg = data.get("message") or {}
                self.model = msg.get("model") or self.model
                usage_from_anthropic(msg.get("usage"), self.usage)
            elif data.get("type") == "message_delta":
                usage_from_anthropic(data.get("usage"), self.usage)
        else:
            resp = data.get("response")
            if isinstance(resp, dict):
                self.model = resp.get("model") or self.model
                if resp.get("usage"):
                    self.usage = usage_from_responses(resp["usage"])


    def _observe_gemini(self, data: dict[str, Any]) -> None:
        model, usage = observe_chunk(data)
        self.model = model or self.model
        if usage is not None:
            self.usage = usage
        error = data.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            self.upstream_error = str(message or error)[:500]
            self.ended = True
        elif _gemini_finished(data):
            self.ended = True


def _gemini_finished(data: dict[str, Any]) -> bool:
    """A Gemini stream event (or Code Assist envelope) that carries a finish reason."""
    inner = data.get("response") if isinstance(data.get("response"), dict) else data
    return any(isinstance(c, dict) and (c.get("finishReason") or c.get("finish_reason"))
               for c in inner.get("candidates") or ())


class _Tail:
    """For pass-through streams: remembers enough to end the stream properly
    (closing events when the upstream stopped early, errors in the format)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.ended = False
        self.started = False
        self.open_block: int | None = None
        self.any_tool = False
        self.delta_sent = False
        self.seq = -1
        self.response: dict[str, Any] | None = None
        self.items: list[Any] = []

    def see(self, frames: list[Frame]) -> None:
        for _, data in frames:
            if data == "[DONE]":
                self.ended = True
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            self.started = True
            if self.fmt == "gemini":
                self.ended = self.ended or "error" in data or _gemini_finished(data)
                continue
            if isinstance(data.get("sequence_number"), int):
                self.seq = max(self.seq, data["sequence_number"])
            if kind in (
                "message_stop",
                "error",
                "response.completed",
                "response.incomplete",
                "response.failed",
            ) or (self.fmt == "chat" and "error" in data):
                self.ended = True
            elif kind == "content_block_start":
                self.open_block = data.get("index")
                self.any_tool |= (data.get("content_block") or {}).get("type") == "tool_use"
            elif kind == "content_block_stop":
                self.open_block = None
            elif kind == "message_delta":
                self.delta_sent = True
            elif kind == "response.created":
                self.response = dict(data.get("response") or {})
            elif kind == "response.output_item.done":
                self.items.append(data.get("item"))

    def close(self) -> bytes:
        if self.ended or not self.started:
            return b""
        self.ended = True
        if self.fmt == "gemini":  # a Gemini stream just stops: nothing closes it
            return b""
        if self.fmt == "chat":
            return b"\n\ndata: [DONE]\n\n"
        if self.fmt == "messages":
            out = b"\n\n"
            if self.open_block is not None:
                out += encode_event(
                    {"type": "content_block_stop", "index": self.open_block}, "content_block_stop"
                )
            if not self.delta_sent:
                stop = "tool_use" if self.any_tool else "end_turn"
                out += encode_event(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": 0},
                    },
                    "message_delta",
                )
            return out + encode_event({"type": "message_stop"}, "message_stop")
        resp = {**(self.response or {}), "status": "completed", "output": self.items}
        self.seq += 1
        return b"\n\n" + encode_event(
            {"type": "response.completed", "sequence_number": self.seq, "response": resp},
            "response.completed",
        )

    def error(self, message: str) -> bytes:
        self.ended = True
        if self.fmt == "gemini":
            return encode_event(stream_error("gemini", message)[1])
        if self.fmt == "messages":
            return encode_event(
                {"type": "error", "error": {"type": "api_error", "message": message}}, "error"
            )
        if self.fmt == "chat":
            return encode_event(
                {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
            )
        self.seq += 1
        out = encode_event(
            {
                "type": "error",
                "sequence_number": self.seq,
                "code": "server_error",
                "message": message,
                "param": None,
            },
            "error",
        )
        resp = {
            **(self.response or {}),
            "status": "failed",
            "output": self.items,
            "error": {"code": "server_error", "message": message},
        }
        self.seq += 1
        return out + encode_event(
            {"type": "response.failed", "sequence_number": self.seq, "response": resp},
            "response.failed",
        )


def stream_converter(
    src: str,
    dst: str,
    *,
    model: str | None = None,
    ids: IdFactory | None = None,
    clock: Clock | None = None,
    normalize: bool = False,
    include_usage: bool = True,
    hints: Hints = NO_HINTS,
    max_line: int = DEFAULT_MAX_LINE,
) -> StreamConverter:
    """A converter for one stream; ``ids(prefix)`` / ``clock()`` make output deterministic.

    ``normalize`` repairs a chat stream for chat clients (Copilot's split
    choices and tool-call indexes); otherwise ``src == dst`` passes bytes through.
    ``include_usage=False`` keeps the usage-only chunk from a chat client that
    did not ask for it (usage is still read into ``.usage``). ``hints``
    (:func:`response_hints`) say what the client's request needs back.
    ``max_line`` caps one event-stream line (``[server].max_sse_line_mb``).
    """
    return StreamConverter(src, dst, model=model, ids=ids, clock=clock, normalize=normalize,
                           include_usage=include_usage, hints=hints, max_line=max_line)
