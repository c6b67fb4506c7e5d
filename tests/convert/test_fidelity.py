"""Conversion fidelity rules beyond the golden bodies: limits answered with a
400, notices for what cannot be carried, usage shapes, session cache keys."""

from __future__ import annotations

import logging
import re

import pytest

from tokn.convert import (
    Dialect,
    Usage,
    convert_request,
    convert_response,
    extract_usage,
    response_hints,
)
from tokn.convert.anthropic.request import session_cache_key
from tokn.errors import ConversionError

USER = [{"role": "user", "content": "hi"}]


def test_a_non_object_schema_for_a_tool_standing_in_is_a_400_naming_the_limit():
    body = {"model": "claude-sonnet-4", "messages": USER, "response_format": {
        "type": "json_schema", "json_schema": {"name": "L", "schema": {"type": "array"}}}}
    with pytest.raises(ConversionError, match="root type is 'array' cannot be served") as info:
        convert_request("chat", "messages", body)
    assert info.value.status == 400
    # with structured outputs the schema goes as it is
    out = convert_request("chat", "messages", body, dialect=Dialect(structured_output=True))
    assert out["output_config"]["format"]["schema"] == {"type": "array"}


def test_the_standing_in_tool_never_takes_a_client_tools_name():
    body = {"model": "claude-sonnet-4", "messages": USER,
            "tools": [{"type": "function", "function": {"name": "Weather"}}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "Weather", "schema": {}}}}
    out = convert_request("chat", "messages", body)
    assert [t["name"] for t in out["tools"]] == ["Weather", "Weather_output"]
    assert response_hints("chat", body, "messages").json_tool == "Weather_output"
    assert response_hints("chat", body, "messages",
                          Dialect(structured_output=True)).json_tool is None


def test_tools_no_upstream_can_run_are_left_out_with_a_notice(caplog):
    with caplog.at_level(logging.INFO, logger="tokn.convert"):
        chat = convert_request("messages", "chat", {
            "model": "m", "max_tokens": 5, "messages": USER,
            "tools": [{"type": "web_search_20250305", "name": "web_search"},
                      {"name": "f", "input_schema": {"type": "object"}}]})
        out = convert_request("responses", "chat", {
            "model": "m", "input": "hi",
            "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": []},
                      {"type": "function", "name": "g", "parameters": {}}]})
    assert [t["function"]["name"] for t in chat["tools"]] == ["f"]
    assert [t["function"]["name"] for t in out["tools"]] == ["g"]
    assert "messages tools with no equivalent upstream were left out: web_search_20250305" \
        in caplog.text
    assert "responses tools with no equivalent upstream were left out: file_search, " \
        "web_search" in caplog.text


@pytest.mark.parametrize("usage,expected", [
    ({"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 60,
      "prompt_cache_miss_tokens": 40}, Usage(40, 5, cache_read_tokens=60)),  # DeepSeek
    ({"prompt_tokens": 100, "completion_tokens": 5,
      "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30}},
     Usage(10, 5, cache_read_tokens=60, cache_write_tokens=30)),  # OpenRouter
    ({"prompt_tokens": 100, "completion_tokens": 5,
      "prompt_tokens_details": {"cached_tokens": 60}}, Usage(40, 5, cache_read_tokens=60)),
    ({"prompt_tokens": "lots", "completion_tokens": None}, Usage()),  # garbage is zero
])
def test_cache_reads_and_writes_from_each_chat_usage_shape(usage, expected):
    assert extract_usage("chat", {"usage": usage}) == expected


def test_session_cache_key_from_each_user_id_shape():
    assert session_cache_key('{"device_id":"d","session_id":"abc-1"}') == "abc-1"
    assert session_cache_key("user_aa_account_bb_session_0c2f8a3e-1111-2222-3333-444455556666") \
        == "0c2f8a3e-1111-2222-3333-444455556666"
    plain = session_cache_key("someone@example.com")
    assert plain == session_cache_key("someone@example.com") and len(plain) == 32
    assert "someone" not in plain


def test_thinking_and_breakpoints_round_trip_through_a_chat_hop():
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2000,
            "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "go",
                                              "cache_control": {"type": "ephemeral"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "a", "signature": "s1"},
                    {"type": "redacted_thinking", "data": "r1"},
                    {"type": "thinking", "thinking": "b", "signature": "s2"},
                    {"type": "text", "text": "ok"}]},
                {"role": "user", "content": [{"type": "text", "text": "next"}]}]}
    dialect = Dialect(cache_control="parts", reasoning_details=True)
    back = convert_request("chat", "messages",
                           convert_request("messages", "chat", body, dialect=dialect))
    assert back["system"] == body["system"]
    assert back["messages"] == body["messages"]


def test_a_plain_chat_upstream_gets_no_extensions():
    body = {"model": "m", "max_tokens": 5, "metadata": {"user_id": "u"},
            "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "r"}, {"type": "text", "text": "y"}]}]}
    out = convert_request("messages", "chat", body)
    text = str(out)
    for field in ("cache_control", "prompt_cache_key", "reasoning_details", "verbosity"):
        assert field not in text
    assert out["messages"][0] == {"role": "system", "content": "S"}


def test_long_or_odd_namespace_names_become_valid_function_names_that_map_back():
    ns = "mcp__codex_apps__gmail.search-service" + "x" * 40
    body = {"model": "m", "input": [
        {"type": "function_call", "call_id": "c1", "namespace": ns, "name": "_search_emails",
         "arguments": "{}"}],
        "tools": [{"type": "namespace", "name": ns, "description": "Mail.", "tools": [
            {"type": "function", "name": "_search_emails", "parameters": {}},
            {"type": "custom", "name": "compose"}]}]}
    chat = convert_request("responses", "chat", body)
    names = [t["function"]["name"] for t in chat["tools"]]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", n) for n in names)
    assert chat["messages"][0]["tool_calls"][0]["function"]["name"] == names[0]
    answer = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant",
              "tool_calls": [{"id": "c2", "function": {"name": names[0], "arguments": "{}"}},
                             {"id": "c3", "function": {"name": names[1],
                                                       "arguments": '{"input": "hi"}'}}]}}]}
    out = convert_response("chat", "responses", answer,
                           hints=response_hints("responses", body, "chat"))
    assert [(i["type"], i.get("namespace"), i["name"]) for i in out["output"]] == [
        ("function_call", ns, "_search_emails"), ("custom_tool_call", ns, "compose")]
    assert out["output"][1]["input"] == "hi"


def test_a_breakpoint_inside_a_tool_result_is_kept_as_given():
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "r", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}]}
    chat = convert_request("messages", "chat", body, dialect=Dialect(cache_control="parts"))
    assert chat["messages"][-1]["content"] == [
        {"type": "text", "text": "r", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
