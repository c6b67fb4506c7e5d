"""Stream conversion: quirks, closing, errors, pass-through, usage."""

import itertools
import json

from tokn.convert import stream_converter
from tokn.sse import SSEParser


def ids():
    n = itertools.count()
    return lambda prefix: f"{prefix}{next(n):03d}"


def chat_sse(*chunks, done=True):
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return raw + (b"data: [DONE]\n\n" if done else b"")


def chunk(*choices, usage=None, model="gpt-4o"):
    c = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": list(choices),
    }
    if usage is not None:
        c["usage"] = usage
    return c


def ch(index=0, finish=None, **delta):
    return {"index": index, "delta": delta, "finish_reason": finish}


def run(src, dst, raw, pieces=1, **kw):
    conv = stream_converter(src, dst, ids=ids(), clock=lambda: 1, **kw)
    step = max(1, len(raw) // pieces)
    out = b"".join(conv.feed(raw[i : i + step]) for i in range(0, len(raw), step)) + conv.close()
    return conv, out


def events(raw):
    p = SSEParser()
    return [
        (e.event, e.data if e.data == "[DONE]" else json.loads(e.data))
        for e in p.feed(raw) + p.close()
    ]


def anthropic_message(evs):
    """Accumulate Anthropic events the way a client does (and check the protocol)."""
    names = [e for e, _ in evs]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    msg = evs[0][1]["message"]
    blocks, open_index, json_buf = [], None, {}
    for name, data in evs[2:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            b, d = blocks[data["index"]], data["delta"]
            if d["type"] == "text_delta":
                b["text"] += d["text"]
            elif d["type"] == "thinking_delta":
                b["thinking"] += d["thinking"]
            elif d["type"] == "input_json_delta":
                json_buf[data["index"]] = json_buf.get(data["index"], "") + d["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    for i, buf in json_buf.items():
        blocks[i]["input"] = json.loads(buf)
    msg = {**msg, "content": blocks, **evs[-2][1]["delta"], "usage": evs[-2][1]["usage"]}
    return msg


TOOL_SPLIT = chat_sse(
    chunk(ch(0, role="assistant", content="")),
    chunk(ch(0, content="Let me check")),
    # Copilot: the tool call in choice 1, tool index starting at 1
    chunk(
        ch(
            1,
            tool_calls=[
                {
                    "index": 1,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get", "arguments": ""},
                }
            ],
        )
    ),
    chunk(ch(1, tool_calls=[{"index": 1, "function": {"arguments": '{"city":'}}])),
    chunk(ch(1, tool_calls=[{"index": 1, "function": {"arguments": '"Oslo"}'}}])),
    chunk(ch(0, finish="stop"), ch(1, finish="tool_calls")),
    chunk(
        usage={
            "prompt_tokens": 50,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 20},
        }
    ),
)


def test_split_choices_index_one_and_trailing_usage_to_messages():
    for pieces in (1, 7, 50):
        conv, out = run("chat", "messages", TOOL_SPLIT, pieces=pieces)
        msg = anthropic_message(events(out))
        assert msg["content"] == [
            {"type": "text", "text": "Let me check"},
            {"type": "tool_use", "id": "call_a", "name": "get", "input": {"city": "Oslo"}},
        ]
        assert msg["stop_reason"] == "tool_use"
        assert msg["usage"] == {
            "input_tokens": 30,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "output_tokens": 9,
        }
        assert conv.usage.input_tokens == 30 and conv.usage.cache_read_tokens == 20
        assert conv.usage.output_tokens == 9 and conv.model == "gpt-4o" and conv.first_output


def test_parallel_calls_args_before_name_no_finish_no_done():
    raw = chat_sse(
        chunk(ch(0, reasoning="thinking...")),
        chunk(ch(0, reasoning_content=" more")),
        chunk(ch(0, tool_calls=[{"index": 0, "function": {"arguments": '{"q":'}}])),
        chunk(ch(0, tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "search"}}])),
        chunk(ch(0, tool_calls=[{"index": 0, "function": {"arguments": "1}"}}])),
        # another call reusing index 0 with a new id (Gemini-style) and one at index 1
        chunk(
            ch(
                0,
                tool_calls=[
                    {"index": 0, "id": "call_2", "function": {"name": "a", "arguments": "{}"}}
                ],
            )
        ),
        chunk(
            ch(
                0,
                tool_calls=[
                    {"index": 1, "id": "call_3", "function": {"name": "b", "arguments": "{}"}}
                ],
            )
        ),
        done=False,
    )
    _, out = run("chat", "messages", raw)
    msg = anthropic_message(events(out))
    assert msg["content"] == [
        {"type": "thinking", "thinking": "thinking... more", "signature": ""},
        {"type": "tool_use", "id": "call_1", "name": "search", "input": {"q": 1}},
        {"type": "tool_use", "id": "call_2", "name": "a", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "b", "input": {}},
    ]
    assert msg["stop_reason"] == "tool_use"
    # thinking signatures are never invented
    assert b"signature_delta" not in out


