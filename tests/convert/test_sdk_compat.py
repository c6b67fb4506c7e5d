"""The official SDKs' own stream accumulators must accept what the converters emit."""

import json

import anthropic
import httpx
import openai

from tokn.convert import convert_response, stream_converter

CHAT_UPSTREAM = (
    b"".join(
        b"data: " + json.dumps(c).encode() + b"\n\n"
        for c in [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "reasoning_content": "Thinking it over."},
                    }
                ],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [{"index": 0, "delta": {"content": "Weather "}}],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [{"index": 0, "delta": {"content": "coming."}}],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [
                    {
                        "index": 1,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 1,
                                    "id": "call_w",
                                    "type": "function",
                                    "function": {"name": "weather", "arguments": ""},
                                }
                            ]
                        },
                    }
                ],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [
                    {
                        "index": 1,
                        "delta": {
                            "tool_calls": [
                                {"index": 1, "function": {"arguments": '{"city": "Oslo"}'}}
                            ]
                        },
                    }
                ],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [{"index": 1, "delta": {}, "finish_reason": "tool_calls"}],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [],
                "usage": {
                    "prompt_tokens": 21,
                    "completion_tokens": 8,
                    "prompt_tokens_details": {"cached_tokens": 5},
                },
            },
        ]
    )
    + b"data: [DONE]\n\n"
)


def _convert(src, dst, raw):
    conv = stream_converter(src, dst)
    return b"".join(conv.feed(raw[i : i + 11]) for i in range(0, len(raw), 11)) + conv.close()


def _transport(body: bytes, content_type="text/event-stream"):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _anthropic(body: bytes, content_type="text/event-stream"):
    return anthropic.Anthropic(
        api_key="k", base_url="http://tokn.test", http_client=_transport(body, content_type)
    )


def _openai(body: bytes, content_type="text/event-stream"):
    return openai.OpenAI(
        api_key="k", base_url="http://tokn.test/v1", http_client=_transport(body, content_type)
    )


def test_anthropic_sdk_accumulates_chat_converted_stream():
    client = _anthropic(_convert("chat", "messages", CHAT_UPSTREAM))
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        msg = stream.get_final_message()
    assert text == "Weather coming."
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "Thinking it over."
    assert msg.content[2].id == "call_w" and msg.content[2].input == {"city": "Oslo"}
    assert msg.stop_reason == "tool_use"
    assert msg.usage.input_tokens == 16 and msg.usage.cache_read_input_tokens == 5
    assert msg.usage.output_tokens == 8


def test_anthropic_sdk_accumulates_responses_converted_stream():
    responses_stream = _convert("chat", "responses", CHAT_UPSTREAM)
    client = _anthropic(_convert("responses", "messages", responses_stream))
    with client.messages.stream(model="m", max_tokens=10, messages=[]) as stream:
        msg = stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[1].text == "Weather coming." and msg.content[2].input == {"city": "Oslo"}


def test_openai_chat_sdk_accumulates_messages_converted_stream():
    anth = _convert("chat", "messages", CHAT_UPSTREAM)
    client = _openai(_convert("messages", "chat", anth))
    with client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "hi"}]
    ) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Weather coming."
    assert msg.tool_calls[0].id == "call_w"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 21 and final.usage.completion_tokens == 8


def test_openai_responses_sdk_accumulates_chat_converted_stream():
    client = _openai(_convert("chat", "responses", CHAT_UPSTREAM))
    with client.responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Weather coming."
    assert final.output_text == "Weather coming."
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert call.call_id == "call_w" and json.loads(call.arguments) == {"city": "Oslo"}
    assert final.usage.input_tokens == 21
    assert final.usage.input_tokens_details.cached_tokens == 5


def test_sdk_raises_on_converted_errors():
    client = _anthropic(stream_converter("chat", "messages").error("quota exhausted"))
    try:
        with client.messages.stream(model="m", max_tokens=1, messages=[]) as stream:
            stream.get_final_message()
    except anthropic.APIStatusError as e:
        assert "quota exhausted" in str(e)
    else:
        raise AssertionError("no error raised")
    client = _openai(stream_converter("messages", "chat").error("quota exhausted"))
    try:
        for _ in client.chat.completions.create(model="m", messages=[], stream=True):
            pass
    except openai.APIError as e:
        assert "quota exhausted" in str(e)
    else:
        raise AssertionError("no error raised")


def test_sdks_parse_converted_nonstream_bodies():
    chat = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    body = json.dumps(convert_response("chat", "messages", chat)).encode()
    msg = _anthropic(body, "application/json").messages.create(model="m", max_tokens=5, messages=[])
    assert msg.content[0].text == "ok" and msg.stop_reason == "end_turn"
    body = json.dumps(convert_response("chat", "responses", chat)).encode()
    resp = _openai(body, "application/json").responses.create(model="m", input="x")
    assert resp.output_text == "ok" and resp.status == "completed"
