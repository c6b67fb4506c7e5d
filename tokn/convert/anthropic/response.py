"""Anthropic Messages <-> OpenAI Chat Completions: whole (non-stream) responses."""

from __future__ import annotations

from typing import Any

from .. import common
from ..common import (
    ANTHROPIC_TO_CHAT_STOP,
    CHAT_TO_ANTHROPIC_STOP,
    Usage,
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
from .request import anthropic_tool_id

# ---------------------------------------------------------------------------
# whole responses


def chat_response_to_messages(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """A chat.completion as an Anthropic message; all choices are merged (split choices)."""
    thinking, signature, texts, calls, finish = [], None, [], [], None
    for choice in body.get("choices") or []:
        msg = choice.get("message") or {}
        r = reasoning_of(msg)
        if r:
            thinking.append(r)
        signature = msg.get("reasoning_signature") or signature
        text = text_of(msg.get("content")) or msg.get("refusal") or ""
        if text:
            texts.append(text)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append(
                {
                    "type": "tool_use",
                    "id": anthropic_tool_id(call.get("id") or common.make_id("toolu_")),
                    "name": fn.get("name") or "",
                    "input": parse_args(fn.get("arguments")),
                }
            )
        finish = stronger_finish(finish, choice.get("finish_reason"))
    content: list[dict[str, Any]] = []
    if thinking:
        content.append(
            {"type": "thinking", "thinking": "".join(thinking), "signature": signature or ""}
        )
    if texts:
        content.append({"type": "text", "text": "".join(texts)})
    content += calls
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


def _message_id(upstream_id: str | None) -> str:
    if upstream_id and upstream_id.startswith("msg_"):
        return upstream_id
    return common.make_id("msg_")


def messages_response_to_chat(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    texts, thinking, signature, calls = [], [], None, []
    for b in body.get("content") or []:
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind == "thinking":
            thinking.append(b.get("thinking") or "")
            signature = b.get("signature") or signature
        elif kind == "tool_use":
            calls.append(
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {
                        "name": b.get("name") or "",
                        "arguments": dumps(b.get("input") or {}),
                    },
                }
            )
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
        if signature:
            msg["reasoning_signature"] = signature
    if calls:
        msg["tool_calls"] = calls
    finish = ANTHROPIC_TO_CHAT_STOP.get(
        body.get("stop_reason") or "", "tool_calls" if calls else "stop"
    )
    return {
        "id": "chatcmpl-" + str(body.get("id") or common.make_id("")),
        "object": "chat.completion",
        "created": common.now(),
        "model": model or body.get("model") or "",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
        "usage": usage_to_chat(usage_from_anthropic(body.get("usage"))),
    }


def usage_of_messages(body: dict[str, Any]) -> Usage:
    return usage_from_anthropic(body.get("usage"))
