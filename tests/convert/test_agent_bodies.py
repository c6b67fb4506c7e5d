"""Real agent request bodies (``agent_bodies/``: Claude Code 2.1.197 and Codex
0.171.0, captured from the real CLIs on loopback) converted to every other
format: nothing the upstream format can carry is lost.

What an upstream format cannot carry is listed per direction (``LOST``): a
top-level field outside the mapped ones and that list fails here, so a new
agent field is never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tokn.convert import Dialect, convert_request
from tokn.convert.tools import chat_tool_name

BODIES = Path(__file__).parent / "agent_bodies"
CLAUDE = sorted(BODIES.glob("claude_code_*.json"))
CODEX = sorted(BODIES.glob("codex_*.json"))
# The richest chat upstream: OpenRouter's breakpoints and reasoning_details plus
# OpenAI's prompt_cache_key and verbosity; what a plainer upstream drops is
# decided by its dialect (golden tests pin each).
RICH_CHAT = Dialect(cache_control="parts", prompt_cache_key=True, verbosity=True,
                    reasoning_details=True)
RESPONSES = Dialect(prompt_cache_key=True, verbosity=True)

# Top-level fields with no equivalent in the target format (documented in the README).
LOST = {
    ("messages", "chat"): {"context_management"},
    ("messages", "responses"): {"context_management"},
    ("responses", "chat"): {"include", "store", "client_metadata"},
    ("responses", "messages"): {"include", "store", "client_metadata", "prompt_cache_key",
                                "parallel_tool_calls"},
}


def _body(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())["body"]


def _texts(blocks: Any) -> list[str]:
    if isinstance(blocks, str):
        return [blocks] if blocks.strip() else []
    out = []
    for b in blocks or []:
        if isinstance(b, str):
            out.append(b)
        elif b.get("type") in ("text", "input_text", "output_text") and b.get("text", "").strip():
            out.append(b["text"])
        elif b.get("type") == "tool_result":
            out += _texts(b.get("content"))
    return out


def _all_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _args(arguments: Any) -> Any:
    return json.loads(arguments) if isinstance(arguments, str) else arguments


# --- Claude Code -------------------------------------------------------------------------


def _claude_facts(body: dict[str, Any]) -> dict[str, Any]:
    texts, calls, results, thinking = [], {}, {}, []
    for b in body["system"]:
        texts += _texts([b])
    for m in body["messages"]:
        texts += _texts(m["content"])
        for b in m["content"] if isinstance(m["content"], list) else []:
            if b["type"] == "tool_use":
                calls[b["id"]] = (b["name"], b["input"])
            elif b["type"] == "tool_result":
                results[b["tool_use_id"]] = b["content"]
            elif b["type"] in ("thinking", "redacted_thinking"):
                thinking.append(b)
    tools = {t["name"]: t["input_schema"] for t in body["tools"]}
    marks = _all_text(body["system"]).count("cache_control") + \
        _all_text(body["messages"]).count("cache_control")
    return {"texts": texts, "calls": calls, "results": results, "thinking": thinking,
            "tools": tools, "marks": marks}


@pytest.mark.parametrize("path", CLAUDE, ids=lambda p: p.stem)
def test_claude_code_to_chat_keeps_everything_chat_can_carry(path):
    body = _body(path)
    facts = _claude_facts(body)
    chat = convert_request("messages", "chat", body, dialect=RICH_CHAT)
    blob = _all_text(chat["messages"])
    for text in facts["texts"]:
        assert json.dumps(text, ensure_ascii=False)[1:-1] in blob
    calls = {c["id"]: (c["function"]["name"], _args(c["function"]["arguments"]))
             for m in chat["messages"] for c in m.get("tool_calls") or []}
    assert calls == facts["calls"]
    results = {m["tool_call_id"]: m["content"] for m in chat["messages"] if m["role"] == "tool"}
    assert {k: _texts(v) for k, v in results.items()} == \
        {k: _texts(v) for k, v in facts["results"].items()}
    details = [d for m in chat["messages"] for d in m.get("reasoning_details") or []]
    assert [(d.get("text"), d.get("signature"), d.get("data")) for d in details] == \
        [(b.get("thinking"), b.get("signature"), b.get("data")) for b in facts["thinking"]]
    assert {t["function"]["name"]: t["function"]["parameters"] for t in chat.get("tools", [])} == \
        facts["tools"]
    assert _all_text(chat).count("cache_control") == facts["marks"]
    meta = json.loads(body["metadata"]["user_id"])
    assert chat["user"] == body["metadata"]["user_id"]
    assert chat["prompt_cache_key"] == meta["session_id"]
    assert chat["max_tokens"] == body["max_tokens"] and chat["stream"] is True
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        assert chat["response_format"]["json_schema"]["schema"] == fmt["schema"]
    if body["thinking"]["type"] == "adaptive":
        assert chat["reasoning_effort"] == body["output_config"]["effort"]
    assert set(body) - {"model", "messages", "system", "tools", "metadata", "max_tokens",
                        "thinking", "output_config", "stream"} <= LOST[("messages", "chat")]

    back = convert_request("chat", "messages", chat)  # and back to an Anthropic upstream
    assert _claude_facts({**back, "system": back["system"],
                          "tools": back.get("tools", [])})["thinking"] == facts["thinking"]
    assert _claude_facts({**back, "tools": back.get("tools", [])})["calls"] == facts["calls"]


@pytest.mark.parametrize("path", CLAUDE, ids=lambda p: p.stem)
def test_claude_code_to_responses_keeps_everything_responses_can_carry(path):
    body = _body(path)
    facts = _claude_facts(body)
    out = convert_request("messages", "responses", body, dialect=RESPONSES)
    blob = _all_text(out)
    for text in facts["texts"]:
        assert json.dumps(text, ensure_ascii=False)[1:-1] in blob
    calls = {i["call_id"]: (i["name"], _args(i["arguments"])) for i in out["input"]
             if i["type"] == "function_call"}
    assert calls == facts["calls"]
    outputs = {i["call_id"] for i in out["input"] if i["type"] == "function_call_output"}
    assert outputs == set(facts["results"])
    assert {t["name"]: t["parameters"] for t in out.get("tools", [])} == facts["tools"]
    assert out["prompt_cache_key"] == json.loads(body["metadata"]["user_id"])["session_id"]
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        assert out["text"]["format"]["schema"] == fmt["schema"]


# --- Codex -------------------------------------------------------------------------------


def _codex_facts(body: dict[str, Any]) -> dict[str, Any]:
    texts, calls, outputs, reasoning = [], {}, {}, []
    for item in body["input"]:
        if item["type"] == "message":
            texts += _texts(item["content"])
        elif item["type"] == "function_call":
            calls[item["call_id"]] = (chat_tool_name(item.get("namespace"), item["name"]),
                                      _args(item["arguments"]))
        elif item["type"] == "custom_tool_call":
            calls[item["call_id"]] = (item["name"], {"input": item["input"]})
        elif item["type"] in ("function_call_output", "custom_tool_call_output"):
            out = item["output"]
            outputs[item["call_id"]] = out if isinstance(out, str) else \
                "\n".join(p["text"] for p in out)
        elif item["type"] == "reasoning":
            reasoning += [s["text"] for s in item["summary"]]
    # Codex's default models ("Responses lite") send `tools: []` and their tools
    # in an `additional_tools` input item: both are the request's tools
    declared = [*body.get("tools", []), *(t for i in body["input"]
                                          if i["type"] == "additional_tools" for t in i["tools"])]
    tools, hosted = {}, []

    def add(t: dict[str, Any], namespace: str | None) -> None:
        schema = t["parameters"] if t["type"] == "function" else \
            {"type": "object", "properties": {"input": {"type": "string"}},
             "required": ["input"], "additionalProperties": False}
        tools[chat_tool_name(namespace, t["name"])] = schema

    for t in declared:
        if t["type"] in ("function", "custom"):
            add(t, None)
        elif t["type"] == "namespace":
            for m in t["tools"]:
                add(m, t["name"])
        else:
            hosted.append(t["type"])
    return {"texts": texts, "calls": calls, "outputs": outputs, "reasoning": reasoning,
            "tools": tools, "hosted": hosted}


@pytest.mark.parametrize("path", CODEX, ids=lambda p: p.stem)
def test_codex_to_chat_keeps_everything_chat_can_carry(path, caplog):
    body = _body(path)
    facts = _codex_facts(body)
    with caplog.at_level("INFO", logger="tokn.convert"):
        chat = convert_request("responses", "chat", body, dialect=RICH_CHAT)
    blob = _all_text(chat["messages"])
    for text in facts["texts"]:
        assert json.dumps(text, ensure_ascii=False)[1:-1] in blob
    assert [m["role"] for m in chat["messages"] if m["role"] in ("developer", "system")] == \
        [i["role"] for i in body["input"] if i["type"] == "message" and i["role"] == "developer"]
    calls = {c["id"]: (c["function"]["name"], _args(c["function"]["arguments"]))
             for m in chat["messages"] for c in m.get("tool_calls") or []}
    assert calls == facts["calls"]
    assert {m["tool_call_id"]: m["content"] for m in chat["messages"]
            if m["role"] == "tool"} == facts["outputs"]
    assert "".join(m.get("reasoning_content", "") for m in chat["messages"]) == \
        "".join(facts["reasoning"])
    assert facts["tools"]  # every captured Codex turn offers tools
    assert {t["function"]["name"]: t["function"]["parameters"] for t in chat.get("tools", [])} == \
        facts["tools"]
    for kind in facts["hosted"]:  # hosted tools cannot run behind chat: left out, and said
        assert kind in caplog.text
    assert chat["prompt_cache_key"] == body["prompt_cache_key"]
    assert chat["tool_choice"] == body["tool_choice"]
    assert chat["parallel_tool_calls"] == body["parallel_tool_calls"]
    if (body.get("reasoning") or {}).get("effort"):
        assert chat["reasoning_effort"] == body["reasoning"]["effort"]
    if (body.get("text") or {}).get("verbosity"):
        assert chat["verbosity"] == body["text"]["verbosity"]
    assert set(body) - {"model", "input", "tools", "tool_choice", "parallel_tool_calls",
                        "reasoning", "prompt_cache_key", "stream", "text", "instructions"} \
        <= LOST[("responses", "chat")]


@pytest.mark.parametrize("path", CODEX, ids=lambda p: p.stem)
def test_codex_to_messages_keeps_everything_messages_can_carry(path):
    body = _body(path)
    facts = _codex_facts(body)
    out = convert_request("responses", "messages", body)
    blob = _all_text(out)
    for text in facts["texts"]:
        assert json.dumps(text, ensure_ascii=False)[1:-1] in blob
    calls = {b["id"]: (b["name"], b["input"]) for m in out["messages"]
             for b in m["content"] if b["type"] == "tool_use"}
    assert calls == facts["calls"]
    results = {b["tool_use_id"]: b["content"] for m in out["messages"] for b in m["content"]
               if b["type"] == "tool_result"}
    assert results == facts["outputs"]
    assert facts["tools"]
    assert {t["name"]: t["input_schema"] for t in out.get("tools", [])} == facts["tools"]
    if (body.get("reasoning") or {}).get("effort"):
        assert out["thinking"]["type"] == "enabled"
    assert set(body) - {"model", "input", "tools", "tool_choice", "reasoning", "stream",
                        "text", "instructions"} <= LOST[("responses", "messages")]
