"""The Gemini converters against the Google fakes, which validate like Google does:
converted requests are accepted, answers convert back, signatures survive multi-turn
tool use through chat and Anthropic clients, and streams read right."""

from __future__ import annotations

import json

import httpx
import pytest
from google import genai
from google.genai import types

from tests.fakes.google import FakeCodeAssist, FakeGeminiAPI
from tokn.convert import convert_request, convert_response
from tokn.convert.gemini import (
    GeminiToChatStream,
    chat_request_to_gemini,
    gemini_request_to_chat,
    gemini_response_to_chat,
)
from tokn.convert.gemini.base import decode_call_id, split_target
from tokn.convert.gemini.wire import (
    api_path,
    code_assist_path,
    count_tokens_body,
    error_reason,
    retry_delay,
    wrap_code_assist_request,
)
from tokn.sse import SSEParser

KEY = "AIzaSy-fake-gemini-key"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}


@pytest.fixture
def api():
    with FakeGeminiAPI() as fake:
        yield fake
        assert not fake.handler_errors


def send(api: FakeGeminiAPI, chat_body: dict) -> httpx.Response:
    model, stream, body = split_target(chat_request_to_gemini(chat_body))
    method = "streamGenerateContent" if stream else "generateContent"
    return httpx.post(api.url + api_path(model, method), json=body,
                      headers={"x-goog-api-key": KEY})


def test_chat_tool_loop_on_gemini_3_keeps_the_signature_in_the_call_id(api):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the weather in Paris?"}]
    body = {"model": "gemini-3-pro-preview", "messages": messages, "tools": [WEATHER]}
    first = send(api, body)
    assert first.status_code == 200, first.text
    chat = gemini_response_to_chat(first.json())
    msg = chat["choices"][0]["message"]
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    call = msg["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert api.brain.issued(decode_call_id(call["id"])[1])
    # an OpenAI client keeps only the standard fields and echoes the id
    assistant = {"role": "assistant", "content": msg["content"], "tool_calls": [
        {"id": call["id"], "type": "function", "function": call["function"]}]}
    messages += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    second = send(api, body)
    assert second.status_code == 200, second.text
    assert gemini_response_to_chat(second.json())["choices"][0]["message"]["content"] == \
        "tool said: sunny"
    # without the signature Gemini 3 refuses (what the id scheme prevents)
    messages[2] = {**assistant, "tool_calls": [{**assistant["tool_calls"][0], "id": "plain"}]}
    messages[3] = {**messages[3], "tool_call_id": "plain"}
    refused = send(api, body)
    assert refused.status_code == 400 and "thought_signature" in refused.text


def test_anthropic_client_tool_loop_through_chat_to_gemini_3(api):
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    body = {"model": "gemini-3-pro-preview", "max_tokens": 500, "messages": msgs,
            "tools": [{"name": "get_weather", "description": "w",
                       "input_schema": WEATHER["function"]["parameters"]}]}
    first = send(api, convert_request("messages", "chat", body))
    reply = convert_response("chat", "messages", gemini_response_to_chat(first.json()))
    use = next(b for b in reply["content"] if b["type"] == "tool_use")
    assert reply["stop_reason"] == "tool_use"
    msgs += [{"role": "assistant", "content": reply["content"]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                           "content": "cloudy"}]}]
    second = send(api, convert_request("messages", "chat", body))
    assert second.status_code == 200, second.text
    final = convert_response("chat", "messages", gemini_response_to_chat(second.json()))
    assert final["content"][-1] == {"type": "text", "text": "tool said: cloudy"}


def test_thoughts_and_text_signature_survive_a_chat_client(api):
    body = {"model": "gemini-2.5-flash", "reasoning_effort": "low",
            "messages": [{"role": "user", "content": "hi"}]}
    first = gemini_response_to_chat(send(api, body).json())["choices"][0]["message"]
    assert first["reasoning_content"] == "thinking about: hi"
    assert api.brain.issued(first["reasoning_signature"])
    body["messages"] += [first, {"role": "user", "content": "again"}]
    sent = send(api, body)
    assert sent.status_code == 200, sent.text
    model_turn = api.requests[-1].json["contents"][1]
    assert model_turn["parts"][0] == {"text": "thinking about: hi", "thought": True,
                                      "thoughtSignature": first["reasoning_signature"]}


def chat_frames(raw: bytes) -> list:
    """A Gemini (or Code Assist) SSE answer through :class:`GeminiToChatStream`."""
    stage = GeminiToChatStream()
    frames = []
    parser = SSEParser()
    for ev in parser.feed(raw) + parser.close():
        frames += stage.feed(ev.event, json.loads(ev.data))
    return frames + stage.close()


