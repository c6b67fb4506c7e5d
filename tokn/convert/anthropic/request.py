"""Anthropic Messages <-> OpenAI Chat Completions: request bodies.

The chat form made from a Messages request (the hub) keeps everything chat
can carry, with tokn's extensions (see the package doc); what a particular
chat upstream accepts is decided afterwards (:func:`tokn.convert.chat.for_upstream`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..chat import tidy_assistant
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
from ..context import PLAIN, Dialect
from ..tools import note_dropped, output_tool, uses_output_tool

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
REASONING_FORMAT = "anthropic-claude-v1"  # OpenRouter's name for Anthropic's thinking blocks
EMPTY_TURN = "(empty)"  # Anthropic rejects empty text; an empty user turn says so instead


def default_max_tokens(model: str | None) -> int:
    m = (model or "").lower()
    for prefix, n in _MAX_TOKENS_BY_PREFIX:
        if m.startswith(prefix):
            return n
    return DEFAULT_MAX_TOKENS


def session_cache_key(user_id: str) -> str:
    """A stable ``prompt_cache_key`` for a Messages ``metadata.user_id``: Claude
    Code's session id (a JSON object, or the older ``user_…_session_<uuid>``),
    else a digest of the whole value."""
    try:
        meta = json.loads(user_id)
    except ValueError:
        meta = None
    if isinstance(meta, dict) and isinstance(meta.get("session_id"), str) and meta["session_id"]:
        return meta["session_id"]
    m = re.search(r"_session_([0-9a-fA-F-]{8,})$", user_id)
    if m:
        return m.group(1)
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------
# requests: messages -> chat


def _image_to_chat(block: dict[str, Any]) -> dict[str, Any] | None:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        media = src.get("media_type") or "image/png"
        url = f"data:{media};base64,{src.get('data') or ''}"
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
        media = src.get("media_type") or "application/pdf"
        url = f"data:{media};base64,{src.get('data') or ''}"
        return {"type": "file", "file": {"filename": name, "file_data": url}}
    if src.get("type") == "url":
        return {"type": "text", "text": src.get("url") or ""}
    return None


def _part_of(block: dict[str, Any]) -> dict[str, Any] | None:
    """A user block as a chat content part, its cache breakpoint kept."""
    kind = block.get("type")
    if kind == "text":
        part: dict[str, Any] | None = {"type": "text", "text": block.get("text") or ""}
    elif kind == "image":
        part = _image_to_chat(block)
    elif kind == "document":
        part = _document_to_chat(block)
    else:
        return None
    if part is not None and block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content without cache breakpoints as one string."""
    if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
        return "\n\n".join(p["text"] for p in parts)
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
    msg: dict[str, Any] = {"role": "tool", "tool_call_id": block.get("tool_use_id") or ""}
    nested = [p["cache_control"] for p in content if p.get("cache_control")] \
        if isinstance(content, list) else []
    marked = block.get("cache_control") or (nested[-1] if nested else None)
    msg["content"] = ([{"type": "text", "text": text, "cache_control": marked}] if marked
                      else text)
    return msg, images


