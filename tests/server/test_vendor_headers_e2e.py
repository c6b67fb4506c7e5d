"""Vendor headers reach only their vendor's upstreams (issue 13 item 4), through
the listener and the proxy's route mode, in both directions: ``anthropic-*``
only on Anthropic-format calls, ``openai-*`` only to OpenAI."""

from __future__ import annotations

import contextlib

import anthropic
import httpx
import openai
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, applied_env, free_port, proxy_env, running_tokn, write_config

ANTHROPIC_HEADERS = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
                     "anthropic-dangerous-direct-browser-access": "true"}
OPENAI_HEADERS = {"openai-beta": "responses=v1", "openai-organization": "org-client",
                  "openai-project": "proj-client"}


@contextlib.contextmanager
def _front_door(door: str, ant: FakeLLM, oai: FakeLLM):
    port = free_port()
    write_config({"proxy_mode": {"port": port}, "accounts": [
        account("ant", "anthropic", api_key="sk-ant-pool", base_url=ant.url),
        account("oai", "openai", api_key="sk-oai-pool", base_url=oai.url + "/v1")]})
    if door == "listener":
        with running_tokn() as tokn:
            yield {"base_url": tokn.api_url}
        return
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env):
        yield {}


def _vendor(req, prefix: str) -> dict[str, str]:
    return {k.lower(): v for k, v in req.headers.items() if k.lower().startswith(prefix)}


@pytest.mark.parametrize("door", ["listener", "proxy"])
def test_vendor_headers_go_only_to_their_vendor(door):
    with FakeLLM(formats={"messages"}, models=["claude-sonnet-4.5"]) as ant, \
            FakeLLM(formats={"chat", "responses"}, path_prefix="/v1",
                    models=["gpt-5"]) as oai, _front_door(door, ant, oai) as where:
        anthropic_url = where.get("base_url")
        openai_url = anthropic_url + "/v1" if anthropic_url else None
        ac = anthropic.Anthropic(base_url=anthropic_url, api_key="sk-ant-client",
                                 max_retries=0, default_headers=ANTHROPIC_HEADERS)
        oc = openai.OpenAI(base_url=openai_url, api_key="sk-client", max_retries=0,
                           default_headers=OPENAI_HEADERS)
        # an Anthropic client to each upstream
        for model in ("claude-sonnet-4.5", "gpt-5"):
            msg = ac.messages.create(model=model, max_tokens=16,
                                     messages=[{"role": "user", "content": "hi"}])
            assert msg.content[0].text == "echo: hi"
        # an OpenAI client (chat and Responses) to each upstream
        for model in ("claude-sonnet-4.5", "gpt-5"):
            chat = oc.chat.completions.create(model=model,
                                              messages=[{"role": "user", "content": "yo"}])
            assert chat.choices[0].message.content == "echo: yo"
            assert oc.responses.create(model=model, input="r").output_text == "echo: r"
    to_anthropic = ant.requests_to("/v1/messages")
    to_openai = oai.requests_to("/v1/chat/completions") + oai.requests_to("/v1/responses")
    assert len(to_anthropic) == 3 and len(to_openai) == 3
    # Anthropic: the Anthropic client's anthropic-* headers, never openai-*
    first = to_anthropic[0]
    assert _vendor(first, "anthropic-") == {**ANTHROPIC_HEADERS,
                                            "anthropic-version": "2023-06-01"}
    assert all(_vendor(r, "openai-") == {} for r in to_anthropic)
    # the OpenAI clients' calls converted to messages: only tokn's own version
    assert [_vendor(r, "anthropic-") for r in to_anthropic[1:]] == \
        [{"anthropic-version": "2023-06-01"}] * 2
    # OpenAI: the OpenAI client's openai-* headers, never anthropic-*
    assert all(_vendor(r, "anthropic-") == {} for r in to_openai)
    assert [_vendor(r, "openai-") for r in to_openai] == [{}, OPENAI_HEADERS, OPENAI_HEADERS]
    assert all(r.headers["authorization"] == "Bearer sk-oai-pool" for r in to_openai)


def test_the_clients_own_anthropic_version_is_kept_and_openai_headers_stay_home():
    with FakeLLM(formats={"messages"}, models=["claude-sonnet-4.5"]) as ant:
        write_config({"accounts": [account("ant", "anthropic", api_key="k",
                                           base_url=ant.url)]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/messages", headers={
                **ANTHROPIC_HEADERS, **OPENAI_HEADERS, "anthropic-version": "2023-01-01"},
                json={"model": "claude-sonnet-4.5", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "x"}]})
            assert resp.status_code == 200, resp.text
    (sent,) = ant.requests_to("/v1/messages")
    assert _vendor(sent, "anthropic-") == {**ANTHROPIC_HEADERS,
                                           "anthropic-version": "2023-01-01"}
    assert _vendor(sent, "openai-") == {}
