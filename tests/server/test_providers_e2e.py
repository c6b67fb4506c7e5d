"""API-key providers end to end: Z.ai, OpenAI, Anthropic through the listener with
the official SDKs; routing across providers by model, with failover."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config


@pytest.fixture
def three():
    with FakeLLM(formats={"chat"}, path_prefix="/api/coding/paas/v4",
                 models=["glm-4.6", "glm-4.5-air"], auth={"zai-key"}) as zai, \
            FakeLLM(formats={"chat", "responses", "embeddings"}, path_prefix="/v1",
                    models=["gpt-4.1", "glm-4.6"], auth={"sk-openai"}) as oai, \
            FakeLLM(formats={"messages"}, models=["claude-opus-4.1"],
                    auth={"sk-ant"}) as ant:
        write_config({"pool": {"strategy": "fill_first"}, "accounts": [
            account("zai", "zai-coding-plan", api_key="zai-key",
                    base_url=zai.url + "/api/coding/paas/v4"),
            account("oai", "openai", api_key="sk-openai", base_url=oai.url + "/v1"),
            account("ant", "anthropic", api_key="sk-ant", base_url=ant.url),
        ]})
        yield zai, oai, ant


def test_each_provider_through_the_listener_stream_and_not(three, caplog):
    zai, oai, ant = three
    caplog.set_level(logging.DEBUG)
    with running_tokn() as tokn:
        oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="client-dummy-key")
        ac = anthropic.Anthropic(base_url=tokn.api_url, api_key="client-dummy-key")
        for model in ("glm-4.6", "gpt-4.1", "claude-opus-4.1"):
            resp = oc.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"hi {model}"}])
            assert resp.choices[0].message.content == f"echo: hi {model}"
            text = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
                model=model, stream=True, messages=[{"role": "user", "content": "streaming"}])
                if c.choices)
            assert text == "echo: streaming"
            with ac.messages.stream(model=model, max_tokens=64, messages=[
                    {"role": "user", "content": "anthropic sdk"}]) as s:
                assert s.get_final_message().content[0].text == "echo: anthropic sdk"
    assert zai.requests_to("/api/coding/paas/v4/chat/completions")
    assert ant.requests_to("/v1/messages") and not ant.requests_to("/chat/completions")
    assert all(r.headers["x-api-key"] == "sk-ant" for r in ant.requests_to("/v1/messages"))
    assert "client-dummy-key" not in caplog.text


def test_glm_thinking_injected_only_for_reasoning_models_never_over_clients(three):
    zai, _, _ = three
    with running_tokn() as tokn:
        oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
        oc.chat.completions.create(model="zai/glm-4.6",
                                   messages=[{"role": "user", "content": "think"}])
        oc.chat.completions.create(model="zai/glm-4.6", extra_body={"thinking": {
            "type": "disabled"}}, messages=[{"role": "user", "content": "mine"}])
    sent = [r.json for r in zai.requests_to("/chat/completions")]
    assert sent[0]["thinking"] == {"type": "enabled", "clear_thinking": False}
    assert sent[1]["thinking"] == {"type": "disabled"}


def test_route_by_model_across_providers_with_failover(three):
    zai, oai, _ = three
    with running_tokn() as tokn:
        oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
        raw = oc.chat.completions.with_raw_response.create(
            model="glm-4.6", messages=[{"role": "user", "content": "a"}])
        assert raw.headers["x-tokn-provider"] == "zai-coding-plan"
        raw = oc.chat.completions.with_raw_response.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "b"}])
        assert raw.headers["x-tokn-provider"] == "openai"
        zai.fail_next(500)  # glm-4.6 is also served by the OpenAI-style account
        raw = oc.chat.completions.with_raw_response.create(
            model="glm-4.6", messages=[{"role": "user", "content": "c"}])
        assert raw.headers["x-tokn-account"] == "oai"
        assert raw.parse().choices[0].message.content == "echo: c"
        # X-Provider header and provider/ prefix pin the provider
        raw = oc.chat.completions.with_raw_response.create(
            model="openai/glm-4.6", messages=[{"role": "user", "content": "d"}])
        assert raw.headers["x-tokn-account"] == "oai"


def test_sticky_sessions_keep_an_account_and_escape_when_it_fails():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m"]) as fb:
        write_config({"pool": {"sticky_sessions": True}, "accounts": [
            account("a", "openai-compatible", base_url=fa.url + "/v1"),
            account("b", "openai-compatible", base_url=fb.url + "/v1")]})
        with running_tokn() as tokn:
            oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)

            def who(session):
                return oc.chat.completions.with_raw_response.create(
                    model="m", messages=[{"role": "user", "content": "s"}],
                    extra_headers={"x-session-id": session}).headers["x-tokn-account"]

            first = who("s1")
            assert {who("s1") for _ in range(6)} == {first}
            other = {"a": fb, "b": fa}[first]
            pinned = {"a": fa, "b": fb}[first]
            pinned.fail_next(503)
            escaped = who("s1")
            assert escaped != first
            assert other.requests_to("/chat/completions")
            assert {who("s1") for _ in range(3)} == {escaped}
