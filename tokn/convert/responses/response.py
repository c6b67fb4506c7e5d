"""OpenAI Responses <-> OpenAI Chat Completions: whole (non-stream) responses."""

from __future__ import annotations

import json
from typing import Any

from .. import common
from ..common import (
    Usage,
    reasoning_of,
    stronger_finish,
    text_of,
    usage_from_chat,
    usage_from_responses,
    usage_to_chat,
    usage_to_responses,
)
from ..context import NO_HINTS, Hints, ToolRef

# ---------------------------------------------------------------------------
# whole responses


def finish_of_response(body: dict[str, Any], has_calls: bool) -> str:
    if body.get("status") == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def responses_response_to_chat(body: dict[str, Any], *, model: str | None = None,
                               hints: Hints = NO_HINTS) -> dict[str, Any]:
    texts, reasoning, calls = [], [], []
    refusal = None
    for item in body.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal = part.get("refusal")
        elif kind == "reasoning":
            reasoning.append(
                text_of((item.get("summary") or []) + (item.get("content") or []), "\n")
            )
        elif kind == "function_call":
            calls.append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {
                        "name": item.get("name") or "",
                        "arguments": item.get("arguments") or "",
                    },
                }
            )
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if refusal:
        msg["refusal"] = refusal
    if any(reasoning):
        msg["reasoning_content"] = "".join(reasoning)
    if calls:
        msg["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(body.get("id") or common.make_id("")),
        "object": "chat.completion",
        "created": int(body.get("created_at") or common.now()),
        "model": model or body.get("model") or "",
        "choices": [
            {
                "index": 0,
                "message": msg,
                "logprobs": None,
                "finish_reason": finish_of_response(body, bool(calls)),
            }
        ],
        "usage": usage_to_chat(usage_from_responses(body.get("usage"))),
    }


def response_shell(resp_id: str, model: str, created: int, status: str) -> dict[str, Any]:
    """A Responses ``response`` object with the fields the real API always sends."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def finish_response(resp: dict[str, Any], finish: str, usage: Usage) -> None:
    if finish in ("length", "content_filter"):
        resp["status"] = "incomplete"
        reason = "max_output_tokens" if finish == "length" else "content_filter"
        resp["incomplete_details"] = {"reason": reason}
    else:
        resp["status"] = "completed"
    resp["usage"] = usage_to_responses(usage)


def text_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def custom_input(arguments: str) -> str:
    """The free-form input of a custom tool call made as a chat function call
    (``{"input": "..."}``, see :mod:`tokn.convert.tools`)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) \
        else arguments


def call_item(item_id: str, call_id: str, name: str, args: str, status: str = "completed",
              names: dict[str, ToolRef] | None = None) -> dict[str, Any]:
    """A ``function_call`` item for a chat tool call; a flattened namespace tool
    gets its ``namespace`` and ``name`` back, a custom tool is a ``custom_tool_call``."""
    ref = (names or {}).get(name)
    if ref is not None and ref.kind == "custom":
        item = {"id": item_id, "type": "custom_tool_call", "status": status,
                "call_id": call_id, "name": ref.name, "input": custom_input(args)}
    else:
        item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
                "name": ref.name if ref else name, "arguments": args}
    if ref is not None and ref.namespace:
        item["namespace"] = ref.namespace
    return item


def chat_response_to_responses(body: dict[str, Any], *, model: str | None = None,
                               hints: Hints = NO_HINTS) -> dict[str, Any]:
    texts, reasoning, output, finish = [], [], [], None
    calls: list[dict[str, Any]] = []
    for choice in body.get("choices") or []:
        msg = choice.get("message") or {}
        r = reasoning_of(msg)
        if r:
            reasoning.append(r)
        text = text_of(msg.get("content")) or msg.get("refusal") or ""
        if text:
            texts.append(text)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append(
                call_item(
                    common.make_id("fc_"),
                    call.get("id") or common.make_id("call_"),
                    fn.get("name") or "",
                    fn.get("arguments") or "",
                    names=hints.tool_names,
                )
            )
        finish = stronger_finish(finish, choice.get("finish_reason"))
    if reasoning:
        output.append(reasoning_item(common.make_id("rs_"), "".join(reasoning)))
    if texts:
        output.append(text_item(common.make_id("msg_"), "".join(texts)))
    output += calls
    resp = response_shell(
        common.make_id("resp_"),
        model or body.get("model") or "",
        int(body.get("created") or common.now()),
        "completed",
    )
    resp["output"] = output
    finish_response(resp, finish or "stop", usage_from_chat(body.get("usage")))
    return resp
