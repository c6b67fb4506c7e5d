"""The official openai SDK against `tokn serve`, served by fake GitHub + Copilot."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config

COPILOT_MODELS = [
    {"id": "gpt-4.1", "name": "GPT-4.1", "vendor": "Azure OpenAI", "object": "model",
     "capabilities": {"family": "gpt-4.1", "type": "chat",
                      "limits": {"max_context_window_tokens": 128000},
                      "supports": {"streaming": True, "tool_calls": True}},
     "supported_endpoints": ["/chat/completions", "/responses"]},
    {"id": "claude-sonnet-4.5", "name": "Claude Sonnet 4.5", "vendor": "Anthropic",
     "object": "model",
     "capabilities": {"family": "claude-sonnet-4.5", "type": "chat",
                      "supports": {"streaming": True, "tool_calls": True}},
     "supported_endpoints": ["/chat/completions"]},
    {"id": "text-embedding-3-small", "name": "Embedding", "vendor": "Azure OpenAI",
     "object": "model", "capabilities": {"family": "text-embedding-3-small",
                                         "type": "embeddings"}},
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"location": {"type": "string"}}}}}]


@pytest.fixture
def copilot():
    with FakeGitHub(token_ttl=1800) as gh, \
            FakeLLM(copilot_style=True, copilot_quirks=True, models=COPILOT_MODELS,
                    token_validator=gh.is_valid_copilot_token, enforce_copilot_headers=True,
                    chunk_delay=0.15) as api:
        gh.copilot_api_url = api.url
        write_config({"accounts": [account("copilot", "github-copilot", github_token="gho_test",
                                           settings={"github_api_url": gh.url,
                                                     "github_base_url": gh.url})]})
        yield gh, api


def test_chat_stream_tools_models_embeddings(copilot):
    gh, api = copilot
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
        resp = client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hello copilot"}])
        assert resp.choices[0].message.content == "echo: hello copilot"

        arrivals, text = [], ""
        for chunk in client.chat.completions.create(
                model="gpt-4.1", stream=True,
                messages=[{"role": "user", "content": "a b c d e"}]):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
                text += chunk.choices[0].delta.content
        assert text == "echo: a b c d e"
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert min(gaps) > 0.08 and arrivals[-1] - arrivals[0] > 0.5  # not buffered

        # Claude via Copilot: tool call in choice 1, index 1 - repaired for the SDK
        with client.chat.completions.stream(
                model="claude-sonnet-4.5", tools=TOOLS,
                messages=[{"role": "user", "content": "weather in Paris?"}]) as stream:
            final = stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments)["location"] == "Paris"
        assert final.choices[0].finish_reason == "tool_calls"

        models = client.models.list().data
        ids = {m.id for m in models}
        assert {"gpt-4.1", "claude-sonnet-4.5"} <= ids
        entry = next(m for m in models if m.id == "gpt-4.1").model_extra["x_tokn"]
        assert entry["provider"] == "github-copilot" and entry["account"] == "copilot"
        assert "responses" in entry["formats"]

        emb = client.embeddings.create(model="text-embedding-3-small", input="vector me")
        assert len(emb.data[0].embedding) == 8
    assert gh.exchange_count == 1  # one token exchange served everything
    sent = api.requests_to("/chat/completions")[0]
    assert sent.headers["editor-version"].startswith("vscode/")
    assert sent.headers["copilot-integration-id"] == "vscode-chat"
    assert sent.headers["x-initiator"] == "user"
    assert sent.headers["authorization"].startswith("Bearer tid=")


def test_fifty_concurrent_requests_while_token_expires_one_refresh(copilot):
    gh, api = copilot
    api.chunk_delay = 0
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-4.1",
                                       messages=[{"role": "user", "content": "warm"}])
        assert gh.exchange_count == 1
        gh.revoke_copilot_tokens()  # the cached token now fails with 401
        barrier = threading.Barrier(50)

        def ask(i):
            barrier.wait()
            return client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": f"n{i}"}])

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(ask, range(50)))
    assert [r.choices[0].message.content for r in results] == [f"echo: n{i}" for i in range(50)]
    assert gh.exchange_count == 2  # exactly one refresh for all 50


@pytest.mark.parametrize("where", ["field", "settings"])
def test_usage_row_initiator_is_the_header_copilot_got(where):
    """The usage row's initiator (premium or not) and the x-initiator header come
    from one rule, however the account sets initiator_mode (a field or a setting)."""
    mode = {"initiator_mode": "always_agent"}
    with FakeGitHub() as gh, FakeLLM(copilot_style=True, models=COPILOT_MODELS,
                                     token_validator=gh.is_valid_copilot_token) as api:
        gh.copilot_api_url = api.url
        write_config({"accounts": [account(
            "copilot", "github-copilot", github_token="gho_test", github_api_url=gh.url,
            **(mode if where == "field" else {}),
            settings=mode if where == "settings" else {})]})
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "typed by a person"}])
        sent = api.requests_to("/chat/completions")[-1].headers["x-initiator"]
    assert sent == "agent"
    assert usage_rows()[-1]["initiator"] == sent
