"""Request conversions, direction by direction."""

from tokn.convert import convert_request

PNG = "iVBORw0KGgo="


def test_messages_to_chat_full():
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u-1"},
        "system": [
            {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Use tools."},
        ],
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": {"type": "object", "properties": {"c": {"type": "string"}}},
            },
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Let me look.", "signature": "sig=="},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"c": "Oslo"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"c": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "timeout"}],
                    },
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
    }
    out = convert_request("messages", "chat", body)
    assert out["model"] == "claude-sonnet-4-5"
    assert out["max_tokens"] == 1000 and out["temperature"] == 0.3 and out["top_p"] == 0.9
    assert "top_k" not in out
    assert out["stop"] == ["END"]
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["user"] == "u-1"
    assert out["reasoning_effort"] == "medium"
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"c": {"type": "string"}}},
            },
        }
    ]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    m = out["messages"]
    assert m[0] == {"role": "system", "content": "Be terse.\n\nUse tools."}
    assert m[1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        ],
    }
    assert m[2] == {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "Let me look.",
        "reasoning_signature": "sig==",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"c":"Oslo"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"c":"Rome"}'},
            },
        ],
    }
    assert m[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert m[4] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"}
    assert m[5] == {"role": "user", "content": "And now?"}
    assert len(m) == 6


def test_messages_tool_choice_variants_and_no_stream():
    base = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    for anth, chat in [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "t"}, {"type": "function", "function": {"name": "t"}}),
    ]:
        out = convert_request("messages", "chat", {**base, "tool_choice": anth})
        assert out["tool_choice"] == chat
        assert "stream" not in out and "stream_options" not in out
    assert (
        convert_request(
            "messages", "chat", {**base, "thinking": {"type": "enabled", "budget_tokens": 1024}}
        )["reasoning_effort"]
        == "low"
    )
    assert (
        convert_request(
            "messages", "chat", {**base, "thinking": {"type": "enabled", "budget_tokens": 32000}}
        )["reasoning_effort"]
        == "high"
    )


def test_chat_to_messages_full():
    body = {
        "model": "claude-sonnet-4",
        "max_completion_tokens": 3000,
        "temperature": 1.7,
        "stop": "###",
        "user": "bob",
        "stream": True,
        "stream_options": {"include_usage": True},
        "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "messages": [
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": [{"type": "text", "text": "sys two"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/jpeg;base64,{PNG}", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://x.test/i.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x":1}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "r1"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "r2"}]},
            {"role": "user", "content": "thanks"},
        ],
    }
    out = convert_request("chat", "messages", body)
    assert out["system"] == "sys one\n\nsys two"
    assert out["max_tokens"] == 3000
    assert out["temperature"] == 1.0  # clamped to Anthropic's range
    assert out["stop_sequences"] == ["###"]
    assert out["metadata"] == {"user_id": "bob"}
    assert out["stream"] is True and "stream_options" not in out
    assert out["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    m = out["messages"]
    assert m[0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG},
            },
            {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
        ],
    }
    assert m[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
            {"type": "tool_use", "id": "call_b", "name": "f", "input": {}},
        ],
    }
    # consecutive tool results and the next user text become one user turn, results first
    assert m[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "r1"},
            {
                "type": "tool_result",
                "tool_use_id": "call_b",
                "content": [{"type": "text", "text": "r2"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(m) == 3


def test_chat_to_messages_defaults_and_thinking():
    out = convert_request(
        "chat",
        "messages",
        {"model": "claude-opus-4-1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert out["max_tokens"] == 32000
    assert (
        convert_request("chat", "messages", {"model": "gpt-4o",
                                            "messages": [{"role": "user", "content": "x"}]})[
            "max_tokens"]
        == 8192
    )
    out = convert_request(
        "chat",
        "messages",
        {
            "model": "claude-sonnet-4",
            "max_tokens": 4000,
            "reasoning_effort": "high",
            "temperature": 0.2,
            "tool_choice": "required",
            "messages": [{"role": "user", "content": "q"}],
        },
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 3999}
    assert "temperature" not in out  # thinking requires the default temperature
    assert "tool_choice" not in out  # no tools, no tool_choice


def test_chat_to_messages_thinking_history_needs_signature():
    hist = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "hmm"},
            {"role": "user", "content": "q2"},
            {
                "role": "assistant",
                "content": "b",
                "reasoning_content": "hm2",
                "reasoning_signature": "s",
            },
        ],
    }
    m = convert_request("chat", "messages", hist)["messages"]
    assert m[1]["content"] == [{"type": "text", "text": "a"}]
    assert m[3]["content"] == [
        {"type": "thinking", "thinking": "hm2", "signature": "s"},
        {"type": "text", "text": "b"},
    ]


def test_chat_tool_ids_sanitized_consistently_and_bad_arguments_kept():
    out = convert_request(
        "chat",
        "messages",
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call:1|x",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{oops"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call:1|x", "content": "ok"},
            ],
        },
    )
    use, result = out["messages"][0]["content"][0], out["messages"][1]["content"][0]
    assert use["id"] == result["tool_use_id"] == "call_1_x"
    assert use["input"] == {"_raw_arguments": "{oops"}