def test_stream_from_the_fake_reads_into_chat(api):
    r = send(api, {"model": "gemini-2.5-flash", "stream": True, "reasoning_effort": "medium",
                   "messages": [{"role": "user", "content": "one two"}]})
    frames = chat_frames(r.content)
    chunks = [d for _, d in frames if d != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    thought = "".join(c["choices"][0]["delta"].get("reasoning_content") or ""
                      for c in chunks if c["choices"])
    assert (text, thought) == ("echo: one two", "thinking about: one two")
    assert frames[-1] == (None, "[DONE]")
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0


def test_sdk_requests_convert_and_are_accepted_again(api):
    """A Gemini client's real bodies (google-genai's mixed casing) -> chat -> Gemini."""
    c = genai.Client(api_key=KEY, http_options={"base_url": api.url})
    try:
        c.models.generate_content(
            model="gemini-2.5-flash",
            contents=[types.Part.from_bytes(data=b"\x89PNG-bytes", mime_type="image/png"),
                      "describe"],
            config=types.GenerateContentConfig(
                system_instruction="terse", temperature=0.3, max_output_tokens=64,
                thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True),
                safety_settings=[types.SafetySetting(category="HARM_CATEGORY_HARASSMENT",
                                                     threshold="BLOCK_ONLY_HIGH")],
                tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
                    name="lookup", parameters=types.Schema(
                        type="OBJECT", properties={"q": types.Schema(type="STRING")}))])]))
    finally:
        c.close()
    captured = api.requests[-1].json
    assert "mime_type" in captured["contents"][0]["parts"][0]["inlineData"]  # snake inside
    chat = gemini_request_to_chat({**captured, "model": "gemini-2.5-flash"})
    assert chat["reasoning_effort"] == "low" and chat["max_tokens"] == 64
    assert chat["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"q": {"type": "string"}}}
    again = send(api, chat)
    assert again.status_code == 200, again.text
    assert api.requests[-1].meta["images"] == [("image/png", 10)]


def test_count_tokens_bodies_are_accepted(api):
    gemini = chat_request_to_gemini({"model": "gemini-2.5-flash", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "x" * 40}]})
    r = httpx.post(api.url + api_path("gemini-2.5-flash", "countTokens"),
                   json=count_tokens_body(gemini), headers={"x-goog-api-key": KEY})
    assert r.status_code == 200 and r.json()["totalTokens"] > 10
    plain = {k: v for k, v in gemini.items() if k != "systemInstruction"}
    r = httpx.post(api.url + api_path("gemini-2.5-flash", "countTokens"),
                   json=count_tokens_body(plain), headers={"x-goog-api-key": KEY})
    assert r.json()["totalTokens"] == 11


def test_quota_error_parsing_against_the_fake(api):
    api.exhaust_quota(retry_in=12.5)
    r = send(api, {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429
    assert retry_delay(r.json()) == 12  # RetryInfo says whole seconds; it is trusted first


def test_code_assist_round_trip_with_the_envelope():
    with FakeCodeAssist(access_tokens={"ya29.t"}) as fake:
        gemini = chat_request_to_gemini({
            "model": "gemini-2.5-pro", "stream": True, "reasoning_effort": "high",
            "messages": [{"role": "user", "content": "ping"}]})
        env = wrap_code_assist_request(gemini, project=fake.project, user_prompt_id="p1")
        r = httpx.post(fake.url + code_assist_path("streamGenerateContent"), json=env,
                       headers={"Authorization": "Bearer ya29.t"})
        assert r.status_code == 200, r.text
        chunks = [d for _, d in chat_frames(r.content) if d != "[DONE]"]
        assert chunks[0]["id"].startswith("chatcmpl-")  # the traceId
        assert "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in chunks if c["choices"]) == "echo: ping"
        env["request"]["contents"] = []
        whole = httpx.post(fake.url + code_assist_path("generateContent"), json=env,
                           headers={"Authorization": "Bearer ya29.t"})
        assert whole.status_code == 400
        fake.exhaust_quota()
        env = wrap_code_assist_request(chat_request_to_gemini({
            "model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "x"}]}),
            project=fake.project)
        err = httpx.post(fake.url + code_assist_path("generateContent"), json=env,
                         headers={"Authorization": "Bearer ya29.t"}).json()
        assert error_reason(err) == "QUOTA_EXHAUSTED" and retry_delay(err) == 33740.91
        count = httpx.post(fake.url + code_assist_path("countTokens"),
                           json=count_tokens_body(gemini, code_assist=True),
                           headers={"Authorization": "Bearer ya29.t"})
        assert count.json() == {"totalTokens": 2}
        assert not fake.handler_errors
