"""Shape checks for request bodies before conversion (pure).

Each converter reads a body in its client format assuming the shape checked
here; a body that does not have it is rejected with one
:class:`~tokn.errors.ConversionError` naming the field (``messages[2].content``)
and what was expected, which the pipeline answers with a 400 in the caller's
format. Only what the converters read is checked, and only its JSON type:
values the converters pass through (schemas, arguments) are left to the
upstream, and unknown fields are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tokn.errors import ConversionError

Body = dict[str, Any]

_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _kind(value: Any) -> str:
    return _NAMES.get(type(value), type(value).__name__)


def _fits(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    raise AssertionError(kind)


def need(value: Any, path: str, *kinds: str) -> Any:
    """``value`` when it is one of ``kinds`` ("object", "array", "string",
    "number", "boolean"), else a :class:`ConversionError` naming ``path``."""
    if any(_fits(value, k) for k in kinds):
        return value
    want = " or ".join(("an " if k[0] in "ao" else "a ") + k for k in kinds)
    raise ConversionError(f"`{path}` must be {want}, not {_kind(value)}.")


def opt(obj: dict[str, Any], key: str, path: str, *kinds: str) -> Any:
    """``obj[key]`` checked like :func:`need` when present and not null."""
    value = obj.get(key)
    return None if value is None else need(value, f"{path}{key}", *kinds)


def _fields(obj: dict[str, Any], path: str, spec: dict[str, tuple[str, ...]]) -> None:
    for key, kinds in spec.items():
        opt(obj, key, path, *kinds)


def _objects(value: Any, path: str, each: Callable[[dict[str, Any], str], None]) -> None:
    """An optional array of objects, each checked by ``each(obj, "path[i].")``."""
    if value is None:
        return
    for i, item in enumerate(need(value, path, "array")):
        need(item, f"{path}[{i}]", "object")
        each(item, f"{path}[{i}].")


def _nonempty_list(body: Body, key: str, why: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        raise ConversionError(f"`{key}` is required{why}.")
    items = need(value, key, "array")
    if not items:
        raise ConversionError(f"`{key}` must not be empty.")
    return items


_SAMPLING = {"model": ("string",), "max_tokens": ("number",), "temperature": ("number",),
             "top_p": ("number",)}

# --- chat completions ---------------------------------------------------------------


def _chat_part(part: Any, path: str) -> None:
    if isinstance(part, str):
        return
    need(part, path, "object")
    _fields(part, path + ".", {"type": ("string",), "text": ("string",),
                               "refusal": ("string",), "file": ("object",),
                               "cache_control": ("object",)})
    image = opt(part, "image_url", path + ".", "string", "object")
    if isinstance(image, dict):
        need(image.get("url"), path + ".image_url.url", "string")   # an image is its URL
        _fields(image, path + ".image_url.", {"detail": ("string",)})
    if isinstance(part.get("file"), dict):
        _fields(part["file"], path + ".file.", {"file_data": ("string",),
                                                 "filename": ("string",),
                                                 "file_id": ("string",)})


def _content(obj: dict[str, Any], path: str, part: Callable[[Any, str], None]) -> None:
    content = opt(obj, "content", path, "string", "array")
    for i, p in enumerate(content if isinstance(content, list) else []):
        part(p, f"{path}content[{i}]")


def _chat_call(call: dict[str, Any], path: str) -> None:
    _fields(call, path, {"id": ("string",), "type": ("string",), "function": ("object",)})
    fn = call.get("function")
    if isinstance(fn, dict):
        _fields(fn, path + "function.", {"name": ("string",),
                                         "arguments": ("string", "object")})


def _chat_message(m: dict[str, Any], path: str) -> None:
    need(m.get("role"), path + "role", "string")
    _content(m, path, _chat_part)
    _fields(m, path, {"tool_call_id": ("string",), "name": ("string",),
                      "refusal": ("string",), "reasoning_content": ("string",),
                      "reasoning": ("string",), "reasoning_text": ("string",),
                      "reasoning_signature": ("string",), "copilot_cache_control": ("object",)})
    _objects(m.get("tool_calls"), path + "tool_calls", _chat_call)
    _objects(m.get("reasoning_details"), path + "reasoning_details", lambda d, p: _fields(
        d, p, {"type": ("string",), "text": ("string",), "signature": ("string",),
               "data": ("string",)}))


def _chat_tool(t: dict[str, Any], path: str) -> None:
    _fields(t, path, {"type": ("string",), "function": ("object",)})
    fn = t.get("function")
    if isinstance(fn, dict):
        _fields(fn, path + "function.", {"name": ("string",), "description": ("string",),
                                         "parameters": ("object",), "strict": ("boolean",)})


def chat_request(body: Body) -> None:
    for i, m in enumerate(_nonempty_list(body, "messages", "")):
        need(m, f"messages[{i}]", "object")
        _chat_message(m, f"messages[{i}].")
    _objects(body.get("tools"), "tools", _chat_tool)
    _fields(body, "", {**_SAMPLING, "max_completion_tokens": ("number",),
                       "stop": ("string", "array"), "tool_choice": ("string", "object"),
                       "reasoning_effort": ("string",), "reasoning": ("object",),
                       "response_format": ("object",), "user": ("string",),
                       "prompt_cache_key": ("string",), "parallel_tool_calls": ("boolean",),
                       "stream_options": ("object",), "verbosity": ("string",)})
    for i, s in enumerate(body["stop"] if isinstance(body.get("stop"), list) else []):
        need(s, f"stop[{i}]", "string")
    if isinstance(body.get("tool_choice"), dict):
        opt(body["tool_choice"], "function", "tool_choice.", "object")
    if isinstance(body.get("reasoning"), dict):
        opt(body["reasoning"], "effort", "reasoning.", "string")
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        _fields(fmt, "response_format.", {"type": ("string",), "json_schema": ("object",)})
        if isinstance(fmt.get("json_schema"), dict):
            _fields(fmt["json_schema"], "response_format.json_schema.",
                    {"name": ("string",), "description": ("string",), "schema": ("object",),
                     "strict": ("boolean",)})


# --- anthropic messages -------------------------------------------------------------

_BLOCK_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("string",), "thinking": ("string",), "signature": ("string",),
    "data": ("string",), "id": ("string",), "name": ("string",), "input": ("object",),
    "tool_use_id": ("string",), "is_error": ("boolean",), "title": ("string",),
    "source": ("object",), "cache_control": ("object",),
}


def _block(block: Any, path: str) -> None:
    need(block, path, "object")
    need(block.get("type"), path + ".type", "string")
    _fields(block, path + ".", _BLOCK_FIELDS)
    if isinstance(block.get("source"), dict):
        _fields(block["source"], path + ".source.",
                {"type": ("string",), "data": ("string",), "media_type": ("string",),
                 "url": ("string",)})
    if block["type"] == "tool_result":
        _content(block, path + ".", _block)


def _anthropic_tool(t: dict[str, Any], path: str) -> None:
    _fields(t, path, {"type": ("string",), "name": ("string",), "description": ("string",),
                      "input_schema": ("object",), "cache_control": ("object",)})


def messages_request(body: Body) -> None:
    for i, m in enumerate(_nonempty_list(body, "messages", "")):
        need(m, f"messages[{i}]", "object")
        need(m.get("role"), f"messages[{i}].role", "string")
        _content(m, f"messages[{i}].", _block)
    system = opt(body, "system", "", "string", "array")
    for i, b in enumerate(system if isinstance(system, list) else []):
        _block(b, f"system[{i}]")
    _objects(body.get("tools"), "tools", _anthropic_tool)
    _fields(body, "", {**_SAMPLING, "top_k": ("number",), "stop_sequences": ("array",),
                       "tool_choice": ("object",), "thinking": ("object",),
                       "metadata": ("object",), "output_config": ("object",)})
    for i, s in enumerate(body.get("stop_sequences") or []):
        need(s, f"stop_sequences[{i}]", "string")
    for key, spec in (("tool_choice", {"type": ("string",), "name": ("string",),
                                       "disable_parallel_tool_use": ("boolean",)}),
                      ("thinking", {"type": ("string",), "budget_tokens": ("number",)}),
                      ("metadata", {"user_id": ("string",)}),
                      ("output_config", {"effort": ("string",), "format": ("object",)})):
        if isinstance(body.get(key), dict):
            _fields(body[key], key + ".", spec)
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict):
        _fields(fmt, "output_config.format.", {"type": ("string",), "schema": ("object",)})


# --- responses ----------------------------------------------------------------------


def _responses_part(part: Any, path: str) -> None:
    if isinstance(part, str):
        return
    need(part, path, "object")
    _fields(part, path + ".", {"type": ("string",), "text": ("string",), "refusal": ("string",),
                               "image_url": ("string",), "detail": ("string",),
                               "file_data": ("string",), "filename": ("string",),
                               "file_id": ("string",)})


def _item(item: Any, path: str) -> None:
    if isinstance(item, str):
        return
    need(item, path, "object")
    p = path + "."
    if item.get("type") == "item_reference":
        raise ConversionError(f"`{path}` is an item_reference (to a stored item): tokn keeps "
                              f"no conversation state for this upstream; send the item itself.")
    _fields(item, p, {"type": ("string",), "role": ("string",), "id": ("string",),
                      "call_id": ("string",), "name": ("string",), "namespace": ("string",),
                      "arguments": ("string",), "input": ("string",),
                      "encrypted_content": ("string",)})
    if item.get("type") == "reasoning":  # its content is always a list of parts
        for i, part in enumerate(opt(item, "content", p, "array") or []):
            _responses_part(part, f"{p}content[{i}]")
    elif item.get("type") in (None, "message"):
        _content(item, p, _responses_part)
    if item.get("type") == "additional_tools":  # Codex's "Responses lite" tools
        _objects(item.get("tools"), p + "tools", _responses_tool)
    for key in ("summary",):
        for i, part in enumerate(opt(item, key, p, "array") or []):
            _responses_part(part, f"{p}{key}[{i}]")
    output = opt(item, "output", p, "string", "array")
    for i, part in enumerate(output if isinstance(output, list) else []):
        _responses_part(part, f"{p}output[{i}]")


def _responses_tool(t: dict[str, Any], path: str) -> None:
    _fields(t, path, {"type": ("string",), "name": ("string",), "description": ("string",),
                      "parameters": ("object",), "strict": ("boolean",)})
    _objects(t.get("tools"), path + "tools", _responses_tool)


def responses_request(body: Body) -> None:
    if body.get("previous_response_id") is not None:
        raise ConversionError("`previous_response_id` names a stored response: tokn keeps no "
                              "conversation state for this upstream; send the whole "
                              "conversation as `input`.")
    inp = body.get("input")
    if isinstance(inp, str):
        pass
    else:
        why = " (tokn keeps no conversation state: send the whole conversation as `input`)"
        for i, item in enumerate(_nonempty_list(body, "input", why)):
            _item(item, f"input[{i}]")
    instructions = opt(body, "instructions", "", "string", "array")
    for i, item in enumerate(instructions if isinstance(instructions, list) else []):
        _item(item, f"instructions[{i}]")
    _objects(body.get("tools"), "tools", _responses_tool)
    _fields(body, "", {"model": ("string",), "max_output_tokens": ("number",),
                       "temperature": ("number",),
                       "top_p": ("number",), "parallel_tool_calls": ("boolean",),
                       "tool_choice": ("string", "object"), "text": ("object",),
                       "reasoning": ("object",), "user": ("string",),
                       "safety_identifier": ("string",), "prompt_cache_key": ("string",)})
    if isinstance(body.get("tool_choice"), dict):
        _fields(body["tool_choice"], "tool_choice.", {"type": ("string",), "name": ("string",),
                                                      "namespace": ("string",)})
    if isinstance(body.get("reasoning"), dict):
        _fields(body["reasoning"], "reasoning.", {"effort": ("string",)})
    text = body.get("text")
    if isinstance(text, dict):
        fmt = opt(text, "format", "text.", "object")
        if fmt is not None:
            _fields(fmt, "text.format.", {"type": ("string",), "name": ("string",),
                                          "schema": ("object",), "strict": ("boolean",),
                                          "description": ("string",)})
        opt(text, "verbosity", "text.", "string")


def _gemini_part(part: dict[str, Any], path: str) -> None:
    _fields(part, path, {"text": ("string",), "thought": ("boolean",)})
    for key in ("inlineData", "inline_data", "functionCall", "function_call",
                "functionResponse", "function_response", "fileData", "file_data"):
        opt(part, key, path, "object")


def _gemini_content(content: dict[str, Any], path: str) -> None:
    opt(content, "role", path, "string")
    _objects(content.get("parts"), f"{path}parts", _gemini_part)


def gemini_request(body: Body) -> None:
    """A Gemini ``GenerateContentRequest`` (camelCase or snake_case fields)."""
    _objects(body.get("contents"), "contents", _gemini_content)
    for key in ("systemInstruction", "system_instruction"):
        if isinstance(body.get(key), str):
            continue  # the SDKs accept a bare string
        if body.get(key) is not None:
            _gemini_content(need(body[key], key, "object"), f"{key}.")
    for key in ("generationConfig", "generation_config", "toolConfig", "tool_config"):
        opt(body, key, "", "object")
    for key in ("tools",):
        _objects(body.get(key), key, lambda _t, _p: None)


CHECKS: dict[str, Callable[[Body], None]] = {
    "chat": chat_request,
    "messages": messages_request,
    "responses": responses_request,
    "gemini": gemini_request,
}


def check_request(fmt: str, body: Any) -> None:
    """Raise :class:`ConversionError` unless ``body`` has the shape the ``fmt``
    request converters read."""
    need(body, "body", "object")
    CHECKS[fmt](body)
