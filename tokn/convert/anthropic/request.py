"""Anthropic Messages <-> OpenAI Chat Completions: request bodies."""

from __future__ import annotations

import re
from typing import Any

from ..common import (
    EFFORT_BUDGETS,
    drop_none,
    dumps,
    effort_for_budget,
    parse_args,
    parse_data_url,
    reasoning_of,
    text_of,
)

DEFAULT_MAX_TOKENS = 8192
# Output caps of Claude models, by id prefix (first match wins), for requests without max_tokens.
_MAX_TOKENS_BY_PREFIX = (
    ("claude-3-5", 8192),
    ("claude-3.5", 8192),
    ("claude-3-7", 64000),
    ("claude-3.7", 64000),
    ("claude-3", 4096),
    ("claude-opus-4-1", 32000),
    ("claude-opus-4.1", 32000),
    ("claude-opus-4-0", 32000),
    ("claude-opus-4-2", 32000),
    ("claude-opus-4.0", 32000),
    ("claude-opus-4", 32000),
    ("claude-sonnet-4", 64000),
    ("claude-haiku-4", 64000),
)


def default_max_tokens(model: str | None) -> int:
    m = (model or "").lower()
    for prefix, n in _MAX_TOKENS_BY_PREFIX:
        if m.startswith(prefix):
            return n
    return DEFAULT_MAX_TOKENS


# ---------------------------------------------------------------------------
# requests: messages -> chat


def _image_to_chat(block: dict[str, Any]) -> dict[str, Any] | None:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    elif src.get("type") == "url":
        url = src.get("url") or ""
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_to_chat(block: dict[str, Any]) -> dict[str, Any] | None:
    src = block.get("source") or {}
    if src.get("type") == "text":
        return {"type": "text", "text": src.get("data") or ""}
    if src.get("type") == "base64":
        name = block.get("title") or "document.pdf"
        url = f"data:{src.get('media_type', 'application/pdf')};base64,{src.get('data', '')}"
        return {"type": "file", "file": {"filename": name, "file_data": url}}
    if src.get("type") == "url":
        return {"type": "text", "text": src.get("url") or ""}
    return None


