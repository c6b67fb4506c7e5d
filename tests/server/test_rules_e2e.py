"""``[[rules]]`` shaping requests at the fakes, per inbound format (chat,
Messages, Responses), on both front doors (issue 13 item 5)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, applied_env, free_port, proxy_env, running_tokn, write_config

RULES = [
    {"model": "gpt-*", "system_prepend": "You are behind tokn.",
     "defaults": {"reasoning_effort": "low", "max_tokens": 777}, "strip": ["user"]},
    {"provider": "anthropic", "system_append": "Be brief.", "override": {"temperature": 0.2},
     "strip": ["metadata"]},
    {"account": "nobody", "system": "never applied"},
]
CHAT = {"messages": [{"role": "system", "content": "agent"},
                     {"role": "user", "content": "hi"}], "user": "u1"}
MESSAGES = {"system": "agent", "max_tokens": 50, "temperature": 1.0,
            "metadata": {"user_id": "u1"}, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"instructions": "agent", "input": "hi", "user": "u1"}
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages",
         "responses": "/v1/responses"}


@pytest.fixture
def fakes():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-5"]) as oai, \
            FakeLLM(formats={"messages"}, models=["claude-sonnet-4.5"]) as ant:
        yield oai, ant


def _config(oai, ant, port=0):
    write_config({"proxy_mode": {"port": port}, "rules": RULES, "accounts": [
        account("oai", "openai-compatible", api_key="k", base_url=oai.url + "/v1",
                settings={"formats": ["chat"]}),
        account("ant", "anthropic", api_key="k", base_url=ant.url)]})


def _system_text(chat_body):
    return [m["content"] for m in chat_body["messages"] if m["role"] in ("system", "developer")]


@pytest.mark.parametrize("fmt,body", [("chat", CHAT), ("messages", MESSAGES),
                                      ("responses", RESPONSES)])
def test_rules_shape_every_inbound_format_on_the_listener(fakes, fmt, body):
    oai, ant = fakes
    _config(oai, ant)
    with running_tokn() as tokn:
        for model in ("gpt-5", "claude-sonnet-4.5"):
            resp = httpx.post(tokn.api_url + PATHS[fmt], json={**body, "model": model},
                              timeout=20)
            assert resp.status_code == 200, resp.text
        # the client's own setting wins over a default
        mine = {**body, "model": "gpt-5", **({"reasoning": {"effort": "high"}}
                                             if fmt == "responses" else
                                             {"reasoning_effort": "high"}
                                             if fmt == "chat" else {})}
        assert httpx.post(tokn.api_url + PATHS[fmt], json=mine, timeout=20).status_code == 200
    (to_gpt, mine_sent), (to_claude,) = [r.json for r in oai.requests_to(
        "/v1/chat/completions")], [r.json for r in ant.requests_to("/v1/messages")]
    # the gpt-* rule: a system prompt first, defaults, `user` stripped
    assert "\n\n".join(_system_text(to_gpt)) == "You are behind tokn.\n\nagent"
    assert "user" not in to_gpt
    if fmt == "chat":
        assert (to_gpt["reasoning_effort"], to_gpt["max_tokens"]) == ("low", 777)
        assert mine_sent["reasoning_effort"] == "high"
    elif fmt == "responses":
        assert to_gpt["reasoning_effort"] == "low"
        assert to_gpt.get("max_tokens", to_gpt.get("max_completion_tokens")) == 777
        assert mine_sent["reasoning_effort"] == "high"
    else:  # the client's max_tokens wins; effort lands in output_config (not chat's)
        assert to_gpt["max_tokens"] == 50
    # the anthropic rule: appended system prompt, temperature overridden, no metadata
    system = to_claude["system"]
    text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
    assert text.startswith("agent") and text.endswith("Be brief.")
    assert "never applied" not in text
    assert to_claude["temperature"] == 0.2 and "metadata" not in to_claude


def test_rules_apply_through_the_proxy_route_mode(fakes):
    oai, ant = fakes
    port = free_port()
    _config(oai, ant, port)
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env):
        client = openai.OpenAI(api_key="sk-client", max_retries=0)
        resp = client.chat.completions.create(model="gpt-5", user="u1", messages=[
            {"role": "user", "content": "via proxy"}])
        assert resp.choices[0].message.content == "echo: via proxy"
    (sent,) = [r.json for r in oai.requests_to("/v1/chat/completions")]
    assert _system_text(sent) == ["You are behind tokn."]
    assert sent["reasoning_effort"] == "low" and "user" not in sent
