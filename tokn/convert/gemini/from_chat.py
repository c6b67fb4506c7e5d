"""OpenAI chat request -> Gemini ``GenerateContentRequest`` (pure; rules in the package doc)."""

from __future__ import annotations

import json
import re
from typing import Any

from ..common import drop_none, dumps, parse_args, parse_data_url, reasoning_of, text_of
from .base import GEN_TO_CHAT, Body, decode_call_id, guess_mime, is_json_object

_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576,
            "xhigh": 24576}


def _media_part(url: str, default_mime: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    return {"fileData": {"mimeType": guess_mime(url, default_mime), "fileUri": url}}


def _chat_part_to_gemini(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"text": part} if part else None
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text", "refusal"):
        text = part.get("text") if kind != "refusal" else part.get("refusal")
        return {"text": text} if text else None
    if kind == "image_url":
        url = part.get("image_url")
        url = (url.get("url") or "") if isinstance(url, dict) else str(url or "")
        return _media_part(url, "image/jpeg")
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return {"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}",
                               "data": audio.get("data") or ""}}
    if kind == "file":
        file = part.get("file") or {}
        if file.get("file_data"):
            return _media_part(file["file_data"], "application/octet-stream")
        file_id = str(file.get("file_id") or "")
        if "://" in file_id:
            return {"fileData": {"mimeType": guess_mime(file_id), "fileUri": file_id}}
        return {"text": f"[file {file_id}]"} if file_id else None
    return None


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    return [p for p in map(_chat_part_to_gemini, content) if p]


def _call_signature(call: dict[str, Any], from_id: str | None) -> str | None:
    google = (call.get("extra_content") or {}).get("google") or {}
    return google.get("thought_signature") or from_id


def assistant_parts(msg: dict[str, Any], names: dict[str, tuple[str | None, str]] | None = None,
                    ) -> list[dict[str, Any]]:
    """A chat assistant message (or response message) as Gemini model parts."""
    parts: list[dict[str, Any]] = []
    reasoning, signature = reasoning_of(msg), msg.get("reasoning_signature")
    if reasoning:
        parts.append(drop_none({"text": reasoning, "thought": True,
                                "thoughtSignature": signature}))
    texts = _content_parts(msg.get("content"))
    if msg.get("refusal"):
        texts.append({"text": msg["refusal"]})
    if texts and signature and not reasoning:
        texts[-1]["thoughtSignature"] = signature
    parts += texts
    for image in msg.get("images") or []:
        url = (image.get("image_url") or {}).get("url", "") if isinstance(image, dict) else ""
        if url:
            parts.append(_media_part(url, "image/png"))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        gemini_id, sig = decode_call_id(call.get("id"))
        name = str(fn.get("name") or "")
        if names is not None and call.get("id"):
            names[call["id"]] = (gemini_id, name)
        part: dict[str, Any] = {"functionCall": drop_none(
            {"id": gemini_id, "name": name, "args": parse_args(fn.get("arguments"))})}
        sig = _call_signature(call, sig)
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _tool_parts(msg: dict[str, Any], names: dict[str, tuple[str | None, str]],
                ) -> list[dict[str, Any]]:
    chat_id = str(msg.get("tool_call_id") or "")
    gemini_id, name = names.get(chat_id) or (decode_call_id(chat_id)[0], "")
    name = name or str(msg.get("name") or gemini_id or chat_id)
    content = msg.get("content")
    extra: list[dict[str, Any]] = []
    if isinstance(content, list):
        extra = [p for p in _content_parts(content) if "text" not in p]
        content = text_of(content, "\n")
    text = content if isinstance(content, str) else dumps(content)
    response = json.loads(text) if is_json_object(text) else {"output": text}
    return [{"functionResponse": drop_none({"id": gemini_id, "name": name,
                                            "response": response})}, *extra]


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"] += parts
    else:
        contents.append({"role": role, "parts": parts})


def _major_version(model: str) -> int:
    m = re.search(r"gemini-(\d+)", model)
    return int(m.group(1)) if m else 0


def _thinking_config(effort: str, model: str) -> dict[str, Any] | None:
    if effort not in _BUDGETS:
        return None
    if _major_version(model) >= 3:
        level = {"none": "minimal", "xhigh": "high"}.get(effort, effort)
        return {"thinkingLevel": level, "includeThoughts": effort != "none"}
    budget = _BUDGETS[effort]
    if budget == 0 and "pro" in model:
        budget = 128
    return {"thinkingBudget": budget, "includeThoughts": budget > 0}


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict):
        if choice.get("type") == "allowed_tools":
            allowed = choice.get("allowed_tools") or {}
            names = [(t.get("function") or {}).get("name") or t.get("name")
                     for t in allowed.get("tools") or []]
            mode = "ANY" if allowed.get("mode") == "required" else "AUTO"
            return {"functionCallingConfig": {"mode": mode,
                                              "allowedFunctionNames": [n for n in names if n]}}
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def _generation_config(body: Body, model: str) -> dict[str, Any]:
    gc: dict[str, Any] = {}
    for gemini_key, chat_key in GEN_TO_CHAT:
        if chat_key != "max_tokens" and body.get(chat_key) is not None:
            gc[gemini_key] = body[chat_key]
    if body.get("top_k") is not None:
        gc["topK"] = body["top_k"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        gc["maxOutputTokens"] = int(max_tokens)
    stop = body.get("stop")
    if stop:
        gc["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        gc["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema is not None:
            gc["responseJsonSchema"] = schema
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    thinking = _thinking_config(str(effort), model) if effort else None
    if thinking:
        gc["thinkingConfig"] = thinking
    return gc


def chat_request_to_gemini(body: Body) -> Body:
    """A chat request as a Gemini ``GenerateContentRequest`` plus ``model``/``stream``."""
    contents: list[dict[str, Any]] = []
    system: list[str] = []
    names: dict[str, tuple[str | None, str]] = {}
    for m in body.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            text = text_of(m.get("content"), "\n")
            if text:
                system.append(text)
        elif role == "assistant":
            _append(contents, "model", assistant_parts(m, names))
        elif role in ("tool", "function"):
            _append(contents, "user", _tool_parts(m, names))
        else:
            _append(contents, "user", _content_parts(m.get("content")))
    model = str(body.get("model") or "")
    out: Body = {"model": model, "contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": s} for s in system]}
    decls = []
    for tool in body.get("tools") or []:
        fn = tool.get("function") if tool.get("type") == "function" else None
        if fn and fn.get("name"):
            decls.append(drop_none({"name": fn["name"], "description": fn.get("description"),
                                    "parametersJsonSchema": fn.get("parameters")}))
    if decls:
        out["tools"] = [{"functionDeclarations": decls}]
        config = _tool_config(body.get("tool_choice"))
        if config:
            out["toolConfig"] = config
    gc = _generation_config(body, model)
    if gc:
        out["generationConfig"] = gc
    if body.get("stream"):
        out["stream"] = True
    return out
