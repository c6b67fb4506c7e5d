"""Codex's "Responses lite" requests (its default models, 0.147+): ``tools: []``
and the tools in an ``additional_tools`` input item. Behind a chat or Anthropic
upstream they are the request's tools, and the model's calls of them go back
as the items Codex runs (``custom_tool_call`` for its freeform ``exec``,
``function_call`` with ``namespace`` for a namespaced tool). The item shape is
the one the real CLI sends (``agent_bodies/codex_lite_turn*.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.convert.test_streams import ch, chat_sse, chunk, events, run
from tokn.convert import convert_request, convert_response, response_hints
from tokn.errors import ConversionError

BODIES = Path(__file__).parent / "agent_bodies"
CUSTOM_SCHEMA = {"type": "object", "properties": {"input": {"type": "string"}},
                 "required": ["input"], "additionalProperties": False}
JS = 'const r = await tools.exec_command({cmd: "echo hi"});\ntext(r.output);'


def _lite(*history: dict, extra: list[dict] | None = None) -> dict:
    """A lite request the way Codex sends it, trimmed to a few tools."""
    tools = [
        {"type": "namespace", "name": "functions", "description": "", "tools": [
            {"type": "custom", "name": "exec", "description": "Run JavaScript.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "function", "name": "wait", "description": "Wait on a cell.",
             "strict": False, "parameters": {"type": "object", "properties": {
                 "cell_id": {"type": "string"}}, "required": ["cell_id"]}}]},
        {"type": "namespace", "name": "clock", "description": "Time tools.", "tools": [
            {"type": "function", "name": "sleep", "parameters": {"type": "object", "properties": {
                "duration_ms": {"type": "number"}}}}]},
        *(extra or [])]
    return {"model": "gpt-6.2-sol", "stream": True, "tools": [], "tool_choice": "auto",
            "parallel_tool_calls": False,
            "input": [{"type": "additional_tools", "id": "at_1", "role": "developer",
                       "tools": tools},
                      {"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "Use your shell."}]},
                      *history]}


HISTORY = (
    {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "exec",
     "input": JS, "status": "completed"},
    {"type": "custom_tool_call_output", "call_id": "call_1",
     "output": [{"type": "input_text", "text": "Script completed"}]},
    {"type": "function_call", "call_id": "call_2", "namespace": "clock", "name": "sleep",
     "arguments": '{"duration_ms": 5}'},
    {"type": "function_call_output", "call_id": "call_2", "output": "slept"},
)


def test_lite_tools_become_chat_function_tools():
    chat = convert_request("responses", "chat", _lite())
    tools = {t["function"]["name"]: t["function"] for t in chat["tools"]}
    assert list(tools) == ["exec", "wait", "clock__sleep"]
    # the freeform tool takes one string; its grammar is told in the description
    assert tools["exec"]["parameters"] == CUSTOM_SCHEMA
    assert "start: /.+/" in tools["exec"]["description"]
    assert tools["wait"]["parameters"]["required"] == ["cell_id"]
    assert tools["clock__sleep"]["description"].startswith("[clock: Time tools.]")
    assert chat["tool_choice"] == "auto"
    # the tools item is not a message
    assert [m["role"] for m in chat["messages"]] == ["user"]


def test_lite_history_calls_use_the_same_chat_names():
    chat = convert_request("responses", "chat", _lite(*HISTORY))
    calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
             for m in chat["messages"] for c in m.get("tool_calls") or []]
    assert calls == [("call_1", "exec", {"input": JS}),
                     ("call_2", "clock__sleep", {"duration_ms": 5})]
    assert [(m["tool_call_id"], m["content"]) for m in chat["messages"]
            if m["role"] == "tool"] == [("call_1", "Script completed"), ("call_2", "slept")]
    # a call spelled with the default namespace names the same chat tool
    spelled = {**HISTORY[0], "type": "function_call", "namespace": "functions", "name": "wait",
               "arguments": "{}"}
    chat = convert_request("responses", "chat", _lite(spelled))
    assert chat["messages"][-1]["tool_calls"][0]["function"]["name"] == "wait"


def test_lite_tools_reach_an_anthropic_upstream():
    out = convert_request("responses", "messages", _lite(*HISTORY))
    tools = {t["name"]: t for t in out["tools"]}
    assert list(tools) == ["exec", "wait", "clock__sleep"]
    assert tools["exec"]["input_schema"] == CUSTOM_SCHEMA
    uses = [(b["id"], b["name"], b["input"]) for m in out["messages"] for b in m["content"]
            if b["type"] == "tool_use"]
    assert uses == [("call_1", "exec", {"input": JS}), ("call_2", "clock__sleep",
                                                         {"duration_ms": 5})]


def test_tools_in_both_places_and_a_resent_item_count_once():
    body = _lite(extra=[{"type": "function", "name": "top", "parameters": {}}])
    body["tools"] = [{"type": "function", "name": "first", "parameters": {}}]
    body["input"].append(dict(body["input"][0], id="at_2"))  # resent unchanged
    chat = convert_request("responses", "chat", body)
    assert [t["function"]["name"] for t in chat["tools"]] == \
        ["first", "exec", "wait", "clock__sleep", "top"]


def test_hosted_tools_in_the_item_are_left_out_and_said(caplog):
    body = _lite(extra=[{"type": "web_search", "external_web_access": False}])
    with caplog.at_level("INFO", logger="tokn.convert"):
        chat = convert_request("responses", "chat", body)
    assert "web_search" in caplog.text
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec", "wait", "clock__sleep"]


def test_a_malformed_tools_item_is_a_conversion_error():
    body = _lite()
    body["input"][0]["tools"] = [{"type": "function", "name": 7}]
    with pytest.raises(ConversionError, match=r"input\[0\]\.tools\[0\]\.name"):
        convert_request("responses", "chat", body)


def _hints(upstream: str = "chat"):
    return response_hints("responses", _lite(), upstream)


def test_chat_calls_go_back_as_the_items_codex_runs():
    answer = {"id": "c", "model": "gpt-5", "choices": [{"index": 0, "finish_reason": "tool_calls",
              "message": {"role": "assistant", "content": None, "tool_calls": [
                  {"id": "call_a", "type": "function", "function": {
                      "name": "exec", "arguments": json.dumps({"input": JS})}},
                  {"id": "call_b", "type": "function", "function": {
                      "name": "wait", "arguments": '{"cell_id": "1"}'}},
                  {"id": "call_c", "type": "function", "function": {
                      "name": "clock__sleep", "arguments": '{"duration_ms": 5}'}}]}}]}
    out = convert_response("chat", "responses", answer, hints=_hints())
    got = [(i["type"], i.get("namespace"), i["name"], i["call_id"]) for i in out["output"]]
    assert got == [("custom_tool_call", None, "exec", "call_a"),
                   ("function_call", None, "wait", "call_b"),
                   ("function_call", "clock", "sleep", "call_c")]
    assert out["output"][0]["input"] == JS
    assert out["output"][2]["arguments"] == '{"duration_ms": 5}'


def test_anthropic_tool_use_goes_back_as_a_custom_tool_call():
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
              "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1},
              "content": [{"type": "tool_use", "id": "toolu_1", "name": "exec",
                           "input": {"input": JS}}]}
    out = convert_response("messages", "responses", answer, hints=_hints("messages"))
    assert [(i["type"], i["name"], i["input"]) for i in out["output"]] == \
        [("custom_tool_call", "exec", JS)]


def test_streamed_calls_go_back_as_the_items_codex_runs():
    args = json.dumps({"input": JS})
    raw = chat_sse(
        chunk(ch(role="assistant", tool_calls=[{"index": 0, "id": "call_a", "type": "function",
                                                 "function": {"name": "exec", "arguments": ""}}])),
        chunk(ch(tool_calls=[{"index": 0, "function": {"arguments": args[:9]}}])),
        chunk(ch(tool_calls=[{"index": 0, "function": {"arguments": args[9:]}}])),
        chunk(ch(tool_calls=[{"index": 1, "id": "call_c", "type": "function", "function": {
            "name": "clock__sleep", "arguments": '{"duration_ms": 5}'}}])),
        chunk(ch(finish="tool_calls")))
    _, out = run("chat", "responses", raw, pieces=5, hints=_hints())
    evs = events(out)
    done = [d["item"] for e, d in evs if e == "response.output_item.done"]
    assert [(i["type"], i.get("namespace"), i["name"]) for i in done] == \
        [("custom_tool_call", None, "exec"), ("function_call", "clock", "sleep")]
    assert done[0]["input"] == JS
    # the freeform input streams as custom tool input deltas, not JSON arguments
    deltas = "".join(d["delta"] for e, d in evs
                     if e == "response.custom_tool_call_input.delta")
    assert deltas == JS
    final = [d["response"] for e, d in evs if e == "response.completed"][0]
    assert [i["name"] for i in final["output"]] == ["exec", "sleep"]


@pytest.mark.parametrize("upstream", ["chat", "messages"])
def test_the_captured_lite_turns_keep_their_tools(upstream):
    for path in sorted(BODIES.glob("codex_lite_turn*.json")):
        body = json.loads(path.read_text())["body"]
        assert not body.get("tools")  # the CLI sends none at the top level
        out = convert_request("responses", upstream, body)
        names = [t["function"]["name"] if upstream == "chat" else t["name"]
                 for t in out["tools"]]
        assert names[:2] == ["exec", "wait"] and "collaboration__spawn_agent" in names


def test_hosted_tool_calls_in_the_input_are_left_out_and_said(caplog):
    body = {"model": "gpt-5", "input": [
        {"type": "message", "role": "user", "content": "find it"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "role": "assistant", "content": "found"}]}
    with caplog.at_level("INFO", logger="tokn.convert"):
        chat = convert_request("responses", "chat", body)
    assert "left out: web_search_call" in caplog.text
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
