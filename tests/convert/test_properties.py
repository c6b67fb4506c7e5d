"""Property tests: request round trips through the chat hub, stream == non-stream."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokn.convert import convert_request, convert_response, stream_converter
from tokn.sse import SSEParser

# Anthropic rejects whitespace-only text blocks (converters leave them out), so
# the round trips are over text with something in it.
text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    str.strip)
tool_id = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-", min_size=1, max_size=12)
name = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(name, c, max_size=3),
    max_leaves=6,
)
args = st.dictionaries(name, json_value, max_size=3)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def anthropic_requests(draw):
    tools = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": name,
                    "description": text,
                    "input_schema": st.just({"type": "object", "properties": {}}),
                }
            ),
            max_size=3,
        )
    )
    messages = [{"role": "user", "content": [{"type": "text", "text": draw(text)}]}]
    for _ in range(draw(st.integers(0, 3))):
        blocks = [{"type": "text", "text": draw(text)}] if draw(st.booleans()) else []
        ids = draw(st.lists(tool_id, max_size=3, unique=True))
        blocks += [
            {"type": "tool_use", "id": i, "name": draw(name), "input": draw(args)} for i in ids
        ]
        if not blocks:
            blocks = [{"type": "text", "text": draw(text)}]
        messages.append({"role": "assistant", "content": blocks})
        reply = [{"type": "tool_result", "tool_use_id": i, "content": draw(text)} for i in ids]
        reply += [{"type": "text", "text": draw(text)}] if draw(st.booleans()) or not ids else []
        messages.append({"role": "user", "content": reply})
    body = {"model": "claude-x", "max_tokens": draw(st.integers(1, 5000)), "messages": messages}
    if draw(st.booleans()):
        body["system"] = draw(text)
    if tools:
        body["tools"] = tools
    return body


@SETTINGS
@given(anthropic_requests())
def test_messages_chat_messages_roundtrip(body):
    back = convert_request("chat", "messages", convert_request("messages", "chat", body))
    assert back["messages"] == body["messages"]
    assert back.get("system") == body.get("system")
    assert back.get("tools") == body.get("tools")
    assert back["max_tokens"] == body["max_tokens"]


@st.composite
def responses_requests(draw):
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": draw(text)}]}
    ]
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": draw(text)}],
                }
            )
        ids = draw(st.lists(tool_id, max_size=3, unique=True))
        items += [
            {
                "type": "function_call",
                "call_id": i,
                "name": draw(name),
                "arguments": json.dumps(draw(args)),
            }
            for i in ids
        ]
        items += [{"type": "function_call_output", "call_id": i, "output": draw(text)} for i in ids]
        items.append(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": draw(text)}],
            }
        )
    tools = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "name": name,
                    "description": text,
                    "parameters": st.just({"type": "object", "properties": {}}),
                }
            ),
            max_size=3,
        )
    )
    body = {"model": "gpt-5", "input": items}
    if draw(st.booleans()):
        body["instructions"] = draw(text)
    if tools:
        body["tools"] = tools
    return body


@SETTINGS
@given(responses_requests())
def test_responses_chat_responses_roundtrip(body):
    back = convert_request("chat", "responses", convert_request("responses", "chat", body))
    assert back["input"] == body["input"]
    assert back.get("instructions") == body.get("instructions")
    assert back.get("tools") == body.get("tools")


# --- stream vs non-stream ------------------------------------------------------


@st.composite
def chat_answers(draw):
    reasoning = draw(st.one_of(st.none(), text))
    content = draw(st.one_of(st.none(), text))
    calls = [
        {"id": f"call_{i}", "name": draw(name), "args": json.dumps(draw(args))}
        for i in range(draw(st.integers(0, 3)))
    ]
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    return reasoning, content, calls, finish


def _pieces(draw_cuts, s):
    cuts = sorted(set(c % (len(s) + 1) for c in draw_cuts))
    bounds = [0, *cuts, len(s)]
    return [s[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _as_chat(answer, cuts):
    reasoning, content, calls, finish = answer
    usage = {
        "prompt_tokens": 40,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    msg = {"role": "assistant", "content": content}
    if reasoning:
        msg["reasoning_content"] = reasoning
    if calls:
        msg["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["args"]},
            }
            for c in calls
        ]
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        "usage": usage,
    }

    def chunk(delta=None, finish_reason=None, **extra):
        choices = (
            [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        )
        return {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": choices,
            **extra,
        }

    chunks = [chunk({"role": "assistant"})]
    chunks += [chunk({"reasoning_content": p}) for p in _pieces(cuts, reasoning or "")]
    chunks += [chunk({"content": p}) for p in _pieces(cuts, content or "")]
    for i, c in enumerate(calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
            for p in _pieces(cuts, c["args"])
        ]
    chunks += [chunk({}, finish), chunk(usage=usage)]
    raw = (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )
    return body, raw


def _events(raw):
    p = SSEParser()
    return [(e.event, json.loads(e.data)) for e in p.feed(raw) + p.close()]


def _accumulate_anthropic(raw):
    msg, blocks, bufs = None, [], {}
    for name, d in _events(raw):
        if name == "message_start":
            msg = d["message"]
        elif name == "content_block_start":
            blocks.append(dict(d["content_block"]))
        elif name == "content_block_delta":
            b, delta = blocks[d["index"]], d["delta"]
            if delta["type"] == "input_json_delta":
                bufs[d["index"]] = bufs.get(d["index"], "") + delta["partial_json"]
            else:
                key = "text" if delta["type"] == "text_delta" else "thinking"
                b[key] += delta[key]
        elif name == "message_delta":
            msg = {**msg, **d["delta"], "usage": d["usage"]}
    for i, buf in bufs.items():
        blocks[i]["input"] = json.loads(buf)
    return {**msg, "content": blocks}


@SETTINGS
@given(chat_answers(), st.lists(st.integers(0, 200), max_size=4))
def test_chat_stream_to_messages_equals_nonstream(answer, cuts):
    body, raw = _as_chat(answer, cuts)
    conv = stream_converter("chat", "messages")
    streamed = _accumulate_anthropic(conv.feed(raw) + conv.close())
    whole = convert_response("chat", "messages", body)
    for key in ("content", "stop_reason", "usage", "model"):
        assert streamed[key] == whole[key], key


@SETTINGS
@given(chat_answers(), st.lists(st.integers(0, 200), max_size=4))
def test_chat_stream_to_responses_equals_nonstream(answer, cuts):
    body, raw = _as_chat(answer, cuts)
    conv = stream_converter("chat", "responses")
    final = _events(conv.feed(raw) + conv.close())[-1][1]["response"]
    whole = convert_response("chat", "responses", body)

    def strip(items):
        return [{k: v for k, v in i.items() if k != "id"} for i in items]

    assert strip(final["output"]) == strip(whole["output"])
    assert final["status"] == whole["status"] and final["usage"] == whole["usage"]
