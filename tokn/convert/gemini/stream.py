"""Gemini ``streamGenerateContent?alt=sse`` <-> chat chunks (pure stream stages).

A Gemini stream is a sequence of SSE ``data:`` events, each a whole
``GenerateContentResponse`` holding only what is new (text pieces, whole
function calls), ``usageMetadata`` running totals on every chunk, the
``finishReason`` on the last one, and no ``[DONE]``. The last chunk often
carries only a ``thoughtSignature`` on an empty text part; Code Assist
streams the thought text, then an empty thought part holding its signature,
and wraps every event as ``{"response": ..., "traceId"}``. Errors after the
first byte come as an event ``{"error": {"code", "message", "status"}}``.
(Observed shapes: Gemini API docs, the Gemini CLI's ``server.ts`` SSE reader
and ``geminiChat.ts``, and users' captures.)

Both stages follow :mod:`tokn.convert.common`'s :class:`Stage` protocol, so
the package registry composes them like the other formats. Rules for ids,
signatures and finish reasons are those of the non-stream converters; a
signature travels in a delta as ``reasoning_signature``, next to the text it
belongs to, and ``native_finish_reason`` rides on the finishing choice.
Towards Gemini, function calls are buffered and sent whole in the last chunk
(Gemini never streams a half call); partial-argument streaming
(``streamFunctionCallArguments``) is not produced or read.
"""

from __future__ import annotations

from typing import Any

from ...wire import stream_error
from ..common import Usage, drop_none, dumps, parse_args
from ..stage import (
    ChatReader,
    Frame,
    FromChatStage,
    Stage,
    chat_stream_tail,
    error_message,
)
from .base import SYNTHETIC_ID_PREFIX, decode_call_id, encode_call_id, field
from .response import (
    finish_from_gemini,
    finish_to_gemini,
    unwrap_envelope,
    usage_from_gemini,
    usage_to_gemini,
)
from .to_chat import blob_to_chat, code_text
from .wire import error_body, wrap_code_assist_response

__all__ = ["ChatToCodeAssistStream", "ChatToGeminiStream", "GeminiToChatStream"]