def test_kind_changes_open_new_blocks_and_length_maps_to_max_tokens():
    raw = chat_sse(
        chunk(ch(0, reasoning_content="r1")),
        chunk(ch(0, content="t1")),
        chunk(ch(0, reasoning_content="r2")),
        chunk(ch(0, content="t2", finish="length")),
    )
    _, out = run("chat", "messages", raw)
    msg = anthropic_message(events(out))
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "thinking", "text"]
    assert msg["stop_reason"] == "max_tokens"


def test_empty_upstream_still_yields_a_complete_message():
    _, out = run("chat", "messages", b"data: [DONE]\n\n")
    msg = anthropic_message(events(out))
    assert msg["content"] == [] and msg["stop_reason"] == "end_turn"


def test_error_to_messages_midstream():
    conv = stream_converter("chat", "messages", ids=ids())
    conv.feed(chat_sse(chunk(ch(0, content="par")), done=False))
    evs = events(conv.error("upstream reset"))
    assert evs == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "upstream reset"}})
    ]
    assert conv.close() == b""  # nothing after the error


def test_upstream_error_chunk_becomes_client_error():
    raw = chat_sse(chunk(ch(0, content="a")), {"error": {"message": "quota", "type": "x"}})
    _, out = run("chat", "messages", raw)
    assert events(out)[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "quota"}},
    )


def test_error_to_chat_and_responses():
    conv = stream_converter("messages", "chat")
    (ev,) = events(conv.error("boom"))
    assert ev[1]["error"]["message"] == "boom"
    conv = stream_converter("chat", "responses", ids=ids(), clock=lambda: 1)
    evs = events(conv.error("boom"))
    assert [e for e, _ in evs] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert evs[2][1]["message"] == "boom"
    assert evs[3][1]["response"]["status"] == "failed"
    assert [d["sequence_number"] for _, d in evs] == [0, 1, 2, 3]


