"""Gemini ``GenerateContentRequest`` -> OpenAI chat request (pure; rules in the package doc)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import drop_none, dumps
from .base import (
    GEN_TO_CHAT,
    SYNTHETIC_ID_PREFIX,
    Body,
    encode_call_id,
    field,
    guess_mime,
    is_json_object,
    split_target,
)
from .schema import schema_to_json_schema

_LEVELS = ("minimal", "low", "medium", "high")


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts = field(content, "parts") if isinstance(content, dict) else content
    if isinstance(parts, dict):
        parts = [parts]
    return [p for p in parts or [] if isinstance(p, dict)]


def blob_to_chat(blob: dict[str, Any]) -> dict[str, Any]:
    mime = field(blob, "mimeType") or "application/octet-stream"
    data = field(blob, "data") or ""
    url = f"data:{mime};base64,{data}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    audio = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}
    if mime in audio:
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio[mime]}}
    name = "document.pdf" if mime == "application/pdf" else "file"
    return {"type": "file", "file": {"filename": name, "file_data": url}}


def _file_to_chat(ref: dict[str, Any]) -> dict[str, Any]:
    uri = field(ref, "fileUri") or ""
    mime = field(ref, "mimeType") or guess_mime(uri)
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": uri}}
    return {"type": "file", "file": {"file_id": uri}}


def _media_to_chat(part: dict[str, Any]) -> dict[str, Any] | None:
    if field(part, "inlineData"):
        return blob_to_chat(field(part, "inlineData"))
    if field(part, "fileData"):
        return _file_to_chat(field(part, "fileData"))
    return None


def code_text(part: dict[str, Any]) -> str | None:
    """Code-execution parts as text, so the model keeps seeing them."""
    code = field(part, "executableCode")
    if isinstance(code, dict):
        lang = str(field(code, "language") or "").lower().replace("language_unspecified", "")
        return f"```{lang}\n{field(code, 'code') or ''}\n```"
    result = field(part, "codeExecutionResult")
    if isinstance(result, dict):
        return str(field(result, "output") or "")
    return None


def _response_to_text(response: Any) -> str:
    if isinstance(response, dict) and set(response) == {"output"}:
        out = response["output"]
        if isinstance(out, str) and not is_json_object(out):
            return out
    return dumps(response if response is not None else {})


def _simplify(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


class _Calls:
    """The function calls of the latest model turn, for matching responses: by id when
    the id names a call of that function, else the oldest open call of that name."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = {}

    def add(self, gemini_id: str | None, name: str, chat_id: str) -> None:
        if gemini_id:
            self.by_id[gemini_id] = chat_id
        self.by_name.setdefault(name, []).append(chat_id)

    def match(self, gemini_id: str | None, name: str) -> str | None:
        queue = self.by_name.get(name) or []
        chat_id = self.by_id.get(gemini_id or "")
        if chat_id not in queue:
            chat_id = queue[0] if queue else None
        if chat_id is not None:
            queue.remove(chat_id)
        return chat_id


def model_message(parts: list[dict[str, Any]], synthetic_id: Callable[[int], str],
                  calls: _Calls | None = None) -> dict[str, Any]:
    """Model parts as a chat assistant message (generated images as ``images``).

    ``synthetic_id(part_index)`` names calls that have no Gemini id, or one an
    earlier call of the turn already used (chat ids must be unique).
    """
    texts, thoughts, tool_calls, images = [], [], [], []
    signature = None
    seen: set[str] = set()
    for i, part in enumerate(parts):
        if field(part, "inlineData"):
            images.append(blob_to_chat(field(part, "inlineData")))
            continue
        sig = field(part, "thoughtSignature")
        fc = field(part, "functionCall")
        if isinstance(fc, dict):
            name = str(fc.get("name") or "")
            gemini_id = fc.get("id") if fc.get("id") not in seen else None
            seen.add(gemini_id or "")
            chat_id = encode_call_id(gemini_id or synthetic_id(i), sig)
            if calls is not None:
                calls.add(gemini_id, name, chat_id)
            args = dumps(fc.get("args") or {})
            tool_calls.append({"id": chat_id, "type": "function",
                               "function": {"name": name, "arguments": args}})
            continue
        signature = sig or signature
        text = part.get("text")
        if field(part, "thought") is True:
            thoughts.append(text if isinstance(text, str) else "")
        elif isinstance(text, str):
            texts.append(text)
        elif code_text(part) is not None:
            texts.append(code_text(part) or "")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        msg["reasoning_content"] = "".join(thoughts)
    if signature:
        msg["reasoning_signature"] = signature
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if images:
        msg["images"] = images
    return msg


