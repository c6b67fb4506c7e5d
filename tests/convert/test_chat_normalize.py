import json

import httpx
import openai

from tokn.convert import stream_converter


def _sse(*chunks):
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def _chunk(choices, usage=None):
    c = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "claude-sonnet-4",
         "choices": choices}
    if usage:
        c["usage"] = usage
    return c


QUIRKY = _sse(
    _chunk([{"index": 0, "delta": {"role": "assistant", "content": "Let me check."}}]),
    _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"},
            {"index": 1, "delta": {"tool_calls": [{"index": 1, "id": "call_a", "type": "function",
                                                    "function": {"name": "weather",
                                                                 "arguments": ""}}]}}]),
    _chunk([{"index": 1, "delta": {"tool_calls": [{"index": 1,
                                                    "function": {"arguments": '{"city":'}}]}}]),
    _chunk([{"index": 1, "delta": {"tool_calls": [{"index": 1,
                                                    "function": {"arguments": '"Paris"}'}}]},
             "finish_reason": "tool_calls"}]),
    _chunk([], usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
)


def test_normalized_stream_parses_in_openai_sdk_accumulator():
    conv = stream_converter("chat", "chat", normalize=True)
    out = b"".join(conv.feed(QUIRKY[i:i + 7]) for i in range(0, len(QUIRKY), 7)) + conv.close()
    assert out.count(b"[DONE]") == 1
    transport = httpx.MockTransport(lambda r: httpx.Response(
        200, content=out, headers={"content-type": "text/event-stream"}))
    client = openai.OpenAI(base_url="http://x/v1", api_key="k",
                           http_client=httpx.Client(transport=transport))
    with client.chat.completions.stream(model="m", messages=[]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert [c.index for c in final.choices] == [0]
    assert choice.message.content == "Let me check."
    assert choice.message.tool_calls[0].id == "call_a"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert choice.finish_reason == "tool_calls"
    assert conv.usage.output_tokens == 5


def test_without_normalize_bytes_pass_unchanged():
    conv = stream_converter("chat", "chat")
    assert conv.feed(QUIRKY) + conv.close() == QUIRKY