def _user_parts_to_chat(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": b.get("text") or ""})
        elif kind == "image":
            part = _image_to_chat(b)
            if part:
                parts.append(part)
        elif kind == "document":
            part = _document_to_chat(b)
            if part:
                parts.append(part)
    return parts


def _simplify(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string (what every chat upstream accepts)."""
    if all(p.get("type") == "text" for p in parts):
        return (
            "".join(p["text"] for p in parts)
            if len(parts) <= 1
            else "\n\n".join(p["text"] for p in parts)
        )
    return parts


def _tool_result_to_chat(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result as a chat ``tool`` message plus its images (chat tool messages are text)."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for part in content:
            if part.get("type") == "text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "image":
                img = _image_to_chat(part)
                if img:
                    images.append(img)
        text = "\n".join(texts)
    else:
        text = content if isinstance(content, str) else ""
    if block.get("is_error"):
        text = "Error: " + text  # chat has no error flag: say it in the text
    return {"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text}, images


def _assistant_to_chat(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    texts, thinking, signature, calls = [], [], None, []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind == "thinking":
            thinking.append(b.get("thinking") or "")
            signature = b.get("signature") or signature
        elif kind in ("tool_use", "server_tool_use"):
            calls.append(
                {
                    "id": b.get("id") or "",
                    "type": "function",
                    "function": {
                        "name": b.get("name") or "",
                        "arguments": dumps(b.get("input") or {}),
                    },
                }
            )
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
        if signature:
            msg["reasoning_signature"] = signature
    if calls:
        msg["tool_calls"] = calls
    return msg


def _messages_to_chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        blocks = [b for b in content or [] if isinstance(b, dict)]
        if role == "assistant":
            out.append(_assistant_to_chat(blocks))
            continue
        extra_images: list[dict[str, Any]] = []
        for b in blocks:
            if b.get("type") == "tool_result":
                tool_msg, images = _tool_result_to_chat(b)
                out.append(tool_msg)
                extra_images += images
        parts = _user_parts_to_chat(blocks) + extra_images
        if parts:
            out.append({"role": "user", "content": _simplify(parts)})
    return out


def _tools_to_chat(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        if t.get("type") not in (None, "custom") and "input_schema" not in t:
            continue  # server tools (web_search, bash, ...) have no chat equivalent
        fn = drop_none(
            {
                "name": t.get("name"),
                "description": t.get("description"),
                "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
            }
        )
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice_to_chat(tc: dict[str, Any] | None) -> Any:
    kind = (tc or {}).get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": tc["name"]}}  # type: ignore[index]
    return None


def messages_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else text_of(system, "\n\n")
        messages.append({"role": "system", "content": text})
    messages += _messages_to_chat_messages(body.get("messages") or [])
    out["messages"] = messages
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    tools = _tools_to_chat(body.get("tools") or [])
    if tools:
        out["tools"] = tools
        choice = _tool_choice_to_chat(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        if (body.get("tool_choice") or {}).get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    elif (body.get("tool_choice") or {}).get("type") == "none":
        pass
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        out["reasoning_effort"] = effort_for_budget(int(thinking.get("budget_tokens") or 0))
    elif thinking.get("type") == "adaptive":
        out["reasoning_effort"] = "medium"
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ---------------------------------------------------------------------------
# requests: chat -> messages

_TOOL_ID_OK = re.compile(r"[^a-zA-Z0-9_-]")


def anthropic_tool_id(value: str | None) -> str:
    """Anthropic requires tool ids matching ``^[a-zA-Z0-9_-]+$``; map others stably."""
    return _TOOL_ID_OK.sub("_", value or "") or "toolu_missing"


def _chat_part_to_block(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "image_url":
        url = part.get("image_url")
        url = (url.get("url") or "") if isinstance(url, dict) else (url or "")
        data = parse_data_url(url)
        if data:
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": data[0], "data": data[1]},
            }
        return {"type": "image", "source": {"type": "url", "url": url}}
    if kind == "file":
        data = parse_data_url((part.get("file") or {}).get("file_data") or "")
        if data:
            return {
                "type": "document",
                "source": {"type": "base64", "media_type": data[0], "data": data[1]},
            }
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    return None


def _chat_content_to_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = [_chat_part_to_block(p) for p in content]
    return [b for b in blocks if b is not None and not (b["type"] == "text" and not b["text"])]


def _chat_assistant_to_blocks(m: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    reasoning, signature = reasoning_of(m), m.get("reasoning_signature")
    if reasoning and signature:  # Anthropic rejects thinking blocks without their signature
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": signature})
    blocks += _chat_content_to_blocks(m.get("content"))
    if m.get("refusal"):
        blocks.append({"type": "text", "text": m["refusal"]})
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": anthropic_tool_id(call.get("id")),
                "name": fn.get("name") or "",
                "input": parse_args(fn.get("arguments")),
            }
        )
    return blocks


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging with the previous turn of the same role."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"] += blocks
    else:
        out.append({"role": role, "content": blocks})


def _chat_messages_to_anthropic(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    system: list[str] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(text_of(m.get("content"), "\n"))
        elif role == "assistant":
            _append(out, "assistant", _chat_assistant_to_blocks(m))
        elif role in ("tool", "function"):
            content = m.get("content")
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": anthropic_tool_id(m.get("tool_call_id")),
            }
            if isinstance(content, list):
                result["content"] = _chat_content_to_blocks(content)
            else:
                result["content"] = content or ""
            _append(out, "user", [result])
        else:
            _append(out, "user", _chat_content_to_blocks(m.get("content")))
    return out, system


def _tools_to_anthropic(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        fn = t.get("function") if t.get("type") == "function" else None
        if not fn:
            continue
        out.append(
            drop_none(
                {
                    "name": fn.get("name"),
                    "description": fn.get("description"),
                    "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
                }
            )
        )
    return out


def _tool_choice_to_anthropic(tc: Any) -> dict[str, Any] | None:
    if tc == "auto":
        return {"type": "auto"}
    if tc == "required":
        return {"type": "any"}
    if tc == "none":
        return {"type": "none"}
    if isinstance(tc, dict):
        name = (tc.get("function") or {}).get("name") or tc.get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


def chat_request_to_messages(body: dict[str, Any]) -> dict[str, Any]:
    messages, system = _chat_messages_to_anthropic(body.get("messages") or [])
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if system:
        out["system"] = "\n\n".join(system)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = int(max_tokens) if max_tokens else default_max_tokens(body.get("model"))
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    thinking = effort in EFFORT_BUDGETS and out["max_tokens"] > 1024
    if thinking:
        budget = min(EFFORT_BUDGETS[effort], out["max_tokens"] - 1)
        out["thinking"] = {"type": "enabled", "budget_tokens": max(budget, 1024)}
    if (
        body.get("temperature") is not None and not thinking
    ):  # thinking requires the default temperature
        out["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0..1
    if body.get("top_p") is not None and not thinking:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = _tools_to_anthropic(body.get("tools") or [])
    if tools:
        out["tools"] = tools
        choice = _tool_choice_to_anthropic(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice:
            out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if body.get("stream"):
        out["stream"] = True
    return out
