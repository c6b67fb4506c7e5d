"""Gemini ``GenerateContentResponse`` <-> chat completion, usage and finish reasons (pure).

Usage (``usageMetadata``, Gemini API reference and ``google.genai.types``):
``promptTokenCount`` includes ``cachedContentTokenCount``;
``candidatesTokenCount`` excludes ``thoughtsTokenCount``; tool-use prompt
tokens are input. So chat ``prompt_tokens`` = prompt + toolUsePrompt,
``cached_tokens`` = cachedContent, ``completion_tokens`` = candidates +
thoughts, ``reasoning_tokens`` = thoughts, and back.

Finish reasons: STOP -> ``stop`` (``tool_calls`` when the candidate calls
functions: Gemini says STOP there), MAX_TOKENS / CONTINUATION -> ``length``,
the safety family (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
LANGUAGE, IMAGE_*) -> ``content_filter``, anything else (OTHER,
MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS ...) ->
``stop``. The Gemini value also travels as ``native_finish_reason`` on the
choice (OpenRouter's convention), which wins when converting back. A prompt
blocked before generation (``promptFeedback.blockReason``, no candidates) is
one empty choice finished by ``content_filter``.

``responseId`` <-> the chat id without ``chatcmpl-``; ``modelVersion`` <->
``model``. A Code Assist envelope (``{"response": ..., "traceId"}``) is
unwrapped first.
"""

from __future__ import annotations

from typing import Any

from .. import common
from ..common import Usage, usage_from_chat, usage_to_chat
from .base import SYNTHETIC_ID_PREFIX, Body, field
from .from_chat import assistant_parts
from .to_chat import model_message

__all__ = [
    "FINISH_REASONS",
    "chat_response_to_gemini",
    "finish_from_gemini",
    "finish_to_gemini",
    "gemini_response_to_chat",
    "observe_chunk",
    "unwrap_envelope",
    "usage_from_gemini",
    "usage_of_response",
    "usage_to_gemini",
]

