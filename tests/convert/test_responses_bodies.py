"""Whole (non-stream) response conversions and usage extraction."""

import pytest

from tokn.convert import Usage, common, convert_response, extract_usage

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 5,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello", "reasoning_content": "think"},
        },
        # Copilot-style: the tool call arrives in a second choice
        {
            "index": 1,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    }
                ],
            },
        },
    ],
    "usage": {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 7},
    },
}

ANTHROPIC = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "SIG"},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_read_input_tokens": 50,
        "cache_creation_input_tokens": 5,
    },
}

RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "created_at": 9,
    "status": "completed",
    "model": "gpt-5",
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Done", "annotations": []}],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_7",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
    ],
    "usage": {
        "input_tokens": 40,
        "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 46,
    },
}


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch):
    monkeypatch.setattr(common, "make_id", lambda prefix: prefix + "X")
    monkeypatch.setattr(common, "now", lambda: 1000)


def test_chat_to_messages_merges_choices_and_maps_usage():
    out = convert_response("chat", "messages", CHAT, model="claude-sonnet-4-5")
    assert out == {
        "id": "msg_X",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "think", "signature": ""},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 70,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "output_tokens": 20,
        },
    }


@pytest.mark.parametrize(
    "finish,stop",
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_chat_to_messages_stop_reasons(finish, stop):
    body = {
        "choices": [
            {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}
        ]
    }
    assert convert_response("chat", "messages", body)["stop_reason"] == stop


def test_messages_to_chat():
    out = convert_response("messages", "chat", ANTHROPIC)
    assert out["object"] == "chat.completion" and out["created"] == 1000
    assert out["model"] == "claude-sonnet-4"
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hi",
        "reasoning_content": "hmm",
        "reasoning_signature": "SIG",
        "reasoning_details": [{"type": "reasoning.text", "text": "hmm", "signature": "SIG",
                               "format": "anthropic-claude-v1"}],
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    assert out["usage"] == {
        "prompt_tokens": 65,
        "completion_tokens": 4,
        "total_tokens": 69,
        "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    "stop,finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_messages_to_chat_stop_reasons(stop, finish):
    body = {**ANTHROPIC, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert convert_response("messages", "chat", body)["choices"][0]["finish_reason"] == finish


def test_chat_to_responses():
    out = convert_response("chat", "responses", CHAT)
    assert out["id"] == "resp_X" and out["object"] == "response" and out["status"] == "completed"
    assert out["output"] == [
        {"id": "rs_X", "type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {
            "id": "msg_X",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello"}
            ],
        },
        {
            "id": "fc_X",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "f",
            "arguments": '{"a":1}',
        },
    ]
    assert out["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 30},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 7},
        "total_tokens": 120,
    }


def test_chat_to_responses_length_is_incomplete():
    body = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "content": "tru"},
            }
        ]
    }
    out = convert_response("chat", "responses", body)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_to_chat():
    out = convert_response("responses", "chat", RESPONSES, model="alias")
    assert out["model"] == "alias" and out["created"] == 9
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Done",
        "reasoning_content": "plan",
        "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert out["usage"]["prompt_tokens"] == 40
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    incomplete = {
        **RESPONSES,
        "status": "incomplete",
        "output": RESPONSES["output"][1:2],
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    assert (
        convert_response("responses", "chat", incomplete)["choices"][0]["finish_reason"] == "length"
    )


def test_composed_responses_to_messages_and_back():
    out = convert_response("responses", "messages", RESPONSES)
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
    assert out["content"][2]["id"] == "call_7" and out["stop_reason"] == "tool_use"
    assert out["usage"]["cache_read_input_tokens"] == 8 and out["usage"]["input_tokens"] == 32
    back = convert_response("messages", "responses", ANTHROPIC)
    assert [i["type"] for i in back["output"]] == ["reasoning", "message", "function_call"]
    assert back["usage"]["input_tokens"] == 65


def test_identity_keeps_body_and_overrides_model_only():
    assert convert_response("messages", "messages", ANTHROPIC) is ANTHROPIC
    out = convert_response("chat", "chat", CHAT, model="m2")
    assert out["model"] == "m2" and out["choices"] == CHAT["choices"]


def test_extract_usage_all_formats():
    assert extract_usage("chat", CHAT) == Usage(
        input_tokens=70, output_tokens=20, cache_read_tokens=30, reasoning_tokens=7
    )
    assert extract_usage("messages", ANTHROPIC) == Usage(
        input_tokens=10, output_tokens=4, cache_read_tokens=50, cache_write_tokens=5
    )
    u = extract_usage("responses", RESPONSES)
    assert u == Usage(input_tokens=32, output_tokens=6, cache_read_tokens=8, reasoning_tokens=2)
    assert u.prompt_tokens == 40 and u.total_tokens == 46
    gemini = {"usageMetadata": {"promptTokenCount": 40, "cachedContentTokenCount": 8,
                                "candidatesTokenCount": 6, "thoughtsTokenCount": 2}}
    assert extract_usage("gemini", gemini) == Usage(input_tokens=32, output_tokens=8,
                                                    cache_read_tokens=8, reasoning_tokens=2)
    with pytest.raises(ValueError):
        extract_usage("cohere", {})