def reasoning_fields(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """``thinking`` / ``redacted_thinking`` blocks as chat reasoning fields:
    ``reasoning_content`` (the text), ``reasoning_signature`` (the first
    signature) and, when anything is signed or redacted, ``reasoning_details``
    (every block in order, OpenRouter's shape) so they can go back unchanged."""
    texts, details, signature = [], [], None
    for b in blocks:
        if b.get("type") == "thinking":
            texts.append(b.get("thinking") or "")
            signature = signature or b.get("signature")
            details.append(drop_none({"type": "reasoning.text", "text": b.get("thinking") or "",
                                      "signature": b.get("signature") or None,
                                      "format": REASONING_FORMAT}))
        elif b.get("type") == "redacted_thinking":
            details.append({"type": "reasoning.encrypted", "data": b.get("data") or "",
                            "format": REASONING_FORMAT})
    out: dict[str, Any] = {}
    if texts:
        out["reasoning_content"] = "".join(texts)
    if signature:
        out["reasoning_signature"] = signature
    if any(d["type"] == "reasoning.encrypted" or d.get("signature") for d in details):
        out["reasoning_details"] = details
    return out


def _assistant_to_chat(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    texts, calls, marked = [], [], None
    for b in blocks:
        kind = b.get("type")
        marked = b.get("cache_control") or marked
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind in ("tool_use", "server_tool_use"):
            calls.append({"id": b.get("id") or "", "type": "function",
                          "function": {"name": b.get("name") or "",
                                       "arguments": dumps(b.get("input") or {})}})
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None,
                           **reasoning_fields(blocks)}
    if calls:
        msg["tool_calls"] = calls
    if marked:
        msg["cache_control"] = marked  # hub only: the dialect decides where it goes
    return msg


def _messages_to_chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if content is None or isinstance(content, str):
            out.append({"role": role, "content": content or ""})
            continue
        if role == "assistant":
            out.append(_assistant_to_chat(content))
            continue
        extra_images: list[dict[str, Any]] = []
        results = 0
        for b in content:
            if b.get("type") == "tool_result":
                tool_msg, images = _tool_result_to_chat(b)
                out.append(tool_msg)
                extra_images += images
                results += 1
        parts = [p for p in map(_part_of, content) if p] + extra_images
        if parts or not results:  # a turn of nothing stays an (empty) turn
            out.append({"role": role or "user", "content": _content(parts)})
    return tidy_assistant(out)


def _system_to_chat(system: Any) -> dict[str, Any]:
    if isinstance(system, str):
        return {"role": "system", "content": system}
    parts = [p for p in map(_part_of, system) if p and p["type"] == "text"]
    if any("cache_control" in p for p in parts):
        return {"role": "system", "content": parts}
    return {"role": "system", "content": text_of(system, "\n\n")}


def _tools_to_chat(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, dropped = [], []
    for t in tools:
        if t.get("type") not in (None, "custom") and "input_schema" not in t:
            dropped.append(str(t.get("type")))  # server / built-in tools: no chat equivalent
            continue
        fn = drop_none({"name": t.get("name"), "description": t.get("description"),
                        "parameters": t.get("input_schema") or {"type": "object",
                                                                "properties": {}}})
        out.append(drop_none({"type": "function", "function": fn,
                              "cache_control": t.get("cache_control")}))
    note_dropped("messages", dropped)
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
        return {"type": "function", "function": {"name": (tc or {}).get("name") or ""}}
    return None


def messages_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append(_system_to_chat(body["system"]))
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
    thinking = body.get("thinking") or {}
    config = body.get("output_config") or {}
    if thinking.get("type") == "enabled":
        out["reasoning_effort"] = effort_for_budget(int(thinking.get("budget_tokens") or 0))
    elif thinking.get("type") == "adaptive":  # effort: low..max; chat's scale ends at high
        effort = config.get("effort") or "medium"
        out["reasoning_effort"] = effort if effort in ("low", "medium", "high") else "high"
    fmt = config.get("format") or {}
    if fmt.get("type") == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": fmt.get("schema") or {"type": "object"},
            "strict": True}}
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
        out["prompt_cache_key"] = session_cache_key(user)
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
    block: dict[str, Any] | None = None
    if kind in ("text", "input_text", "output_text"):
        block = {"type": "text", "text": part.get("text") or ""}
    elif kind == "refusal":
        block = {"type": "text", "text": part.get("refusal") or ""}
    elif kind == "image_url":
        url = part.get("image_url")
        url = (url.get("url") or "") if isinstance(url, dict) else (url or "")
        data = parse_data_url(url)
        source = ({"type": "base64", "media_type": data[0], "data": data[1]} if data
                  else {"type": "url", "url": url})
        block = {"type": "image", "source": source}
    elif kind == "file":
        data = parse_data_url((part.get("file") or {}).get("file_data") or "")
        if data:
            block = {"type": "document",
                     "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
    if block is not None and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _chat_content_to_blocks(content: Any) -> list[dict[str, Any]]:
    """Content as blocks; whitespace-only text is left out (Anthropic rejects it)."""
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = [_chat_part_to_block(p) for p in content]
    return [b for b in blocks if b is not None and not (b["type"] == "text"
                                                         and not b["text"].strip())]


def _thinking_blocks(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking blocks for an assistant message: from ``reasoning_details`` when
    present (every signed / redacted block, in order), else from
    ``reasoning_content`` + ``reasoning_signature``. Anthropic rejects thinking
    without its signature, so unsigned reasoning is not sent."""
    details = [d for d in m.get("reasoning_details") or []
               if d.get("format") in (None, REASONING_FORMAT)]
    if details:
        out = []
        for d in details:
            if d.get("type") == "reasoning.encrypted" and d.get("data"):
                out.append({"type": "redacted_thinking", "data": d["data"]})
            elif d.get("type") == "reasoning.text" and d.get("signature"):
                out.append({"type": "thinking", "thinking": d.get("text") or "",
                            "signature": d["signature"]})
        return out
    reasoning, signature = reasoning_of(m), m.get("reasoning_signature")
    if reasoning and signature:
        return [{"type": "thinking", "thinking": reasoning, "signature": signature}]
    return []


def _chat_assistant_to_blocks(m: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _thinking_blocks(m) + _chat_content_to_blocks(m.get("content"))
    if m.get("refusal"):
        blocks.append({"type": "text", "text": m["refusal"]})
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": anthropic_tool_id(call.get("id")),
                       "name": fn.get("name") or "", "input": parse_args(fn.get("arguments"))})
    return blocks


def _mark(blocks: list[dict[str, Any]], m: dict[str, Any]) -> list[dict[str, Any]]:
    """A message-level breakpoint (hub ``cache_control``, Copilot's
    ``copilot_cache_control``) goes on the message's last block that takes one."""
    marker = m.get("cache_control") or m.get("copilot_cache_control")
    for b in reversed(blocks if marker else []):
        if b["type"] not in ("thinking", "redacted_thinking"):
            b["cache_control"] = marker
            break
    return blocks


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging with the previous turn of the same role. A user
    turn may be empty here (see :func:`_chat_messages_to_anthropic`)."""
    if not blocks and role != "user":
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"] += blocks
    else:
        out.append({"role": role, "content": blocks})


def _chat_messages_to_anthropic(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            blocks = [b for b in _chat_content_to_blocks(m.get("content")) if b["type"] == "text"]
            system += _mark(blocks, m)
        elif role == "assistant":
            _append(out, "assistant", _mark(_chat_assistant_to_blocks(m), m))
        elif role in ("tool", "function"):
            content = m.get("content")
            result: dict[str, Any] = {"type": "tool_result",
                                      "tool_use_id": anthropic_tool_id(m.get("tool_call_id"))}
            if isinstance(content, list):
                result["content"] = _chat_content_to_blocks(content)
                marks = [b.pop("cache_control") for b in result["content"]
                         if "cache_control" in b]
                if marks:
                    result["cache_control"] = marks[-1]
            else:
                result["content"] = content or ""
            _append(out, "user", _mark([result], m))
        else:
            _append(out, "user", _mark(_chat_content_to_blocks(m.get("content")), m))
    for turn in out:  # a user turn that said nothing (``""``) says so
        if not turn["content"]:
            turn["content"] = [{"type": "text", "text": EMPTY_TURN}]
    return out, system


def _tools_to_anthropic(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        fn = t.get("function") if t.get("type") == "function" else None
        if not fn:
            continue
        out.append(drop_none({
            "name": fn.get("name"), "description": fn.get("description"),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
            "cache_control": t.get("cache_control") or t.get("copilot_cache_control")}))
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


def _structured_output(body: dict[str, Any], out: dict[str, Any], dialect: Dialect) -> None:
    """``response_format`` as ``output_config.format``, or as a forced tool whose
    call the answer's conversion turns back into content (see :mod:`..tools`)."""
    if not uses_output_tool(body, dialect):
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            out["output_config"] = {**out.get("output_config", {}),
                                    "format": {"type": "json_schema", "schema": schema}}
        return
    tool = output_tool(body)
    if tool is None:
        return
    client_tools = out.get("tools") or []
    out["tools"] = [*client_tools, tool]
    choice = out.get("tool_choice") or {"type": "auto"}
    if "thinking" in out:  # Anthropic refuses a forced tool with thinking: ask instead
        out["tool_choice"] = {**choice, "type": "auto"} if choice["type"] != "tool" else choice
        note = f"Give your final answer by calling the `{tool['name']}` tool."
        out["system"] = [*out.get("system", []), {"type": "text", "text": note}]
    elif choice["type"] == "tool":
        out["tool_choice"] = choice  # the client named its own tool
    elif client_tools and choice["type"] != "none":
        out["tool_choice"] = {**choice, "type": "any"}  # a tool, or the answer as a tool
    else:
        out["tool_choice"] = {"type": "tool", "name": tool["name"]}


def chat_request_to_messages(body: dict[str, Any], dialect: Dialect = PLAIN) -> dict[str, Any]:
    messages, system = _chat_messages_to_anthropic(body.get("messages") or [])
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if system:
        out["system"] = system
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = int(max_tokens) if max_tokens else default_max_tokens(body.get("model"))
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    thinking = effort in EFFORT_BUDGETS and out["max_tokens"] > 1024
    if thinking:
        budget = min(EFFORT_BUDGETS[effort], out["max_tokens"] - 1)
        out["thinking"] = {"type": "enabled", "budget_tokens": max(budget, 1024)}
    if body.get("temperature") is not None and not thinking:  # thinking needs the default
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
    _structured_output(body, out, dialect)
    if out.get("system") and all("cache_control" not in b for b in out["system"]):
        out["system"] = "\n\n".join(b["text"] for b in out["system"] if b["type"] == "text")
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if body.get("stream"):
        out["stream"] = True
    return out