def test_chat_to_responses_sequence_and_incomplete():
    raw = chat_sse(
        chunk(ch(0, content="ab")),
        chunk(ch(0, content="c", finish="length")),
        chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}),
    )
    _, out = run("chat", "responses", raw)
    evs = events(out)
    assert [d["sequence_number"] for _, d in evs] == list(range(len(evs)))
    assert all(e == d["type"] for e, d in evs)
    assert [e for e, _ in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    final = evs[-1][1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == "abc"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 2


def test_messages_to_chat_stream_shape():
    anth = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 10,
                        "cache_read_input_tokens": 90,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ":2}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 12},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    raw = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in anth)
    conv, out = run("messages", "chat", raw, pieces=9)
    evs = events(out)
    assert evs[-1] == (None, "[DONE]")
    chunks = [d for _, d in evs[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "toolu_9",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        }
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 100
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    assert conv.usage.input_tokens == 10 and conv.usage.cache_read_tokens == 90
    assert conv.usage.output_tokens == 12 and conv.model == "claude-x"


def test_passthrough_is_byte_identical_and_fills_usage():
    raw = (
        b'event: message_start\r\ndata: {"type":"message_start","message":{"model":'
        b'"claude-x","usage":{"input_tokens":7,"output_tokens":1}}}\r\n\r\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM+/="}}\n\n'
        b": keepalive\n\n"
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        b'"end_turn"},"usage":{"output_tokens":33}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    conv = stream_converter("messages", "messages")
    out = b"".join(conv.feed(raw[i : i + 5]) for i in range(0, len(raw), 5))
    assert out + conv.close() == raw
    assert conv.usage.input_tokens == 7 and conv.usage.output_tokens == 33
    assert conv.model == "claude-x" and conv.first_output


def test_passthrough_closes_truncated_streams():
    conv = stream_converter("messages", "messages")
    conv.feed(
        b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}\n\n'
    )
    tail = events(conv.close())
    assert [e for e, _ in tail] == ["content_block_stop", "message_delta", "message_stop"]
    assert tail[1][1]["delta"]["stop_reason"] == "tool_use"
    conv = stream_converter("chat", "chat")
    conv.feed(chat_sse(chunk(ch(0, content="x")), done=False))
    assert events(conv.close()) == [(None, "[DONE]")]
    conv = stream_converter("chat", "chat")
    conv.feed(chat_sse(chunk(ch(0, content="x"))))
    assert conv.close() == b""
    conv = stream_converter("responses", "responses")
    conv.feed(
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
        b'"response":{"id":"resp_1","status":"in_progress","output":[]}}\n\n'
    )
    (ev,) = events(conv.close())
    assert ev[0] == "response.completed" and ev[1]["sequence_number"] == 1
    assert ev[1]["response"]["id"] == "resp_1"


def test_passthrough_errors_in_format():
    conv = stream_converter("responses", "responses")
    evs = events(conv.error("gone"))
    assert [e for e, _ in evs] == ["error", "response.failed"]
    conv = stream_converter("messages", "messages")
    assert events(conv.error("gone"))[0][1]["error"]["message"] == "gone"


def test_responses_to_chat_stream():
    resp = {
        "id": "resp_1",
        "object": "response",
        "created_at": 3,
        "model": "gpt-5",
        "status": "in_progress",
        "output": [],
    }
    seq = [
        ("response.created", {"response": resp}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}},
        ),
        ("response.reasoning_summary_text.delta", {"output_index": 0, "delta": "why"}),
        (
            "response.output_item.added",
            {"output_index": 1, "item": {"id": "msg_1", "type": "message", "content": []}},
        ),
        ("response.output_text.delta", {"output_index": 1, "content_index": 0, "delta": "Yes"}),
        (
            "response.output_item.added",
            {
                "output_index": 2,
                "item": {
                    "id": "fc_1",
                    "type": "function_call",
                    "call_id": "call_5",
                    "name": "f",
                    "arguments": "",
                },
            },
        ),
        ("response.function_call_arguments.delta", {"output_index": 2, "delta": '{"k":'}),
        ("response.function_call_arguments.delta", {"output_index": 2, "delta": "0}"}),
        (
            "response.output_item.added",
            {
                "output_index": 3,
                "item": {
                    "id": "fc_2",
                    "type": "function_call",
                    "call_id": "call_6",
                    "name": "g",
                    "arguments": "",
                },
            },
        ),
        (
            "response.output_item.done",
            {
                "output_index": 3,
                "item": {
                    "id": "fc_2",
                    "type": "function_call",
                    "call_id": "call_6",
                    "name": "g",
                    "arguments": "{}",
                },
            },
        ),
        (
            "response.completed",
            {
                "response": {
                    **resp,
                    "status": "completed",
                    "usage": {
                        "input_tokens": 9,
                        "input_tokens_details": {"cached_tokens": 4},
                        "output_tokens": 3,
                        "output_tokens_details": {"reasoning_tokens": 1},
                    },
                }
            },
        ),
    ]
    raw = b"".join(f"event: {e}\ndata: {json.dumps({'type': e, **d})}\n\n".encode() for e, d in seq)
    conv, out = run("responses", "chat", raw, pieces=4)
    chunks = [d for _, d in events(out)]
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[1] == {"reasoning_content": "why"} and deltas[2] == {"content": "Yes"}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "call_5" and calls[0]["index"] == 0
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 0) == '{"k":0}'
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 1) == "{}"
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-2]["usage"]["prompt_tokens"] == 9
    assert chunks[-2]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}
    assert conv.usage.cache_read_tokens == 4 and conv.usage.reasoning_tokens == 1
    assert conv.model == "gpt-5"


def test_model_override_reported_to_client():
    _, out = run("chat", "messages", chat_sse(chunk(ch(0, content="x"))), model="claude-alias")
    assert events(out)[0][1]["message"]["model"] == "claude-alias"
