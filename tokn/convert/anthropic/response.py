"""Anthropic Messages <-> OpenAI Chat Completions: whole (non-stream) responses."""

from __future__ import annotations

from typing import Any

from .. import common
from ..common import (
    ANTHROPIC_TO_CHAT_STOP,
    CHAT_TO_ANTHROPIC_STOP,
    dumps,
    parse_args,
    reasoning_of,
    stronger_finish,
    text_of,
    usage_from_anthropic,
    usage_from_chat,
    usage_to_anthropic,
    usage_to_chat,
)
from ..context import NO_HINTS, Hints
from .request import REASONING_FORMAT, anthropic_tool_id, reasoning_fields


def thinking_of(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking blocks for a chat answer: ``reasoning_details`` in Anthropic's
    format when the upstream sent them (OpenRouter serving Claude), else one
    block of ``reasoning_content`` (signature only if the upstream gave one)."""
    details = [d for d in msg.get("reasoning_details") or []
               if isinstance(d, dict) and d.get("format") == REASONING_FORMAT]
    if details:
        return [{"type": "redacted_thinking", "data": d.get("data") or ""}
                if d.get("type") == "reasoning.encrypted" else
                {"type": "thinking", "thinking": d.get("text") or "",
                 "signature": d.get("signature") or ""} for d in details]
    text = reasoning_of(msg)
    if not text:
        return []
    return [{"type": "thinking", "thinking": text,
             "signature": msg.get("reasoning_signature") or ""}]


def chat_response_to_messages(body: dict[str, Any], *, model: str | None = None,
                              hints: Hints = NO_HINTS) -> dict[str, Any]:
    """A chat.completion as an Anthropic message; all choices are merged (split choices)."""
    thinking: list[dict[str, Any]] = []
    texts, calls, finish, refused = [], [], None, False
    for choice in body.get("choices") or []:
        msg = choice.get("message") or {}
        thinking += thinking_of(msg)
        text = text_of(msg.get("content")) or msg.get("refusal") or ""
        refused = refused or bool(msg.get("refusal"))
        if text:
            texts.append(text)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append({"type": "tool_use",
                          "id": anthropic_tool_id(call.get("id") or common.make_id("toolu_")),
                          "name": fn.get("name") or "", "input": parse_args(fn.get("arguments"))})
        finish = stronger_finish(finish, choice.get("finish_reason"))
    content = thinking
    if texts:
        content.append({"type": "text", "text": "".join(texts)})
    content += calls
    if refused and finish in (None, "stop"):
        finish = "content_filter"  # OpenAI's refusal is Anthropic's "refusal"
    stop = CHAT_TO_ANTHROPIC_STOP.get(finish or "", "tool_use" if calls else "end_turn")
    return {
        "id": _message_id(body.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model or body.get("model") or "",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_to_anthropic(usage_from_chat(body.get("usage"))),
    }


def _message_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id.startswith("msg_"):
        return upstream_id
    return common.make_id("msg_")


def messages_response_to_chat(body: dict[str, Any], *, model: str | None = None,
                              hints: Hints = NO_HINTS) -> dict[str, Any]:
    """An Anthropic message as a chat.completion. A call of ``hints.json_tool``
    (the tool standing in for ``response_format``) is the answer: its input
    becomes the content."""
    blocks = [b for b in body.get("content") or [] if isinstance(b, dict)]
    texts, calls, answer = [], [], None
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind == "tool_use" and hints.json_tool and b.get("name") == hints.json_tool:
            answer = dumps(b.get("input") or {})
        elif kind == "tool_use":
            calls.append({"id": b.get("id"), "type": "function",
                          "function": {"name": b.get("name") or "",
                                       "arguments": dumps(b.get("input") or {})}})
    if answer is not None:
        texts = [answer]  # words around the JSON would break the client's parsing
    msg: dict[str, Any] = {"role": "assistant",
                           "content": "".join(texts) if texts or not calls else None,
                           **reasoning_fields(blocks)}
    if calls:
        msg["tool_calls"] = calls
    stop = body.get("stop_reason") or ""
    if answer is not None and stop == "tool_use" and not calls:
        stop = "end_turn"
    finish = ANTHROPIC_TO_CHAT_STOP.get(stop, "tool_calls" if calls else "stop")
    return {
        "id": "chatcmpl-" + str(body.get("id") or common.make_id("")),
        "object": "chat.completion",
        "created": common.now(),
        "model": model or body.get("model") or "",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
        "usage": usage_to_chat(usage_from_anthropic(body.get("usage"))),
    }