def _user_turn(parts: list[dict[str, Any]], calls: _Calls) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    chat_parts: list[dict[str, Any]] = []
    for part in parts:
        fr = field(part, "functionResponse")
        if isinstance(fr, dict):
            name = str(fr.get("name") or "")
            response = fr.get("response")
            chat_id = calls.match(fr.get("id"), name)
            if chat_id is None:
                chat_parts.append({"type": "text", "text": f"[{name} returned] {dumps(response)}"})
            else:
                tools.append({"role": "tool", "tool_call_id": chat_id,
                              "content": _response_to_text(response)})
            chat_parts += [m for m in map(_media_to_chat, _parts(fr.get("parts"))) if m]
        elif isinstance(part.get("text"), str):
            chat_parts.append({"type": "text", "text": part["text"]})
        elif (media := _media_to_chat(part)) is not None:
            chat_parts.append(media)
        elif (code := code_text(part)) is not None:
            chat_parts.append({"type": "text", "text": code})
    if chat_parts:
        tools.append({"role": "user", "content": _simplify(chat_parts)})
    return tools


def _tools_to_chat(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools or []:
        for fd in field(tool, "functionDeclarations") or []:
            params = field(fd, "parametersJsonSchema")
            if params is None and field(fd, "parameters") is not None:
                params = schema_to_json_schema(field(fd, "parameters"))
            fn = drop_none({"name": fd.get("name"), "description": fd.get("description"),
                            "parameters": params})
            out.append({"type": "function", "function": fn})
    return out


def _tool_choice_to_chat(config: Any) -> Any:
    fcc = field(field(config, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(field(fcc, "mode") or "").upper()
    names = field(fcc, "allowedFunctionNames") or []
    if mode in ("AUTO", "VALIDATED"):
        return "auto"
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        if len(names) == 1:
            return {"type": "function", "function": {"name": names[0]}}
        return "required"
    return None


def _effort_for_budget(budget: int) -> str | None:
    if budget < 0:
        return None
    if budget == 0:
        return "none"
    for limit, effort in ((1024, "minimal"), (4096, "low"), (16384, "medium")):
        if budget < limit:
            return effort
    return "high"


def _effort(thinking: Any) -> str | None:
    level = str(field(thinking, "thinkingLevel") or "").lower()
    if level in _LEVELS:
        return level
    budget = field(thinking, "thinkingBudget")
    return _effort_for_budget(int(budget)) if isinstance(budget, (int, float)) else None


def _response_format(gc: dict[str, Any]) -> dict[str, Any] | None:
    if str(field(gc, "responseMimeType") or "") != "application/json":
        return None
    schema = field(gc, "responseJsonSchema")
    if schema is None and field(gc, "responseSchema") is not None:
        schema = schema_to_json_schema(field(gc, "responseSchema"))
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def gemini_request_to_chat(body: Body) -> Body:
    """A Gemini ``GenerateContentRequest`` (plus ``model``/``stream``) as a chat request."""
    model, stream, body = split_target(body)
    messages: list[dict[str, Any]] = []
    system = field(body, "systemInstruction")
    if system:
        messages += [{"role": "system", "content": p["text"]}
                     for p in _parts(system) if isinstance(p.get("text"), str)]
    calls = _Calls()
    for turn, content in enumerate(field(body, "contents") or []):
        if not isinstance(content, dict):
            continue
        parts = _parts(content)
        if content.get("role") == "model":
            calls = _Calls()
            msg = model_message(parts, lambda i, t=turn: f"{SYNTHETIC_ID_PREFIX}{t}_{i}", calls)
            if msg["content"] is not None or len(msg) > 2:
                messages.append(msg)
        else:
            messages += _user_turn(parts, calls)
    out: Body = {"model": model, "messages": messages}
    gc = field(body, "generationConfig") or {}
    for gemini_key, chat_key in GEN_TO_CHAT:
        if field(gc, gemini_key) is not None:
            out[chat_key] = field(gc, gemini_key)
    stop = field(gc, "stopSequences")
    if stop:
        out["stop"] = list(stop)
    fmt = _response_format(gc)
    if fmt:
        out["response_format"] = fmt
    effort = _effort(field(gc, "thinkingConfig"))
    if effort:
        out["reasoning_effort"] = effort
    tools = _tools_to_chat(field(body, "tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice_to_chat(body)
        if choice is not None:
            out["tool_choice"] = choice
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out
