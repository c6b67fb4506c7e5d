"""The converters' error boundary: a malformed request body raises exactly one
kind of error, :class:`ConversionError`, with a message naming the field;
anything else escaping a converter would be a bug (and a 500 at the listener).

Bodies of many shapes are produced by replacing or deleting one node of
realistic request bodies (including real Claude Code and Codex captures) with
arbitrary JSON.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokn.convert import FORMATS, convert_request
from tokn.convert.tokens import count_tokens
from tokn.errors import ConversionError
from tokn.providers.kiro.request import build_request

AGENT_BODIES = Path(__file__).parent / "agent_bodies"

CHAT = {
    "model": "gpt-4.1", "max_tokens": 100, "temperature": 0.5, "stop": ["END"],
    "reasoning_effort": "low", "user": "u1", "stream": True,
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "Out", "schema": {"type": "object"}}},
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                 "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "https://i"}}]},
        {"role": "assistant", "content": "ok", "reasoning_content": "r",
         "reasoning_signature": "sig",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ],
}
MESSAGES = {
    "model": "claude-sonnet-4-5", "max_tokens": 100, "stop_sequences": ["X"],
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "metadata": {"user_id": "u"}, "tool_choice": {"type": "auto"},
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image", "source": {"type": "base64",
                                                                  "media_type": "image/png",
                                                                  "data": "AAAA"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "redacted_thinking", "data": "d"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": "r"}]}]},
    ],
}
RESPONSES = {
    "model": "gpt-5", "instructions": "sys", "max_output_tokens": 100,
    "reasoning": {"effort": "low"}, "text": {"format": {"type": "json_object"}},
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
              {"type": "namespace", "name": "ns", "description": "d",
               "tools": [{"type": "function", "name": "g", "parameters": {}}]}],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"type": "function_call", "call_id": "c2", "namespace": "ns", "name": "g",
         "arguments": "{}"},
    ],
}


def _agent(name: str) -> dict[str, Any]:
    return json.loads((AGENT_BODIES / name).read_text())["body"]


BASES = [("chat", CHAT), ("messages", MESSAGES), ("responses", RESPONSES),
         ("messages", _agent("claude_code_turn2.json")),
         ("messages", _agent("claude_code_title.json")),
         ("responses", _agent("codex_turn2.json"))]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PASSED_THROUGH = ("input_schema", "parameters", "schema")  # the upstream checks these
PATHS = [[p for p in _paths(body) if p and not any(k in PASSED_THROUGH for k in p[:-1])]
         for _, body in BASES]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=5,
)


def _mutate(body: dict[str, Any], path: tuple, value: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def _convert_all(fmt: str, body: dict[str, Any]) -> None:
    for dst in FORMATS:
        if dst != fmt:
            try:
                convert_request(fmt, dst, body)
            except ConversionError as exc:
                assert exc.status == 400 and "`" in exc.message  # names the field
    try:
        count_tokens(body, fmt)
    except ConversionError:
        pass
    if fmt == "chat":
        try:
            build_request(body, model_id="auto", profile_arn=None)
        except ConversionError:
            pass


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), json_value, st.booleans())
def test_any_malformed_body_raises_only_conversion_error(data, value, delete):
    i = data.draw(st.integers(0, len(BASES) - 1))
    path = data.draw(st.sampled_from(PATHS[i]))
    fmt, body = BASES[i]
    _convert_all(fmt, _mutate(body, path, value, delete))


@pytest.mark.parametrize("fmt,body", [(f, b) for f, b in BASES])
def test_the_base_bodies_convert(fmt, body):
    for dst in FORMATS:
        convert_request(fmt, dst, body)


@pytest.mark.parametrize("fmt,body,message", [
    ("chat", {"model": "m"}, "`messages` is required"),
    ("chat", {"model": "m", "messages": "hi"}, "`messages` must be an array, not a string"),
    ("chat", {"model": "m", "messages": []}, "`messages` must not be empty"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": 5}]},
     "`messages[0].content` must be a string or an array, not a number"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": None}}]}]},
     "`messages[0].content[0].image_url.url` must be a string, not null"),  # property test
    ("chat", {"model": "m", "messages": [{"content": "x"}]},
     "`messages[0].role` must be a string, not null"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}],
              "max_tokens": "lots"}, "`max_tokens` must be a number, not a string"),
    ("messages", {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
     "`messages[0].content[0].type` must be a string, not null"),
    ("messages", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                  "thinking": {"type": "enabled", "budget_tokens": "big"}},
     "`thinking.budget_tokens` must be a number, not a string"),
    ("responses", {"model": "m"}, "`input` is required (tokn keeps no conversation state"),
    ("responses", {"model": "m", "input": [{"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": 7}]}]},
     "`input[0].content[0].text` must be a string, not a number"),
    ("responses", {"model": "m", "input": [{"type": "reasoning", "summary": [],
                                            "content": "0"}]},
     "`input[0].content` must be an array, not a string"),  # found by the property test
    ("responses", {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]},
     "`input[0]` is an item_reference (to a stored item): tokn keeps no conversation state"),
    ("responses", {"model": "m", "previous_response_id": "resp_1", "input": "and then?"},
     "`previous_response_id` names a stored response: tokn keeps no conversation state"),
    ("gemini", {"model": "m", "contents": "hi"}, "`contents` must be an array, not a string"),
    ("gemini", {"model": "m", "contents": [{"role": "user", "parts": [{"text": 5}]}]},
     "`contents[0].parts[0].text` must be a string, not a number"),
])
def test_messages_name_the_field(fmt, body, message):
    dst = "chat" if fmt != "chat" else "messages"
    with pytest.raises(ConversionError) as info:
        convert_request(fmt, dst, body)
    assert message in info.value.message
