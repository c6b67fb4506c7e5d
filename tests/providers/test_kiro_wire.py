"""OpenAI chat <-> Kiro generateAssistantResponse conversion."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.kiro_frames import (
    context_usage_event,
    error_frame,
    event_frame,
    exception_frame,
    metering_event,
    text_events,
    tool_events,
)
from tokn.errors import ConversionError, ToknError
from tokn.providers.kiro.errors import KiroError, classify_error
from tokn.providers.kiro.eventstream import EventStreamDecoder, Message, decode_all
from tokn.providers.kiro.models import map_model
from tokn.providers.kiro.request import (
    CONTINUE_TEXT,
    MAX_TOOL_DESCRIPTION,
    PLACEHOLDER_USER,
    KiroPayloadTooLarge,
    ToolNameMap,
    build_request,
    clean_schema,
    encode_request,
)
from tokn.providers.kiro.response import KiroToChatStream, collect_response, estimate_tokens

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def build(messages, **extra):
    body = {"model": "m", "messages": messages, **extra}
    req, names = build_request(
        body, model_id="claude-sonnet-4.5", profile_arn="arn:p", conversation_id="conv-1"
    )
    return req, names


def state(req):
    return req["conversationState"]


def current(req):
    return state(req)["currentMessage"]["userInputMessage"]


def history(req):
    return state(req).get("history", [])


def roles(req):
    return ["user" if "userInputMessage" in h else "assistant" for h in history(req)]


# --- models -----------------------------------------------------------------


@pytest.mark.parametrize(
    "public, expected",
    [
        ("claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-haiku-4-5", "claude-haiku-4.5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
        ("claude-opus-4-5", "claude-opus-4.5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4", "claude-sonnet-4"),
        ("claude-sonnet-4.5", "claude-sonnet-4.5"),
        ("claude-3-7-sonnet-20250219", "claude-3.7-sonnet"),
        ("claude-sonnet-4-5-latest", "claude-sonnet-4.5"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4.5"),
        ("Claude-Sonnet-4-5", "claude-sonnet-4.5"),
        ("auto", "auto"),
        ("AUTO", "auto"),
        ("", "auto"),
        ("CLAUDE_SONNET_4_5_20250929_V1_0", "CLAUDE_SONNET_4_5_20250929_V1_0"),
        ("CLAUDE_SONNET_4_20250514_V1_0", "CLAUDE_SONNET_4_20250514_V1_0"),
    ],
)
def test_map_model(public, expected):
    assert map_model(public) == expected


@pytest.mark.parametrize(
    "public, available, expected",
    [
        ("claude-sonnet-4-5", ["auto", "claude-sonnet-4.5"], "claude-sonnet-4.5"),
        (
            "claude-sonnet-4-5",
            ["CLAUDE_SONNET_4_5_20250929_V1_0"],
            "CLAUDE_SONNET_4_5_20250929_V1_0",
        ),
        ("CLAUDE_SONNET_4_5_20250929_V1_0", ["claude-sonnet-4.5"], "claude-sonnet-4.5"),
        ("Claude-Haiku-4.5", ["claude-haiku-4.5"], "claude-haiku-4.5"),
        (
            "claude-sonnet-4-5-20250929",
            ["claude-sonnet-4-5-20250929", "claude-sonnet-4.5"],
            "claude-sonnet-4-5-20250929",
        ),
        ("claude-opus-4-5", ["claude-sonnet-4.5"], "claude-opus-4.5"),  # no match: normalised
        ("auto", ["claude-sonnet-4.5"], "auto"),
    ],
)
def test_map_model_with_available(public, available, expected):
    assert map_model(public, available) == expected


# --- turn shape -------------------------------------------------------------


def test_single_user_message():
    req, _ = build([{"role": "user", "content": "hello"}])
    assert req["profileArn"] == "arn:p"
    st_ = state(req)
    assert st_["chatTriggerType"] == "MANUAL"
    assert st_["conversationId"] == "conv-1"
    assert "history" not in st_
    assert current(req) == {
        "content": "hello",
        "modelId": "claude-sonnet-4.5",
        "origin": "AI_EDITOR",
    }


def test_profile_arn_omitted_and_conversation_id_generated():
    req, _ = build_request(
        {"messages": [{"role": "user", "content": "x"}]}, model_id="auto", profile_arn=None
    )
    assert "profileArn" not in req
    assert len(state(req)["conversationId"]) == 36


def test_empty_messages_rejected():
    with pytest.raises(ConversionError, match="messages"):
        build_request({"messages": []}, model_id="auto", profile_arn=None)


def test_same_role_turns_merged():
    req, _ = build(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
            {"role": "user", "content": [{"type": "text", "text": "f"}]},
        ]
    )
    assert roles(req) == ["user", "assistant"]
    assert history(req)[0]["userInputMessage"]["content"] == "a\n\nb"
    assert history(req)[1]["assistantResponseMessage"]["content"] == "c\n\nd"
    assert current(req)["content"] == "e\n\nf"


def test_history_starting_with_assistant_gets_placeholder_user():
    req, _ = build(
        [{"role": "assistant", "content": "hi there"}, {"role": "user", "content": "hello"}]
    )
    assert roles(req) == ["user", "assistant"]
    assert history(req)[0]["userInputMessage"]["content"] == PLACEHOLDER_USER
    assert current(req)["content"] == "hello"


def test_trailing_assistant_moves_to_history_with_continue():
    req, _ = build(
        [{"role": "user", "content": "write a poem"}, {"role": "assistant", "content": "Roses are"}]
    )
    assert roles(req) == ["user", "assistant"]
    assert history(req)[1]["assistantResponseMessage"]["content"] == "Roses are"
    assert current(req)["content"] == CONTINUE_TEXT


def test_alternation_always_holds():
    msgs = [
        {"role": r, "content": str(i)}
        for i, r in enumerate(
            ["assistant", "assistant", "user", "tool", "user", "assistant", "system"]
        )
    ]
    msgs[3]["tool_call_id"] = "nope"
    req, _ = build(msgs)
    rs = roles(req)
    assert rs[0] == "user"
    assert all(a != b for a, b in zip(rs, rs[1:], strict=False))
    assert rs[-1] == "assistant"


@given(st.lists(st.sampled_from(["user", "assistant", "system", "tool"]), min_size=1, max_size=12))
def test_alternation_property(role_seq):
    msgs = []
    for i, r in enumerate(role_seq):
        m = {"role": r, "content": f"m{i}" if i % 3 else ""}
        if r == "tool":
            m["tool_call_id"] = f"c{i}"
        msgs.append(m)
    req, _ = build(msgs)
    rs = roles(req)
    assert len(rs) % 2 == 0
    assert rs == ["user", "assistant"] * (len(rs) // 2)
    assert current(req)["content"].strip()
    for h in history(req):
        inner = h.get("userInputMessage") or h["assistantResponseMessage"]
        assert inner["content"].strip()


def test_empty_content_placeholders():
    req, _ = build(
        [
            {"role": "user", "content": ""},
            {"role": "assistant", "content": None},
            {"role": "user", "content": []},
        ]
    )
    assert history(req)[0]["userInputMessage"]["content"] == PLACEHOLDER_USER
    assert history(req)[1]["assistantResponseMessage"]["content"]
    assert current(req)["content"] == CONTINUE_TEXT


# --- system prompt ----------------------------------------------------------


def test_system_prepended_to_first_history_user_turn():
    req, _ = build(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "bye"},
        ]
    )
    assert history(req)[0]["userInputMessage"]["content"] == (
        "You are terse.\n\nAnswer in French.\n\nhi"
    )
    assert current(req)["content"] == "bye"


def test_system_prepended_to_current_when_no_history():
    req, _ = build([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert current(req)["content"] == "S\n\nU"
    req, _ = build([{"role": "system", "content": "S"}])
    assert current(req)["content"] == f"S\n\n{CONTINUE_TEXT}"


# --- tools ------------------------------------------------------------------


def _tool_conversation(**extra):
    return build(
        [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "unavailable"}],
                "is_error": True,
            },
        ],
        **extra,
    )


def test_tool_round_trip_request():
    req, _ = _tool_conversation(tools=[TOOL])
    assert roles(req) == ["user", "assistant"]
    assistant = history(req)[1]["assistantResponseMessage"]
    assert assistant == {
        "content": "Checking.",
        "toolUses": [
            {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    }
    cur = current(req)
    assert cur["content"]  # placeholder text, never empty
    ctx = cur["userInputMessageContext"]
    assert ctx["toolResults"] == [
        {"toolUseId": "call_1", "content": [{"text": "18C"}], "status": "success"},
        {"toolUseId": "call_2", "content": [{"text": "unavailable"}], "status": "error"},
    ]
    assert ctx["tools"] == [
        {
            "toolSpecification": {
                "name": "get_weather",
                "description": "Weather for a city",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]


def test_tool_results_in_history_and_tools_only_on_current():
    req, _ = build(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": ""},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "thanks"},
        ],
        tools=[TOOL],
    )
    assert roles(req) == ["user", "assistant", "user", "assistant"]
    assert history(req)[1]["assistantResponseMessage"]["toolUses"][0]["input"] == {}
    u = history(req)[2]["userInputMessage"]
    assert u["userInputMessageContext"] == {
        "toolResults": [
            {"toolUseId": "a", "content": [{"text": "(no output)"}], "status": "success"}
        ]
    }
    assert u["content"].strip()
    assert "tools" in current(req)["userInputMessageContext"]


def test_no_tools_defined_turns_tool_traffic_into_text():
    req, _ = _tool_conversation()
    assistant = history(req)[1]["assistantResponseMessage"]
    assert "toolUses" not in assistant
    assert "get_weather" in assistant["content"] and "Paris" in assistant["content"]
    cur = current(req)
    assert "userInputMessageContext" not in cur
    assert "18C" in cur["content"] and "unavailable" in cur["content"]


def test_tool_choice_none_drops_tools():
    req, _ = _tool_conversation(tools=[TOOL], tool_choice="none")
    assert "userInputMessageContext" not in current(req)


def test_orphan_tool_result_becomes_text():
    req, _ = build(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": "ok",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "fine"},
            {"role": "tool", "tool_call_id": "ghost", "content": "boo"},
        ],
        tools=[TOOL],
    )
    cur = current(req)
    assert [r["toolUseId"] for r in cur["userInputMessageContext"]["toolResults"]] == ["a"]
    assert "ghost" in cur["content"] and "boo" in cur["content"]


def test_tool_use_of_undefined_tool_becomes_text():
    req, _ = build(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "gone_tool", "arguments": '{"x":1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "r"},
        ],
        tools=[TOOL],
    )
    assert "toolUses" not in history(req)[1]["assistantResponseMessage"]
    assert "gone_tool" in history(req)[1]["assistantResponseMessage"]["content"]
    assert "toolResults" not in current(req)["userInputMessageContext"]


def test_duplicate_tool_use_ids_deduped():
    call = {
        "id": "dup",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"A"}'},
    }
    req, _ = build(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call, call]},
            {"role": "tool", "tool_call_id": "dup", "content": "1"},
            {"role": "tool", "tool_call_id": "dup", "content": "2"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "dup", "content": "3"},
        ],
        tools=[TOOL],
    )
    ids = [
        u["toolUseId"]
        for h in history(req)
        if "assistantResponseMessage" in h
        for u in h["assistantResponseMessage"].get("toolUses", [])
    ]
    assert ids == ["dup"]
    first_results = history(req)[2]["userInputMessage"]["userInputMessageContext"]["toolResults"]
    assert [r["content"][0]["text"] for r in first_results] == ["1"]
    assert "toolResults" not in current(req).get("userInputMessageContext", {})


def test_bad_arguments_kept_as_dict():
    req, _ = build(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{broken"},
                    },
                    {
                        "id": "b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "[1]"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "x"},
        ],
        tools=[TOOL],
    )
    uses = history(req)[1]["assistantResponseMessage"]["toolUses"]
    assert uses[0]["input"] == {"raw_arguments": "{broken"}
    assert uses[1]["input"] == {"value": [1]}


def test_long_tool_name_shortened_and_reversible():
    long_name = "mcp__some_server_with_a_long_name__" + "do_something_rather_specific" * 2
    assert len(long_name) > 64
    tool = {
        "type": "function",
        "function": {"name": long_name, "description": "d", "parameters": {"type": "object"}},
    }
    req, names = build(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": long_name, "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "x"},
        ],
        tools=[tool, TOOL],
    )
    spec_names = [
        t["toolSpecification"]["name"] for t in current(req)["userInputMessageContext"]["tools"]
    ]
    short = spec_names[0]
    assert len(short) == 64 and short != long_name
    assert spec_names[1] == "get_weather"
    assert history(req)[1]["assistantResponseMessage"]["toolUses"][0]["name"] == short
    assert names.from_kiro(short) == long_name
    assert names.to_kiro(long_name) == short
    assert names.from_kiro("get_weather") == "get_weather"
    assert names.from_kiro("unknown") == "unknown"
    assert names.renamed == {short: long_name}


@given(st.text(min_size=1, max_size=200))
def test_tool_name_map_property(name):
    m = ToolNameMap()
    k = m.to_kiro(name)
    assert len(k) <= 64
    assert m.from_kiro(k) == name
    assert ToolNameMap.shorten(name) == k  # deterministic
    if len(name) <= 64:
        assert k == name


def test_two_long_names_with_same_prefix_differ():
    a, b = "x" * 80 + "a", "x" * 80 + "b"
    m = ToolNameMap()
    assert m.to_kiro(a) != m.to_kiro(b)
    assert m.from_kiro(m.to_kiro(a)) == a and m.from_kiro(m.to_kiro(b)) == b


def test_schema_cleanup():
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": [],
        "properties": {
            "additionalProperties": {"type": "string"},  # a property so named stays
            "required": {"type": "boolean"},
            "nested": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "required": [],
                "properties": {"x": {"type": "integer"}},
            },
            "list": {
                "type": "array",
                "items": {"type": "object", "required": ["y"], "additionalProperties": True},
            },
            "union": {
                "anyOf": [{"type": "object", "additionalProperties": False}, {"type": "null"}]
            },
        },
        "$defs": {"required": {"type": "object", "required": []}},
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "additionalProperties": {"type": "string"},
            "required": {"type": "boolean"},
            "nested": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "list": {"type": "array", "items": {"type": "object", "required": ["y"]}},
            "union": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        },
        "$defs": {"required": {"type": "object"}},
    }
    assert schema["additionalProperties"] is False  # input untouched


def test_tool_descriptions_and_missing_parameters():
    tools = [
        {"type": "function", "function": {"name": "empty", "description": "  "}},
        {
            "type": "function",
            "function": {"name": "huge", "description": "d" * 20_000, "parameters": {}},
        },
        {"type": "function", "function": {"name": "empty"}},  # duplicate dropped
        {"type": "web_search"},  # not a function tool
    ]
    req, _ = build([{"role": "user", "content": "x"}], tools=tools)
    specs = [t["toolSpecification"] for t in current(req)["userInputMessageContext"]["tools"]]
    assert [s["name"] for s in specs] == ["empty", "huge"]
    assert specs[0]["description"] == "Tool empty"
    assert len(specs[1]["description"]) == MAX_TOOL_DESCRIPTION
    assert specs[1]["description"].endswith("(truncated)")
    assert specs[0]["inputSchema"] == {"json": {"type": "object", "properties": {}}}
    assert specs[1]["inputSchema"] == {"json": {"type": "object", "properties": {}}}


# --- images -----------------------------------------------------------------


def test_images():
    req, _ = build(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/webp",
                            "data": "UklGRg==",
                        },
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ]
    )
    cur = current(req)
    assert cur["images"] == [
        {"format": "png", "source": {"bytes": "iVBORw0KGgo="}},
        {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}},
        {"format": "webp", "source": {"bytes": "UklGRg=="}},
    ]
    assert cur["content"].startswith("what is this")
    assert "image omitted" in cur["content"]


def test_image_only_message_gets_text():
    req, _ = build(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGOD=="}}
                ],
            }
        ]
    )
    assert current(req)["images"][0]["format"] == "gif"
    assert current(req)["content"].strip()


# --- size guard -------------------------------------------------------------


def _long_chat(turns: int, size: int):
    msgs = [{"role": "system", "content": "SYSTEM PROMPT"}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"u{i} " + "x" * size})
        msgs.append({"role": "assistant", "content": f"a{i} " + "y" * size})
    msgs.append({"role": "user", "content": "latest question"})
    return msgs


def test_size_guard_drops_oldest_pairs_and_keeps_system():
    body = {"messages": _long_chat(20, 10_000)}
    req, _ = build_request(body, model_id="auto", profile_arn=None, max_payload=100_000)
    size = len(encode_request(req))
    assert size <= 100_000
    h = history(req)
    assert 0 < len(h) < 40 and len(h) % 2 == 0
    first = h[0]["userInputMessage"]["content"]
    assert first.startswith("SYSTEM PROMPT\n\n")
    assert current(req)["content"] == "latest question"
    # the newest pairs are kept, contiguous, and no more were dropped than needed
    # (each pair is ~20 KB, so 4 pairs fit in 100 KB, 5 do not)
    kept = [
        int(e["userInputMessage"]["content"].split("\n\n")[-1].split(" ")[0][1:]) for e in h[::2]
    ]
    assert kept == [16, 17, 18, 19]
    assert h[-1]["assistantResponseMessage"]["content"].startswith("a19")


def test_size_guard_untouched_when_small():
    body = {"messages": _long_chat(3, 100)}
    req, _ = build_request(body, model_id="auto", profile_arn=None)
    assert len(history(req)) == 6


def test_size_guard_orphans_tool_results_after_trim():
    msgs = [
        {"role": "user", "content": "x" * 5000},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "result"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "next"},
    ]
    req, _ = build_request(
        {"messages": msgs, "tools": [TOOL]}, model_id="auto", profile_arn=None, max_payload=3000
    )
    assert len(encode_request(req)) <= 3000
    for h in history(req):
        ctx = h.get("userInputMessage", {}).get("userInputMessageContext", {})
        assert "toolResults" not in ctx
    assert roles(req)[0] == "user"


def test_size_guard_raises_when_current_message_too_big():
    body = {
        "messages": [
            {"role": "user", "content": "a" * 1000},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "z" * 700_000},
        ]
    }
    with pytest.raises(KiroPayloadTooLarge) as info:
        build_request(body, model_id="auto", profile_arn=None)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith("conversation is ")
    assert "Kiro accepts about 600 KB" in msg


def test_size_guard_many_small_turns_is_fast():
    import time

    body = {"messages": _long_chat(3000, 300)}
    start = time.monotonic()
    req, _ = build_request(body, model_id="auto", profile_arn=None)
    assert time.monotonic() - start < 5
    assert len(encode_request(req)) <= 600_000


# --- stream -----------------------------------------------------------------


def msgs_of(*frames: bytes) -> list[Message]:
    return decode_all(b"".join(frames))


def run(frames: list[Message], names: ToolNameMap | None = None, **kw):
    kw.setdefault("input_tokens_estimate", 10)
    conv = KiroToChatStream("claude-sonnet-4.5", names or ToolNameMap(), **kw)
    chunks = []
    for m in frames:
        chunks += conv.feed(m)
    chunks += conv.finish()
    return conv, chunks


def deltas(chunks):
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_stream_text_and_duplicate_dropped():
    conv, chunks = run(msgs_of(text_events("Hel", "lo", "lo", "!", "")))
    ds = deltas(chunks)
    assert ds[0] == {"role": "assistant", "content": "Hel"}
    assert [d.get("content") for d in ds[:-1]] == ["Hel", "lo", "!"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["estimated"] is True
    assert usage["usage"]["prompt_tokens"] == 10
    assert usage["usage"]["completion_tokens"] == conv.usage()["completion_tokens"] > 0
    assert usage["usage"]["total_tokens"] == 10 + usage["usage"]["completion_tokens"]


def test_stream_tool_input_split_across_frames_and_chunks():
    long_name = "n" * 80
    names = ToolNameMap()
    short = names.to_kiro(long_name)
    raw = b"".join(
        [
            text_events("Let me check."),
            tool_events("tu-1", short, "{}", '{"ci', 'ty": "Pa', 'ris"}'),
            tool_events("tu-2", "get_weather", '{"city": "Rome"}'),
            metering_event(0.5),
            metering_event(0.25),
            context_usage_event(1.5),
        ]
    )
    for cut in (1, 7, 100, len(raw) // 2):
        dec = EventStreamDecoder()
        conv = KiroToChatStream("m", names, input_tokens_estimate=5, context_window=200_000)
        chunks = []
        for i in range(0, len(raw), cut):
            for msg in dec.feed(raw[i : i + cut]):
                chunks += conv.feed(msg)
        dec.close()
        chunks += conv.finish()
        calls = [tc for d in deltas(chunks) for tc in d.get("tool_calls", [])]
        assert calls[0] == {
            "index": 0,
            "id": "tu-1",
            "type": "function",
            "function": {"name": long_name, "arguments": ""},
        }
        args0 = "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == 0)
        args1 = "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == 1)
        assert json.loads(args0) == {"city": "Paris"}
        assert json.loads(args1) == {"city": "Rome"}
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert conv.credits == pytest.approx(0.75)
        assert conv.credit_unit == "credit"
        u = chunks[-1]["usage"]
        assert u["prompt_tokens"] + u["completion_tokens"] == 3000  # 1.5% of 200k
        assert conv.tool_calls[0]["function"] == {
            "name": long_name,
            "arguments": '{"city": "Paris"}',
        }


def test_stream_tool_without_input_gets_empty_object():
    _, chunks = run(msgs_of(tool_events("t", "ping"), tool_events("u", "pong", "{}")))
    calls = [tc for d in deltas(chunks) for tc in d.get("tool_calls", [])]
    for idx in (0, 1):
        assert (
            "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == idx)
            == "{}"
        )


def test_stream_tool_without_stop_closed_at_finish():
    _, chunks = run(msgs_of(event_frame("toolUseEvent", {"name": "ping", "toolUseId": "t"})))
    calls = [tc for d in deltas(chunks) for tc in d.get("tool_calls", [])]
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == "{}"


def test_stream_tool_dict_input_and_repeated_full_input():
    frames = msgs_of(
        event_frame("toolUseEvent", {"name": "f", "toolUseId": "t", "input": {"a": 1}}),
        event_frame(
            "toolUseEvent", {"name": "f", "toolUseId": "t", "input": '{"a": 1}', "stop": True}
        ),
        event_frame("toolUseEvent", {"name": "f", "toolUseId": "t", "input": "late"}),
    )
    conv, _ = run(frames)
    assert conv.tool_calls == [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]


def test_stream_ignores_unknown_and_non_json_events():
    from tests.fakes.kiro_frames import encode_frame

    frames = msgs_of(
        event_frame("followupPromptEvent", {"followupPrompt": {"content": "more?"}}),
        encode_frame(
            {":message-type": "event", ":event-type": "assistantResponseEvent"}, b"not json"
        ),
        text_events("ok"),
    )
    _, chunks = run(frames)
    assert [d.get("content") for d in deltas(chunks)] == ["ok", None]


def test_stream_exception_raises_kiro_error():
    conv = KiroToChatStream("m", ToolNameMap(), input_tokens_estimate=0)
    (text, exc) = msgs_of(
        text_events("partial"), exception_frame("ThrottlingException", "Too many requests")
    )
    conv.feed(text)
    with pytest.raises(KiroError) as info:
        conv.feed(exc)
    err = info.value
    assert err.kind == "ThrottlingException"
    assert err.upstream_message == "Too many requests"
    assert isinstance(err, ToknError) and err.status == 429


def test_stream_error_frame_and_type_in_payload():
    conv = KiroToChatStream("m", None, input_tokens_estimate=0)
    (err,) = msgs_of(error_frame("InternalServerException", "boom"))
    with pytest.raises(KiroError, match="boom") as info:
        conv.feed(err)
    assert info.value.kind == "InternalServerException" and info.value.status == 502
    from tests.fakes.kiro_frames import encode_frame

    typed = decode_all(
        encode_frame(
            {":message-type": "exception"},
            json.dumps(
                {
                    "__type": "com.amazon.aws.codewhisperer#ValidationException",
                    "message": "Improperly formed request.",
                }
            ).encode(),
        )
    )[0]
    with pytest.raises(KiroError) as info:
        KiroToChatStream("m", None, input_tokens_estimate=0).feed(typed)
    assert info.value.kind == "ValidationException" and info.value.status == 400


def test_stream_content_length_exceeded_finishes_with_length():
    conv, chunks = run(
        msgs_of(
            text_events("long answer"),
            exception_frame("ContentLengthExceededException", "too long"),
        )
    )
    assert conv.truncated
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_finish_is_idempotent_and_empty_answer():
    conv = KiroToChatStream("m", None, input_tokens_estimate=3)
    first = conv.finish()
    assert first[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert first[0]["choices"][0]["finish_reason"] == "stop"
    assert first[1]["usage"]["completion_tokens"] == 0
    assert conv.finish() == []
    assert conv.feed(msgs_of(text_events("x"))[0]) == []


def test_context_usage_without_window_uses_estimate():
    _, chunks = run(msgs_of(text_events("hi"), context_usage_event(50.0)), input_tokens_estimate=42)
    assert chunks[-1]["usage"]["prompt_tokens"] == 42


def test_collect_response():
    names = ToolNameMap()
    short = names.to_kiro("t" * 70)
    result = collect_response(
        msgs_of(text_events("Hi ", "there"), tool_events("c1", short, '{"q":', '"x"}')),
        "claude-sonnet-4.5",
        names,
        input_tokens_estimate=7,
    )
    assert result["object"] == "chat.completion"
    assert result["model"] == "claude-sonnet-4.5"
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hi there"
    assert choice["message"]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "t" * 70, "arguments": '{"q":"x"}'}}
    ]
    assert result["usage"]["prompt_tokens"] == 7
    assert result["usage"]["estimated"] is True


def test_collect_response_text_only():
    result = collect_response(msgs_of(text_events("ok")))
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    assert result["choices"][0]["finish_reason"] == "stop"


def test_estimate_tokens():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好") == 2


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (403, '{"message":"The bearer token included in the request is invalid."}', "refresh"),
        (403, '{"message":"Token has expired"}', "refresh"),
        (403, "Invalid bearer token", "refresh"),
        (401, "Unauthorized", "refresh"),
        (403, '{"message":"Your account temporarily is suspended."}', "suspended"),
        (403, '{"message":"You have exceeded your monthly quota"}', "quota"),
        (402, "{}", "quota"),
        (400, '{"reason":"MONTHLY_REQUEST_COUNT","message":"limit reached"}', "quota"),
        (429, '{"reason":"MONTHLY_REQUEST_COUNT"}', "quota"),
        (
            400,
            '{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}',
            "context",
        ),
        (400, '{"message":"Improperly formed request."}', "bad_request"),
        (400, '{"message":"Invalid model","reason":"INVALID_MODEL_ID"}', "bad_request"),
        (429, '{"message":"Too many requests"}', "rate_limit"),
        (500, "internal", "server"),
        (503, "", "server"),
        (403, "Forbidden", "other"),
        (404, "nope", "other"),
    ],
)
def test_classify_error(status, body, kind):
    assert classify_error(status, body) == kind