class GeminiToChatStream(Stage):
    """Gemini (or Code Assist) stream events in, ``chat.completion.chunk`` frames out."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.id = ""
        self.created = 0
        self.model = self.model_override or ""
        self.usage = Usage()
        self.started = False
        self.calls: dict[int, int] = {}  # choice index -> tool calls so far
        self.open: set[int] = {0}
        self.finished: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, index: int = 0,
               native: str | None = None) -> Frame:
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}
        if native:
            choice["native_finish_reason"] = native
        return (None, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": [choice]})

    def _begin(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        self.id = self.id or self.ids("chatcmpl-")
        self.created = self.clock()
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        if self.done or not isinstance(data, dict):
            return []
        data = unwrap_envelope(data)
        if data.get("error"):
            return self.error(error_message(data))
        self.model = self.model_override or field(data, "modelVersion") or self.model
        if not self.id and field(data, "responseId"):
            self.id = "chatcmpl-" + str(field(data, "responseId"))
        if field(data, "usageMetadata"):
            self.usage = usage_from_gemini(field(data, "usageMetadata"))
        out = self._begin()
        for position, cand in enumerate(field(data, "candidates") or []):
            index = field(cand, "index")
            index = position if index is None else int(index)
            self.open.add(index)
            for part in field(field(cand, "content") or {}, "parts") or []:
                out += self._part(index, part)
            reason = field(cand, "finishReason")
            if reason and index not in self.finished:
                self.finished.add(index)
                finish = finish_from_gemini(reason, self.calls.get(index, 0) > 0)
                out.append(self._chunk({}, finish, index, reason))
        blocked = field(field(data, "promptFeedback") or {}, "blockReason")
        if blocked and 0 not in self.finished:
            self.finished.add(0)
            out.append(self._chunk({}, "content_filter", 0, blocked))
        return out

    def _part(self, index: int, part: dict[str, Any]) -> list[Frame]:
        sig = field(part, "thoughtSignature")
        fc = field(part, "functionCall")
        if isinstance(fc, dict):
            n = self.calls.get(index, 0)
            self.calls[index] = n + 1
            chat_id = encode_call_id(fc.get("id") or self.ids(SYNTHETIC_ID_PREFIX), sig)
            fn = {"name": fc.get("name") or "", "arguments": dumps(fc.get("args") or {})}
            call = {"index": n, "id": chat_id, "type": "function", "function": fn}
            return [self._chunk({"tool_calls": [call]}, index=index)]
        delta: dict[str, Any] = {}
        text = part.get("text")
        if field(part, "thought") is True:
            if text:
                delta["reasoning_content"] = text
        elif isinstance(text, str):
            if text:
                delta["content"] = text
        elif field(part, "inlineData"):
            delta["images"] = [blob_to_chat(field(part, "inlineData"))]
        elif code_text(part) is not None:
            delta["content"] = code_text(part)
        if sig:
            delta["reasoning_signature"] = sig
        return [self._chunk(delta, index=index)] if delta else []

    def _end(self) -> list[Frame]:
        out = self._begin()
        for index in sorted(self.open - self.finished):
            self.finished.add(index)
            out.append(self._chunk({}, "tool_calls" if self.calls.get(index) else "stop", index))
        out += chat_stream_tail(self.id, self.created, self.model, self.usage)
        self.done = True
        return out

    def close(self) -> list[Frame]:
        return [] if self.done else self._end()

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [stream_error("chat", message)]


class ChatToGeminiStream(FromChatStage):
    """``chat.completion.chunk`` frames in, Gemini stream events out.

    All choices feed candidate 0 (as every chat reader here does).
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reader = ChatReader()
        self.response_id = ""
        self.model = self.model_override or ""
        self.started = False
        self.thinking = False
        self.native: str | None = None

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        signature = None
        if isinstance(data, dict):
            for choice in data.get("choices") or []:
                signature = (choice.get("delta") or {}).get("reasoning_signature") or signature
                self.native = choice.get("native_finish_reason") or self.native
        out = super().feed(event, data)
        if signature and not self.done:
            out = self._sign(out, signature)
        return out

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [(None, error_body(500, message))]

    def _event(self, parts: list[dict[str, Any]], finish: str | None = None,
               usage: dict[str, Any] | None = None) -> Frame:
        cand = drop_none({"content": {"role": "model", "parts": parts}, "finishReason": finish,
                          "index": 0})
        return (None, drop_none({"candidates": [cand], "usageMetadata": usage,
                                 "modelVersion": self.model, "responseId": self.response_id}))

    def _start(self, chunk: dict[str, Any]) -> list[Frame]:
        if not self.started:
            self.started = True
            self.response_id = str(chunk.get("id") or self.ids("")).removeprefix("chatcmpl-")
            self.model = self.model_override or chunk.get("model") or self.model
        return []

    def _op(self, op: tuple[Any, ...]) -> list[Frame]:
        if op[0] == "reasoning":
            self.thinking = True
            return [self._event([{"text": op[1], "thought": True}])]
        if op[0] == "text":
            self.thinking = False
            return [self._event([{"text": op[1]}])]
        return []  # tool calls are sent whole at the end

    def _sign(self, out: list[Frame], signature: str) -> list[Frame]:
        """Put a signature on the part this chunk produced, or on an empty part of its own."""
        if out:
            parts = out[-1][1]["candidates"][0]["content"]["parts"]
            if parts and "text" in parts[-1] and "thoughtSignature" not in parts[-1]:
                parts[-1]["thoughtSignature"] = signature
                return out
        part = {"text": "", "thought": True} if self.thinking else {"text": ""}
        return [*out, self._event([{**part, "thoughtSignature": signature}])]

    def _finish(self) -> list[Frame]:
        out = self._start({})
        self.reader.flush()
        parts: list[dict[str, Any]] = []
        for tool in self.reader.tools.values():
            if not tool.opened:
                continue
            gemini_id, signature = decode_call_id(tool.id)
            part: dict[str, Any] = {"functionCall": drop_none(
                {"id": gemini_id, "name": tool.name or "", "args": parse_args(tool.arguments)})}
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        finish = finish_to_gemini(self.reader.final_finish(), self.native)
        out.append(self._event(parts or [{"text": ""}], finish,
                               usage_to_gemini(self.reader.usage)))
        self.done = True
        return out


class ChatToCodeAssistStream(ChatToGeminiStream):
    """Like :class:`ChatToGeminiStream`, each event in Code Assist's envelope."""

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        return _wrap(super().feed(event, data))

    def close(self) -> list[Frame]:
        return _wrap(super().close())


def _wrap(frames: list[Frame]) -> list[Frame]:
    return [(e, wrap_code_assist_response(d) if "candidates" in d else d) for e, d in frames]
