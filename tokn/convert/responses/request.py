"""OpenAI Responses <-> OpenAI Chat Completions: request bodies."""

from __future__ import annotations

import logging
from typing import Any

from ..chat import tidy_assistant
from ..common import drop_none, dumps, text_of
from ..context import PLAIN, Dialect
from ..tools import chat_tool_name, note_dropped, request_tools, responses_tools_to_chat

log = logging.getLogger("tokn.convert")

# ---------------------------------------------------------------------------
# requests: responses -> chat


def _part_to_chat(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image" and part.get("image_url"):
        image = drop_none({"url": part["image_url"], "detail": part.get("detail")})
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and part.get("file_data"):
        file = drop_none({"filename": part.get("filename"), "file_data": part["file_data"]})
        return {"type": "file", "file": file}
    return None


def _content_to_chat(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = [p for p in (_part_to_chat(x) for x in content or []) if p]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_to_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return text_of(output, "\n") if isinstance(output, list) else str(output or "")


def _instructions(value: Any) -> str:
    """``instructions``: a string, or input items whose text is joined."""
    if isinstance(value, str):
        return value
    return "\n\n".join(text_of(_content_to_chat(i.get("content")) if isinstance(i, dict)
                                 else i) for i in value)


def _input_to_chat(items: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    reasoning: list[str] = []  # reasoning items precede the assistant output they belong to
    skipped: list[str] = []  # hosted tools' calls (web_search_call...): no chat equivalent

    def assistant(fresh: bool) -> dict[str, Any]:
        if fresh or not out or out[-1]["role"] != "assistant":
            out.append({"role": "assistant", "content": None})
        msg = out[-1]
        if reasoning:
            msg["reasoning_content"] = (msg.get("reasoning_content") or "") + "".join(reasoning)
            reasoning.clear()
        return msg

    def flush() -> None:  # reasoning with no output after it is a turn of its own
        if reasoning:
            assistant(fresh=True)

    def call(call_id: Any, name: str, arguments: str) -> None:
        msg = assistant(fresh=False)
        msg.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": arguments}})

    for item in items:
        if isinstance(item, str):
            flush()
            out.append({"role": "user", "content": item})
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role") or "user"
            if role == "assistant":
                text = _content_to_chat(item.get("content"))
                msg = assistant(fresh=True)
                msg["content"] = text if isinstance(text, str) else text_of(text)
            else:
                flush()
                out.append({"role": role, "content": _content_to_chat(item.get("content"))})
        elif kind == "reasoning":
            parts = (item.get("summary") or []) + (item.get("content") or [])
            reasoning.append(text_of(parts, "\n"))
        elif kind == "function_call":
            name = chat_tool_name(item.get("namespace"), item.get("name") or "")
            call(item.get("call_id") or item.get("id"), name, item.get("arguments") or "")
        elif kind == "custom_tool_call":
            name = chat_tool_name(item.get("namespace"), item.get("name") or "")
            call(item.get("call_id") or item.get("id"), name,
                 dumps({"input": item.get("input") or ""}))
        elif kind == "additional_tools":
            continue  # Codex's tools: chat tools (request_tools), not a message
        elif kind in ("function_call_output", "custom_tool_call_output"):
            flush()
            out.append({"role": "tool", "tool_call_id": item.get("call_id") or "",
                        "content": _output_to_text(item.get("output"))})
        else:
            skipped.append(str(kind))
    flush()
    if skipped:
        log.info("responses input items with no chat equivalent were left out: %s",
                 ", ".join(sorted(set(skipped))))
    return tidy_assistant(out)


def _tool_choice_to_chat(tc: Any) -> Any:
    if tc in ("auto", "required", "none"):
        return tc
    if isinstance(tc, dict) and tc.get("type") in ("function", "custom") and tc.get("name"):
        name = chat_tool_name(tc.get("namespace"), tc["name"])
        return {"type": "function", "function": {"name": name}}
    return None


def format_to_chat(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (fmt or {}).get("type")
    if kind == "json_schema":
        schema = drop_none(
            {
                "name": fmt.get("name") or "response",
                "schema": fmt.get("schema"),  # type: ignore[union-attr]
                "strict": fmt.get("strict"),
                "description": fmt.get("description"),
            }
        )  # type: ignore[union-attr]
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def responses_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": _instructions(body["instructions"])})
    inp = body.get("input")
    if isinstance(inp, str):
        messages.append({"role": "user", "content": inp})
    else:
        messages += _input_to_chat(inp or [])
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "prompt_cache_key"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools, _, dropped = responses_tools_to_chat(request_tools(body))
    note_dropped("responses", dropped)
    if tools:
        out["tools"] = tools
        choice = _tool_choice_to_chat(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        out["reasoning_effort"] = effort
    text = body.get("text") or {}
    fmt = format_to_chat(text.get("format"))
    if fmt:
        out["response_format"] = fmt
    if text.get("verbosity"):
        out["verbosity"] = text["verbosity"]
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ---------------------------------------------------------------------------
# requests: chat -> responses


def _part_to_responses(part: Any, role: str) -> dict[str, Any] | None:
    if isinstance(part, str):
        part = {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return {
            "type": "output_text" if role == "assistant" else "input_text",
            "text": part.get("text") or "",
        }
    if kind == "image_url":
        url = part.get("image_url")
        url, detail = (
            (url.get("url") or "", url.get("detail")) if isinstance(url, dict) else (url, None)
        )
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        f = part.get("file") or {}
        return drop_none(
            {
                "type": "input_file",
                "filename": f.get("filename"),
                "file_data": f.get("file_data"),
                "file_id": f.get("file_id"),
            }
        )
    return None


def _message_item(role: str, content: Any) -> dict[str, Any]:
    parts = [content] if isinstance(content, str) else (content or [])
    conv = [p for p in (_part_to_responses(x, role) for x in parts) if p]
    return {"type": "message", "role": role, "content": conv}


def _chat_messages_to_input(
    messages: list[dict[str, Any]],
) -> tuple[str | None, list[dict[str, Any]]]:
    instructions = None
    items: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer") and i == 0:
            instructions = text_of(m.get("content"), "\n")
        elif role == "assistant":
            text = text_of(m.get("content")) or m.get("refusal") or ""
            if text:
                items.append(_message_item("assistant", text))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id") or "",
                        "name": fn.get("name") or "",
                        "arguments": fn.get("arguments") or "",
                    }
                )
        elif role in ("tool", "function"):
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.get("tool_call_id") or "",
                    "output": text_of(m.get("content"), "\n"),
                }
            )
        else:
            items.append(_message_item(role or "user", m.get("content")))
    return instructions, items


def chat_request_to_responses(body: dict[str, Any], dialect: Dialect = PLAIN) -> dict[str, Any]:
    instructions, items = _chat_messages_to_input(body.get("messages") or [])
    out: dict[str, Any] = {"model": body.get("model"), "input": items}
    if instructions:
        out["instructions"] = instructions
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        out["max_output_tokens"] = max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("prompt_cache_key") and dialect.prompt_cache_key:
        out["prompt_cache_key"] = body["prompt_cache_key"]
    tools = []
    for t in body.get("tools") or []:
        fn = t.get("function") if t.get("type") == "function" else None
        if fn:
            tools.append(
                drop_none(
                    {
                        "type": "function",
                        "name": fn.get("name"),
                        "description": fn.get("description"),
                        "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                        "strict": fn.get("strict"),
                    }
                )
            )
    if tools:
        out["tools"] = tools
        tc = body.get("tool_choice")
        if tc in ("auto", "required", "none"):
            out["tool_choice"] = tc
        elif isinstance(tc, dict) and (tc.get("function") or {}).get("name"):
            out["tool_choice"] = {"type": "function", "name": tc["function"]["name"]}
    if body.get("reasoning_effort"):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema") or {}
        out["text"] = {
            "format": drop_none(
                {
                    "type": "json_schema",
                    "name": js.get("name") or "response",
                    "schema": js.get("schema"),
                    "strict": js.get("strict"),
                    "description": js.get("description"),
                }
            )
        }
    elif rf.get("type") == "json_object":
        out["text"] = {"format": {"type": "json_object"}}
    if body.get("verbosity") and dialect.verbosity:
        out.setdefault("text", {})["verbosity"] = body["verbosity"]
    if body.get("stream"):
        out["stream"] = True
    return out