_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
FINISH_REASONS = frozenset(_FILTERED | {
    "FINISH_REASON_UNSPECIFIED", "STOP", "MAX_TOKENS", "OTHER", "MALFORMED_FUNCTION_CALL",
    "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "NO_IMAGE", "IMAGE_OTHER", "CONTINUATION"})
_TO_GEMINI = {"stop": "STOP", "tool_calls": "STOP", "function_call": "STOP",
              "length": "MAX_TOKENS", "content_filter": "SAFETY"}


def finish_from_gemini(reason: str | None, has_calls: bool) -> str | None:
    """Chat ``finish_reason`` for a Gemini ``finishReason`` (None when there is none)."""
    if not reason:
        return None
    reason = reason.upper()
    if reason in ("MAX_TOKENS", "CONTINUATION"):
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def finish_to_gemini(finish: str | None, native: str | None = None) -> str:
    """Gemini ``finishReason`` for a chat finish (``native_finish_reason`` wins when valid)."""
    if native and native.upper() in FINISH_REASONS:
        return native.upper()
    return _TO_GEMINI.get(finish or "stop", "STOP")


def usage_from_gemini(u: dict[str, Any] | None) -> Usage:
    prompt = int(field(u, "promptTokenCount") or 0) + int(field(u, "toolUsePromptTokenCount") or 0)
    cached = int(field(u, "cachedContentTokenCount") or 0)
    thoughts = int(field(u, "thoughtsTokenCount") or 0)
    return Usage(input_tokens=max(prompt - cached, 0),
                 output_tokens=int(field(u, "candidatesTokenCount") or 0) + thoughts,
                 cache_read_tokens=cached, reasoning_tokens=thoughts)


def usage_to_gemini(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"promptTokenCount": u.prompt_tokens,
                           "candidatesTokenCount": max(u.output_tokens - u.reasoning_tokens, 0),
                           "totalTokenCount": u.total_tokens}
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out


def unwrap_envelope(body: Any) -> Any:
    """The ``GenerateContentResponse`` inside a Code Assist ``{"response", "traceId"}``.

    Like the Gemini CLI (``fromGenerateContentResponse``), ``traceId`` becomes
    the ``responseId`` when the inner response has none. Other bodies are
    returned unchanged.
    """
    if not isinstance(body, dict) or "candidates" in body or not isinstance(body.get("response"),
                                                                             dict):
        return body
    inner = dict(body["response"])
    if body.get("traceId") and not field(inner, "responseId"):
        inner["responseId"] = body["traceId"]
    return inner


def gemini_response_to_chat(body: Body, *, model: str | None = None) -> Body:
    """A Gemini response (or Code Assist envelope) as a ``chat.completion``."""
    body = unwrap_envelope(body)
    choices = []
    for position, cand in enumerate(field(body, "candidates") or []):
        msg = model_message(field(field(cand, "content") or {}, "parts") or [],
                            lambda _i: common.make_id(SYNTHETIC_ID_PREFIX))
        if msg["content"] is None and not msg.get("tool_calls"):
            msg["content"] = ""
        native = field(cand, "finishReason")
        index = field(cand, "index")
        choice: dict[str, Any] = {
            "index": position if index is None else index, "message": msg,
            "finish_reason": finish_from_gemini(native, bool(msg.get("tool_calls"))) or "stop",
            "logprobs": None}
        if native:
            choice["native_finish_reason"] = native
        choices.append(choice)
    blocked = field(field(body, "promptFeedback") or {}, "blockReason")
    if not choices:
        choice = {"index": 0, "message": {"role": "assistant", "content": ""},
                  "finish_reason": "content_filter" if blocked else "stop", "logprobs": None}
        if blocked:
            choice["native_finish_reason"] = blocked
        choices.append(choice)
    response_id = field(body, "responseId")
    return {
        "id": "chatcmpl-" + str(response_id or common.make_id("")),
        "object": "chat.completion",
        "created": common.now(),
        "model": model or field(body, "modelVersion") or "",
        "choices": choices,
        "usage": usage_to_chat(usage_from_gemini(field(body, "usageMetadata"))),
    }


def _merged_choices(choices: list[Any]) -> list[Any]:
    """Split choices (Copilot's Claude answers: the text in one choice, the tool calls
    in another) as one; real alternatives (``n`` > 1) each have their own text."""
    choices = [c for c in choices if isinstance(c, dict)]
    texts = [c for c in choices if (c.get("message") or {}).get("content")]
    calls = any((c.get("message") or {}).get("tool_calls") for c in choices if c not in texts)
    if len(choices) < 2 or len(texts) > 1 or not calls:
        return choices
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = None
    for c in choices:
        msg = c.get("message") or {}
        for key, value in msg.items():
            if key == "tool_calls" and value:
                message["tool_calls"] = [*(message.get("tool_calls") or []), *value]
            elif value not in (None, "", []) and message.get(key) in (None, ""):
                message[key] = value
        if c.get("finish_reason") == "tool_calls" or finish is None:
            finish = c.get("finish_reason")
    return [{**choices[0], "index": 0, "message": message, "finish_reason": finish}]


def chat_response_to_gemini(body: Body, *, model: str | None = None) -> Body:
    """A ``chat.completion`` as a Gemini ``GenerateContentResponse``."""
    candidates = []
    for position, choice in enumerate(_merged_choices(body.get("choices") or [])):
        parts = assistant_parts(choice.get("message") or {})
        finish = finish_to_gemini(choice.get("finish_reason"), choice.get("native_finish_reason"))
        candidates.append({"content": {"role": "model", "parts": parts}, "finishReason": finish,
                           "index": choice.get("index", position)})
    chat_id = str(body.get("id") or "")
    out: Body = {"candidates": candidates,
                 "usageMetadata": usage_to_gemini(usage_from_chat(body.get("usage"))),
                 "modelVersion": model or body.get("model") or ""}
    if chat_id:
        out["responseId"] = chat_id.removeprefix("chatcmpl-")
    return out



def usage_of_response(body: Any) -> Usage:
    """Usage of a Gemini response, stream chunk or Code Assist envelope (for ``extract_usage``)."""
    return usage_from_gemini(field(unwrap_envelope(body), "usageMetadata"))


def observe_chunk(data: Any) -> tuple[str | None, Usage | None]:
    """``(modelVersion, usage)`` of one stream event, either present or None: what a
    stream converter watching a Gemini upstream records (usage totals run, the last wins)."""
    data = unwrap_envelope(data)
    if not isinstance(data, dict):
        return None, None
    meta = field(data, "usageMetadata")
    return field(data, "modelVersion"), (usage_from_gemini(meta) if meta else None)