def test_responses_to_chat_full():
    body = {
        "model": "gpt-5",
        "instructions": "Be helpful.",
        "max_output_tokens": 500,
        "temperature": 0.5,
        "reasoning": {"effort": "high", "summary": "auto"},
        "stream": True,
        "tool_choice": {"type": "function", "name": "shell"},
        "parallel_tool_calls": True,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "description": "run",
                "parameters": {"type": "object"},
                "strict": False,
            },
            {"type": "web_search"},
        ],
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "dev"}],
            },
            {"role": "user", "content": "list files"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "see"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AAA",
                        "detail": "low",
                    },
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "plan"}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok"}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "shell",
                "arguments": '{"cmd":"ls"}',
            },
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "call_2",
                "name": "shell",
                "arguments": '{"cmd":"pwd"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "/home"}],
            },
        ],
    }
    out = convert_request("responses", "chat", body)
    assert out["max_tokens"] == 500 and out["temperature"] == 0.5
    assert out["reasoning_effort"] == "high"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "shell",
                "description": "run",
                "parameters": {"type": "object"},
                "strict": False,
            },
        }
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "shell"}}
    m = out["messages"]
    assert m[0] == {"role": "system", "content": "Be helpful."}
    assert m[1] == {"role": "developer", "content": "dev"}
    assert m[2] == {"role": "user", "content": "list files"}
    assert m[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "see"},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"},
            },
        ],
    }
    assert m[4] == {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "plan",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "shell", "arguments": '{"cmd":"ls"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "shell", "arguments": '{"cmd":"pwd"}'},
            },
        ],
    }
    assert m[5] == {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}
    assert m[6] == {"role": "tool", "tool_call_id": "call_2", "content": "/home"}


def test_responses_string_input():
    out = convert_request("responses", "chat", {"model": "m", "input": "hi"})
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert "stream" not in out


def test_chat_to_responses_full():
    body = {
        "model": "gpt-5-codex",
        "max_tokens": 100,
        "reasoning_effort": "low",
        "user": "u",
        "response_format": {"type": "json_object"},
        "tool_choice": "required",
        "stream": True,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "messages": [
            {"role": "system", "content": "S"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "u1"},
                    {"type": "image_url", "image_url": {"url": "https://i"}},
                ],
            },
            {
                "role": "assistant",
                "content": "a1",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "r"},
            {"role": "system", "content": "late"},
        ],
    }
    out = convert_request("chat", "responses", body)
    assert out["instructions"] == "S"
    assert out["max_output_tokens"] == 100 and out["reasoning"] == {"effort": "low"}
    assert out["text"] == {"format": {"type": "json_object"}}
    assert out["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    assert out["tool_choice"] == "required" and out["stream"] is True and out["user"] == "u"
    assert out["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "u1"},
                {"type": "input_image", "image_url": "https://i", "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "a1"}],
        },
        {"type": "function_call", "call_id": "call_9", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "r"},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "late"}]},
    ]


def test_composed_messages_to_responses_and_identity():
    body = {
        "model": "m",
        "max_tokens": 50,
        "system": "S",
        "messages": [{"role": "user", "content": "hi"}],
    }
    out = convert_request("messages", "responses", body)
    assert out["instructions"] == "S" and out["max_output_tokens"] == 50
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert convert_request("messages", "messages", body) is body
    back = convert_request("responses", "messages", out)
    assert back["system"] == "S" and back["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]
