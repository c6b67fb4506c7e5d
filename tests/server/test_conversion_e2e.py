"""Official SDKs against tokn, served by upstreams that speak another format."""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest

from tests.fakes.llm import THINKING_SIGNATURE, FakeLLM
from tests.helpers import account, applied_env, free_port, proxy_env, running_tokn, write_config

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}]
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")).decode()


def _blocks(message):
    """Content blocks as comparable tuples (stream and non-stream SDK classes differ)."""
    return [(b.type, getattr(b, "text", None), getattr(b, "name", None),
             getattr(b, "input", None)) for b in message.content]


@pytest.fixture
def chat_only():
    """A Copilot-style upstream that speaks only chat completions."""
    with FakeLLM(formats={"chat"}, models=["claude-sonnet-4.5"], copilot_quirks=True) as fake:
        write_config({"accounts": [account("chat", "openai-compatible", base_url=fake.url,
                                           api_key="k")]})
        yield fake


def test_anthropic_sdk_over_chat_only_upstream(chat_only):
    with running_tokn() as tokn:
        client = anthropic.Anthropic(base_url=tokn.api_url, api_key="x")
        kw = dict(model="claude-sonnet-4-5-20250929", max_tokens=256, system="Be brief.")
        plain = client.messages.create(messages=[{"role": "user", "content": "hello"}], **kw)
        assert plain.content[0].text == "echo: hello"
        assert plain.stop_reason == "end_turn"
        assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0

        with client.messages.stream(messages=[{"role": "user", "content": "hello"}], **kw) as s:
            streamed = s.get_final_message()
        assert _blocks(streamed) == _blocks(plain)
        assert streamed.stop_reason == plain.stop_reason

        # tool use round trip: tool_use -> tool_result -> answer
        ask = [{"role": "user", "content": "weather in Paris?"}]
        with client.messages.stream(messages=ask, tools=TOOLS, **kw) as s:
            called = s.get_final_message()
        tool_use = next(b for b in called.content if b.type == "tool_use")
        assert called.stop_reason == "tool_use"
        assert tool_use.name == "get_weather" and tool_use.input == {"location": "Paris",
                                                                      "unit": "celsius"}
        non_stream = client.messages.create(messages=ask, tools=TOOLS, **kw)
        assert [b[0] for b in _blocks(non_stream)] == [b[0] for b in _blocks(called)]
        assert next(b for b in non_stream.content if b.type == "tool_use").input == \
            tool_use.input
        answer = client.messages.create(tools=TOOLS, messages=ask + [
            {"role": "assistant", "content": [b.model_dump() for b in called.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                          "content": "18C and sunny"}]}], **kw)
        assert answer.content[0].text == "tool said: 18C and sunny"

        # an image
        seen = client.messages.create(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "text", "text": "what is this"}]}], **kw)
        assert seen.content[0].text == "echo: what is this"
    sent = chat_only.requests_to("/chat/completions")
    assert sent[0].json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent[0].json["model"] == "claude-sonnet-4.5"  # dated, dashed id normalised
    assert sent[-1].meta["had_image"]
    tool_msg = next(m for m in sent[-2].json["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == tool_use.id


def test_anthropic_sdk_via_proxy_route_mode(chat_only):
    port = free_port()
    write_config({"proxy_mode": {"port": port}, "accounts": [
        account("chat", "openai-compatible", base_url=chat_only.url, api_key="k")]})
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env):
        client = anthropic.Anthropic(api_key="dummy")
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
                                    messages=[{"role": "user", "content": "through"}]) as s:
            assert "".join(s.text_stream) == "echo: through"
        count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[
            {"role": "user", "content": "count these words please " * 20}])
        assert count.input_tokens > 20


def test_native_messages_upstream_passes_bytes_and_thinking_signatures():
    with FakeLLM(formats={"messages"}, models=["claude-opus-4.1"]) as fake:
        write_config({"accounts": [account("native", "anthropic", base_url=fake.url,
                                           api_key="sk-ant")]})
        with running_tokn() as tokn:
            client = anthropic.Anthropic(base_url=tokn.api_url, api_key="x")
            kw = dict(model="claude-opus-4-1-20250805", max_tokens=2048,
                      thinking={"type": "enabled", "budget_tokens": 1024},
                      messages=[{"role": "user", "content": "think"}])
            with client.messages.stream(**kw) as s:
                streamed = s.get_final_message()
            thinking = next(b for b in streamed.content if b.type == "thinking")
            assert thinking.signature == THINKING_SIGNATURE
            again = client.messages.create(model="claude-opus-4.1", max_tokens=2048,
                                           thinking={"type": "enabled", "budget_tokens": 1024},
                                           messages=[kw["messages"][0], {
                                               "role": "assistant",
                                               "content": [b.model_dump() for b in
                                                           streamed.content]},
                                               {"role": "user", "content": "more"}])
            assert again.content[-1].text == "echo: more"
    # the signature went back upstream untouched, and no chat call was made
    assert THINKING_SIGNATURE in fake.requests[-1].meta["thinking_signatures"]
    assert not fake.requests_to("/chat/completions")


def test_openai_responses_over_chat_only_upstream(chat_only):
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
        resp = client.responses.create(model="claude-sonnet-4.5", input="hi responses",
                                       instructions="terse")
        assert resp.output_text == "echo: hi responses"
        with client.responses.stream(model="claude-sonnet-4.5", input="streamed") as s:
            final = s.get_final_response()
        assert final.output_text == "echo: streamed"
        assert final.usage.input_tokens > 0


def test_chat_completions_served_by_responses_only_model():
    with FakeLLM(formats={"chat", "responses"}, copilot_style=True,
                 models=["gpt-5-codex"], responses_only_models={"gpt-5-codex"}) as fake:
        write_config({"accounts": [account("cp", "openai-compatible", base_url=fake.url,
                                           api_key="k", settings={"formats": ["chat",
                                                                              "responses"]})]})
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            resp = client.chat.completions.create(
                model="gpt-5-codex", messages=[{"role": "user", "content": "codex"}])
            assert resp.choices[0].message.content == "echo: codex"
            chunks = list(client.chat.completions.create(
                model="gpt-5-codex", stream=True,
                messages=[{"role": "user", "content": "codex stream"}]))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
                "echo: codex stream"
    assert fake.requests_to("/responses")
