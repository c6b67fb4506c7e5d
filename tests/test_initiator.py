"""x-initiator: who started the request (table-tested, pure)."""

from __future__ import annotations

import pytest

from tokn.initiator import has_image, initiator_for

SYS = {"role": "system", "content": "be brief"}
USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}
CHAT_TOOL_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
CHAT_TOOL = {"role": "tool", "tool_call_id": "c1", "content": "42"}
A_TOOL_USE = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}
A_TOOL_RESULT = {"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}
A_TOOL_RESULT_REMINDER = {"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
    {"type": "text", "text": "<system-reminder>todo list is empty</system-reminder>"}]}
A_TOOL_RESULT_AND_TEXT = {"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
    {"type": "text", "text": "now also fix the tests"}]}
A_USER_BLOCKS = {"role": "user", "content": [{"type": "text", "text": "hi"}]}

CASES = [
    # (fmt, body, inbound header, mode, expected, label)
    ("chat", {"messages": [SYS, USER]}, None, "auto", "user", "chat first user turn"),
    ("chat", {"messages": [USER, ASSISTANT, USER]}, None, "auto", "user",
     "chat new user turn after an answer (history has assistant)"),
    ("chat", {"messages": [USER, CHAT_TOOL_CALL, CHAT_TOOL]}, None, "auto", "agent",
     "chat tool result last"),
    ("chat", {"messages": [USER, ASSISTANT]}, None, "auto", "agent", "chat assistant last"),
    ("chat", {"messages": [USER, CHAT_TOOL_CALL, CHAT_TOOL, SYS]}, None, "auto", "agent",
     "chat trailing system message skipped"),
    ("chat", {"messages": [{"role": "developer", "content": "x"}]}, None, "auto", "user",
     "chat only developer message"),
    ("chat", {"messages": []}, None, "auto", "user", "chat empty"),
    ("chat", {}, None, "auto", "user", "chat no messages"),
    ("messages", {"system": "s", "messages": [A_USER_BLOCKS]}, None, "auto", "user",
     "anthropic user blocks"),
    ("messages", {"messages": [USER, A_TOOL_USE, A_TOOL_RESULT]}, None, "auto", "agent",
     "anthropic tool_result only"),
    ("messages", {"messages": [USER, A_TOOL_USE, A_TOOL_RESULT_REMINDER]}, None, "auto",
     "agent", "anthropic tool_result + system reminder"),
    ("messages", {"messages": [USER, A_TOOL_USE, A_TOOL_RESULT_AND_TEXT]}, None, "auto",
     "user", "anthropic tool_result + real user text"),
    ("messages", {"messages": [USER, A_TOOL_USE]}, None, "auto", "agent",
     "anthropic assistant prefill last"),
    ("responses", {"input": "hello"}, None, "auto", "user", "responses string input"),
    ("responses", {"input": [{"role": "user", "content": "hi"}]}, None, "auto", "user",
     "responses easy message"),
    ("responses", {"input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "42"}]}, None, "auto",
     "agent", "responses function_call_output last"),
    ("responses", {"input": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                              "text": "x"}]}]},
     None, "auto", "agent", "responses assistant last"),
    ("responses", {"input": [{"type": "function_call_output", "call_id": "c", "output": "1"},
                             {"type": "message", "role": "user",
                              "content": [{"type": "input_text", "text": "thanks"}]}]},
     None, "auto", "user", "responses user after tool output"),
    ("responses", {"input": [{"role": "user", "content": "x"},
                             {"role": "developer", "content": "y"}]}, None, "auto", "user",
     "responses developer skipped"),
    ("embeddings", {"input": "text"}, None, "auto", "user", "embeddings"),
    ("gemini", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, None, "auto",
     "user", "gemini user text"),
    ("gemini", {"contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     None, "auto", "agent", "gemini function responses last"),
    ("gemini", {"contents": [
        {"role": "user", "parts": [{"function_response": {"name": "f", "response": {}}},
                                   {"text": "and now?"}]}]},
     None, "auto", "user", "gemini function response + real text"),
    ("gemini", {"contents": [{"role": "model", "parts": [{"text": "x"}]}]}, None, "auto",
     "agent", "gemini model turn last"),
    # header and mode precedence
    ("chat", {"messages": [USER]}, "agent", "auto", "agent", "inbound header agent wins"),
    ("chat", {"messages": [USER, ASSISTANT]}, "user", "auto", "user", "inbound header user"),
    ("chat", {"messages": [USER, ASSISTANT]}, " Agent ", "always_user", "agent",
     "header beats mode"),
    ("chat", {"messages": [USER, ASSISTANT]}, "bogus", "auto", "agent",
     "invalid header ignored"),
    ("chat", {"messages": [USER, ASSISTANT]}, None, "always_user", "user", "always_user"),
    ("chat", {"messages": [USER]}, None, "always_agent", "agent", "always_agent"),
]


@pytest.mark.parametrize(("fmt", "body", "header", "mode", "expected"),
                         [c[:5] for c in CASES], ids=[c[5] for c in CASES])
def test_initiator_table(fmt, body, header, mode, expected):
    assert initiator_for(fmt, body, header, mode) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ([{"role": "user", "content": [{"type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,AA"}}]}], True),
    ([{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}], True),
    ([{"type": "message", "role": "user",
       "content": [{"type": "input_image", "image_url": "data:x"}]}], True),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {}}]}]}], True),
    ([{"role": "user", "content": "an image_url in text"}], False),
    ([{"role": "user", "content": [{"type": "text", "text": "image"}]}], False),
    (None, False),
])
def test_has_image(value, expected):
    assert has_image(value) is expected
