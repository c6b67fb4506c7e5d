"""The official ``google-genai`` SDK against tokn's listener (the Gemini API as an
inbound format), served by a Copilot-style chat-only upstream."""

from __future__ import annotations

import httpx
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    genai_exchanges,
    running_tokn,
    usage_rows,
    wait_for_rows,
    write_config,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"fake-image-bytes"
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"location": {"type": "string"},
                                                             "unit": {"type": "string"}}})])


@pytest.fixture
def chat_only():
    """A Copilot-style upstream that speaks only chat completions."""
    with FakeLLM(formats={"chat"}, models=["gpt-4.1"], copilot_quirks=True) as fake:
        write_config({"accounts": [account("copilot-like", "openai-compatible",
                                           base_url=fake.url, api_key="k")]})
        yield fake


def test_generate_stream_tools_image_count_and_list(chat_only, genai_sdk):
    with running_tokn() as tokn:
        client = genai_sdk(tokn.api_url)
        plain = client.models.generate_content(model="gpt-4.1", contents="hello there",
                                               config={"system_instruction": "Be brief."})
        assert plain.text == "echo: hello there"
        assert plain.candidates[0].finish_reason == types.FinishReason.STOP
        assert plain.usage_metadata.prompt_token_count > 0
        assert plain.usage_metadata.candidates_token_count > 0
        sent = chat_only.requests[-1].json
        assert sent["model"] == "gpt-4.1" and sent["messages"][0] == {
            "role": "system", "content": "Be brief."}

        chunks = list(client.models.generate_content_stream(model="gpt-4.1",
                                                             contents="one two three"))
        assert "".join(c.text or "" for c in chunks) == "echo: one two three"
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
        assert chunks[-1].usage_metadata.candidates_token_count > 0

        # function calling round trip (the call's id comes back with the answer)
        config = types.GenerateContentConfig(tools=[WEATHER])
        ask = types.Content(role="user", parts=[types.Part(text="what is the weather in Paris?")])
        called = client.models.generate_content(model="gpt-4.1", contents=[ask], config=config)
        call = called.function_calls[0]
        assert (call.name, call.args) == ("get_weather", {"location": "Paris", "unit": "celsius"})
        answer = types.Part.from_function_response(name="get_weather",
                                                   response={"output": "sunny"})
        done = client.models.generate_content(
            model="gpt-4.1", config=config,
            contents=[ask, called.candidates[0].content, types.Content(role="user",
                                                                       parts=[answer])])
        assert done.text == "tool said: sunny"
        tool_msg = chat_only.requests[-1].json["messages"][-1]
        assert tool_msg["role"] == "tool" and tool_msg["content"] == "sunny"
        assert tool_msg["tool_call_id"] == chat_only.requests[-1].json["messages"][-2][
            "tool_calls"][0]["id"]

        streamed_call = [c for c in client.models.generate_content_stream(
            model="gpt-4.1", contents=[ask], config=config) if c.function_calls]
        assert streamed_call[-1].function_calls[0].args == {"location": "Paris",
                                                           "unit": "celsius"}

        # an image reaches the chat upstream as a data URL
        seen = client.models.generate_content(model="gpt-4.1", contents=[
            types.Part.from_bytes(data=PNG, mime_type="image/png"), "what is this?"])
        assert seen.text == "echo: what is this?"
        parts = chat_only.requests[-1].json["messages"][-1]["content"]
        assert any(p.get("type") == "image_url" and p["image_url"]["url"].startswith(
            "data:image/png;base64,") for p in parts)

        count = client.models.count_tokens(model="gpt-4.1", contents="x" * 40)
        assert count.total_tokens > 0
        names = [m.name for m in client.models.list()]
        assert "models/gpt-4.1" in names
        one = client.models.get(model="gpt-4.1")
        assert one.name == "models/gpt-4.1" and "generateContent" in one.supported_actions
        with pytest.raises(genai_errors.ClientError) as missing:
            client.models.get(model="no-such-model")
        assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"

        rows = wait_for_rows(6)
        gemini_rows = [r for r in rows if r["inbound_format"] == "gemini"]
        assert gemini_rows and all(r["upstream_format"] == "chat" and r["status"] == 200
                                   for r in gemini_rows)
        assert any(r["stream"] == 1 and r["output_tokens"] > 0 for r in gemini_rows)


def test_v1_paths_and_key_forms(chat_only, genai_sdk):
    """The SDK's ``api_version="v1"`` and every way a Google client sends a key,
    with ``[server].api_key`` set; errors in Google's format."""
    with running_tokn(api_key="sekret") as tokn:
        r = genai_sdk(tokn.api_url, key="sekret", api_version="v1").models.generate_content(
            model="gpt-4.1", contents="hi")
        assert r.text == "echo: hi"
        url = f"{tokn.api_url}/v1beta/models/gpt-4.1:generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        assert httpx.post(f"{url}?key=sekret", json=body).status_code == 200
        assert httpx.get(f"{tokn.api_url}/v1beta/models?key=sekret").status_code == 200
        # only Google's clients put a key in the URL: other APIs refuse it there
        chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{tokn.api_url}/v1/chat/completions?key=sekret",
                          json=chat).status_code == 401
        assert httpx.get(f"{tokn.api_url}/v1/models?key=sekret").status_code == 401
        assert httpx.post(url, json=body, headers={"x-goog-api-key": "sekret"}).status_code == 200
        refused = httpx.post(url, json=body, headers={"x-goog-api-key": "wrong"})
        assert refused.status_code == 401
        assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
        with pytest.raises(genai_errors.ClientError) as err:
            genai_sdk(tokn.api_url, key="wrong").models.generate_content(model="gpt-4.1",
                                                                   contents="hi")
        assert err.value.code == 401
        with pytest.raises(genai_errors.ClientError) as err:
            genai_sdk(tokn.api_url, key="sekret").models.generate_content(model="no-such-model",
                                                                    contents="hi")
        assert err.value.code == 404 and err.value.status == "NOT_FOUND"
        # streamGenerateContent without alt=sse: one JSON array, as Google answers it
        array = httpx.post(url.replace(":generateContent", ":streamGenerateContent"),
                           json=body, headers={"x-goog-api-key": "sekret"})
        assert array.status_code == 200, array.text
        assert array.headers["content-type"].startswith("application/json")
        assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in array.json()] == [
            "echo: hi"]
        bad = httpx.post(url, json={"contents": "nope"}, headers={"x-goog-api-key": "sekret"})
        assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert "`contents` must be an array" in bad.json()["error"]["message"]
    assert not any("sekret" in str(row) for row in usage_rows())


@pytest.mark.parametrize("formats,model", [({"messages"}, "claude-sonnet-4.5"),
                                           ({"responses"}, "gpt-5-codex")])
def test_served_by_messages_and_responses_only_upstreams(formats, model, genai_sdk):
    """Gemini -> chat -> Anthropic messages / OpenAI Responses, and back, streams too."""
    with FakeLLM(formats=formats, models=[model]) as fake:
        write_config({"accounts": [account("up", "openai-compatible", base_url=fake.url,
                                           api_key="k", settings={"formats": sorted(formats)})]})
        with running_tokn() as tokn:
            genai_exchanges(genai_sdk(tokn.api_url), model)
        assert {r.path for r in fake.requests if r.method == "POST"} == {
            "/messages" if "messages" in formats else "/responses"}
    rows = wait_for_rows(6)
    assert {(r["inbound_format"], r["upstream_format"], r["status"]) for r in rows} == {
        ("gemini", next(iter(formats)), 200)}
