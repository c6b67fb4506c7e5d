"""Conversion fidelity end to end (issue 23 and Codex's namespace tools): the
official SDKs and raw HTTP against tokn, served by fakes of another format."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pydantic
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import THINKING_SIGNATURE, FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config
from tests.server.test_copilot_e2e import COPILOT_MODELS


class Weather(pydantic.BaseModel):
    city: str
    temp_c: float


WEATHER = {"city": "Oslo", "temp_c": 4.5}
ASK = [{"role": "user", "content": "Weather in Oslo as JSON"}]


def _anthropic_fake(model: str, **kw):
    fake = FakeLLM(formats={"messages"}, models=[model], tool_arguments=WEATHER, **kw)
    fake.__enter__()
    write_config({"accounts": [account("claude", "anthropic", base_url=fake.url,
                                       api_key="sk-ant")]})
    return fake


@pytest.mark.parametrize("model,native", [("claude-sonnet-4-20250514", False),
                                          ("claude-sonnet-4-5-20250929", True)])
def test_openai_parse_against_a_messages_only_upstream(model, native):
    fake = _anthropic_fake(model)
    try:
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            parsed = client.chat.completions.parse(model=model, messages=ASK,
                                                   response_format=Weather)
            with client.chat.completions.stream(model=model, messages=ASK,
                                                response_format=Weather) as stream:
                final = stream.get_final_completion()
            responses = client.responses.parse(model=model, input="Weather in Oslo as JSON",
                                               text_format=Weather)
    finally:
        fake.__exit__(None, None, None)
    assert parsed.choices[0].message.parsed == Weather(**WEATHER)
    assert parsed.choices[0].finish_reason == "stop"
    assert final.choices[0].message.parsed == Weather(**WEATHER)
    assert responses.output_parsed == Weather(**WEATHER)
    sent = fake.requests_to("/v1/messages")
    assert len(sent) == 3
    for req in sent:
        if native:  # structured outputs: the schema as output_config.format, no tool
            assert req.json["output_config"]["format"]["schema"]["required"] == ["city", "temp_c"]
            assert "tools" not in req.json
        else:  # a forced tool whose input schema is the requested schema
            assert req.json["tool_choice"] == {"type": "tool", "name": "Weather"}
            assert req.json["tools"][0]["input_schema"]["properties"].keys() == {"city", "temp_c"}


def test_response_format_with_thinking_is_not_refused():
    """Anthropic rejects a forced tool with thinking on (the fake too): tokn asks
    for the tool instead, and the answer still parses."""
    fake = _anthropic_fake("claude-sonnet-4-20250514")
    try:
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            parsed = client.chat.completions.parse(
                model="claude-sonnet-4", messages=[{"role": "user", "content": "weather"}],
                response_format=Weather, reasoning_effort="low", max_tokens=4000)
    finally:
        fake.__exit__(None, None, None)
    sent = fake.requests_to("/v1/messages")[0].json
    assert sent["tool_choice"] == {"type": "auto"} and sent["thinking"]["type"] == "enabled"
    assert "`Weather` tool" in sent["system"]
    assert parsed.choices[0].message.parsed == Weather(**WEATHER)


def test_signed_and_redacted_thinking_survive_a_chat_client():
    """Anthropic upstream -> chat client -> back: thinking and redacted_thinking
    blocks reach the upstream again unchanged (stream and non-stream)."""
    fake = _anthropic_fake("claude-sonnet-4-5-20250929", redacted_thinking="UkVEQUNURUQ=")
    try:
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            kw = dict(model="claude-sonnet-4-5", reasoning_effort="low", max_tokens=4000)
            first = client.chat.completions.create(messages=ASK, **kw).choices[0].message
            with client.chat.completions.stream(messages=ASK, **kw) as stream:
                streamed = stream.get_final_completion().choices[0].message
            for message in (first, streamed):
                client.chat.completions.create(messages=[
                    *ASK, message.model_dump(exclude_none=True),
                    {"role": "user", "content": "and tomorrow?"}], **kw)
    finally:
        fake.__exit__(None, None, None)
    for back in fake.requests_to("/v1/messages")[2:]:
        assert back.meta["thinking_signatures"] == [THINKING_SIGNATURE]
        assert back.meta["redacted_thinking"] == ["UkVEQUNURUQ="]


CLAUDE_CODE_LIKE = {
    "model": "claude-sonnet-4-5-20250929", "max_tokens": 256,
    "metadata": {"user_id": json.dumps({"device_id": "0", "account_uuid": "",
                                        "session_id": "8e70985b-3301-4ee3-8f90-d4203d1804e7"})},
    "system": [{"type": "text", "text": "You are Claude Code. " * 50,
                "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hello",
                                               "cache_control": {"type": "ephemeral"}}]}],
}


def test_copilot_claude_gets_its_cache_markers_and_usage_shows_cache_reads():
    with FakeGitHub(token_ttl=1800) as gh, \
            FakeLLM(copilot_style=True, models=COPILOT_MODELS,
                    token_validator=gh.is_valid_copilot_token, cached_tokens=100,
                    cache_needs_marker=True) as api:
        gh.copilot_api_url = api.url
        write_config({"accounts": [account("copilot", "github-copilot", github_token="gho_test",
                                           settings={"github_api_url": gh.url,
                                                     "github_base_url": gh.url})]})
        with running_tokn() as tokn:
            client = anthropic.Anthropic(base_url=tokn.api_url, api_key="x")
            reply = client.messages.create(**CLAUDE_CODE_LIKE)
    assert reply.usage.cache_read_input_tokens == 100
    sent = api.requests_to("/chat/completions")[-1].json
    assert sent["messages"][0]["copilot_cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][1]["copilot_cache_control"] == {"type": "ephemeral"}
    assert "prompt_cache_key" not in sent  # not a documented Copilot chat field
    row = usage_rows()[-1]
    assert row["cache_read_tokens"] == 100 and row["provider"] == "github-copilot"


def test_openrouter_gets_part_breakpoints_and_usage_shows_cache_reads_and_writes():
    with FakeLLM(formats={"chat"}, models=["anthropic/claude-sonnet-4.5"], cached_tokens=100,
                 cache_creation_tokens=20, cache_needs_marker=True) as fake:
        write_config({"accounts": [account("or", "openrouter", base_url=fake.url,
                                           api_key="sk-or")]})
        with running_tokn() as tokn:
            client = anthropic.Anthropic(base_url=tokn.api_url, api_key="x")
            reply = client.messages.create(**{**CLAUDE_CODE_LIKE,
                                              "model": "anthropic/claude-sonnet-4.5"})
            with client.messages.stream(**{**CLAUDE_CODE_LIKE,
                                           "model": "anthropic/claude-sonnet-4.5"}) as s:
                streamed = s.get_final_message()
    assert reply.usage.cache_read_input_tokens == 100
    assert reply.usage.cache_creation_input_tokens == 20
    assert streamed.usage.cache_read_input_tokens == 100
    sent = fake.requests_to("/chat/completions")[0].json
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    rows = usage_rows()
    assert [(r["cache_read_tokens"], r["cache_write_tokens"]) for r in rows] == [(100, 20)] * 2


def test_openai_gets_a_prompt_cache_key_from_the_claude_code_session():
    with FakeLLM(formats={"chat", "responses"}, models=["gpt-4.1"], cached_tokens=50) as fake:
        write_config({"accounts": [account("oa", "openai", base_url=fake.url,
                                           api_key="sk-x")]})
        with running_tokn() as tokn:
            client = anthropic.Anthropic(base_url=tokn.api_url, api_key="x")
            client.messages.create(**{**CLAUDE_CODE_LIKE, "model": "gpt-4.1"})
    sent = fake.requests_to("/chat/completions")[0].json
    assert sent["prompt_cache_key"] == "8e70985b-3301-4ee3-8f90-d4203d1804e7"
    assert "cache_control" not in json.dumps(sent)  # OpenAI caches without markers
    assert usage_rows()[-1]["cache_read_tokens"] == 50


NAMESPACED = {
    "model": "claude-sonnet-4.5", "input": "What's the weather? Ask a sub-agent.",
    "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
               "tools": [{"type": "function", "name": "spawn_agent",
                          "parameters": {"type": "object",
                                         "properties": {"location": {"type": "string"}}}}]},
              {"type": "web_search", "external_web_access": False}],
}


def test_codex_namespace_tools_through_a_chat_only_upstream(caplog):
    with FakeLLM(formats={"chat"}, models=["claude-sonnet-4.5"]) as fake:
        write_config({"accounts": [account("chat", "openai-compatible", base_url=fake.url,
                                           api_key="k")]})
        with caplog.at_level("INFO", logger="tokn.convert"), running_tokn() as tokn:
            whole = httpx.post(tokn.api_url + "/v1/responses", json=NAMESPACED, timeout=10)
            with httpx.stream("POST", tokn.api_url + "/v1/responses", timeout=10,
                              json={**NAMESPACED, "stream": True}) as resp:
                events = [json.loads(line[6:]) for line in resp.iter_lines()
                          if line.startswith("data: ")]
    sent = fake.requests_to("/chat/completions")[0].json
    assert [t["function"]["name"] for t in sent["tools"]] == ["multi_agent_v1__spawn_agent"]
    (call,) = whole.json()["output"]
    assert (call["type"], call["namespace"], call["name"]) == \
        ("function_call", "multi_agent_v1", "spawn_agent")
    assert json.loads(call["arguments"]) == {"location": "Paris", "unit": "celsius"}
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert (done["item"]["namespace"], done["item"]["name"]) == ("multi_agent_v1", "spawn_agent")
    assert "web_search" in caplog.text  # left out, and said so
