"""Agents' default models through both front doors: an unserved id resolves to
the nearest served one (visible in ``x-tokn-model``, the usage row and the log
line); an id that cannot resolve is a 404 in the caller's format, logged and
recorded."""

from __future__ import annotations

import logging

import anthropic
import httpx
import openai
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    applied_env,
    free_port,
    proxy_env,
    running_tokn,
    usage_rows,
    write_config,
)

SERVED = ["claude-sonnet-4.5", "claude-opus-4.1", "claude-opus-4.5", "gpt-4.1", "gpt-5",
          "gpt-5-mini"]


@pytest.fixture
def fake():
    with FakeLLM(formats={"chat", "responses", "messages"}, path_prefix="/v1",
                 models=SERVED) as upstream:
        yield upstream


def _config(fake, port: int = 0, **models):
    write_config({"proxy_mode": {"port": port}, "models": models, "accounts": [
        account("up", "openai-compatible", base_url=fake.url + "/v1", api_key="sk-up",
                settings={"formats": ["chat", "responses", "messages"]})]})


def _rows(tokn):
    tokn.runtime.usage.flush()
    return usage_rows(tokn.runtime.usage.path)


def _claude_code_default(ac, text):
    """Claude Code's default Opus id, whole and streamed: served by the newest Opus."""
    raw = ac.messages.with_raw_response.create(
        model="claude-opus-4-8[1m]", max_tokens=32, messages=[{"role": "user", "content": text}])
    assert raw.headers["x-tokn-model"] == "claude-opus-4.5"
    assert raw.parse().content[0].text == f"echo: {text}"
    with ac.messages.stream(model="claude-opus-4-8[1m]", max_tokens=32,
                            messages=[{"role": "user", "content": "streamed"}]) as s:
        assert s.response.headers["x-tokn-model"] == "claude-opus-4.5"
        assert s.get_final_message().content[0].text == "echo: streamed"


def test_claude_code_and_codex_defaults_resolve_on_the_listener(fake, caplog):
    _config(fake)
    caplog.set_level(logging.INFO, logger="tokn.request")
    with running_tokn() as tokn:
        ac = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
        _claude_code_default(ac, "hello")
        oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
        raw = oc.responses.with_raw_response.create(model="gpt-6.2-sol", input="hi codex")
        assert raw.headers["x-tokn-model"] == "gpt-5"
        assert raw.parse().output_text == "echo: hi codex"
        with oc.responses.with_streaming_response.create(
                model="gpt-6.2-sol", input="stream codex", stream=True) as resp:
            assert resp.headers["x-tokn-model"] == "gpt-5"
            assert "stream codex" in "".join(resp.iter_lines())
        rows = _rows(tokn)
    assert [m.meta["model"] for m in fake.requests if m.meta.get("model")] == \
        ["claude-opus-4.5", "claude-opus-4.5", "gpt-5", "gpt-5"]
    assert [(r["model_requested"], r["model_served"], r["status"]) for r in rows] == [
        ("claude-opus-4-8[1m]", "claude-opus-4.5", 200),
        ("claude-opus-4-8[1m]", "claude-opus-4.5", 200),
        ("gpt-6.2-sol", "gpt-5", 200), ("gpt-6.2-sol", "gpt-5", 200)]
    lines = [r.getMessage() for r in caplog.records if r.name == "tokn.request"]
    assert any("claude-opus-4-8[1m] -> claude-opus-4.5 200" in line for line in lines), lines
    assert any("gpt-6.2-sol -> gpt-5 200" in line for line in lines), lines


def test_glob_alias_wins_over_nearest_and_models_lists_aliases(fake):
    _config(fake, aliases={"claude-opus-*": "claude-sonnet-4.5", "fast": "gpt-5-mini",
                           "gone": "no-such-model"})
    with running_tokn() as tokn:
        resp = httpx.post(tokn.api_url + "/v1/messages", json={
            "model": "claude-opus-4-8[1m]", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200 and resp.headers["x-tokn-model"] == "claude-sonnet-4.5"
        # a served Opus is not redirected by the glob
        resp = httpx.post(tokn.api_url + "/v1/messages", json={
            "model": "claude-opus-4.5", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]})
        assert resp.headers["x-tokn-model"] == "claude-opus-4.5"
        listing = httpx.get(tokn.api_url + "/v1/models").json()["data"]
        ac = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
        anthropic_ids = {m.id: m.display_name for m in ac.models.list()}
    by_id = {m["id"]: m for m in listing}
    assert by_id["fast"]["x_tokn"] == {"alias": True, "alias_of": "gpt-5-mini",
                                       "resolves_to": "gpt-5-mini", "accounts": ["up"],
                                       "display_name": "fast (alias of gpt-5-mini)"}
    assert anthropic_ids["fast"] == "fast (alias of gpt-5-mini)" and "gpt-5" in anthropic_ids
    assert "gone" not in by_id and "claude-opus-*" not in by_id  # unserved; a pattern
    assert not by_id["gpt-5"]["x_tokn"].get("alias")


def test_unresolvable_model_is_a_404_in_the_callers_format_logged_and_recorded(fake, caplog):
    _config(fake, fallback="strict")
    caplog.set_level(logging.INFO, logger="tokn.request")
    with running_tokn() as tokn:
        ac = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as err:
            ac.messages.create(model="claude-opus-4-8[1m]", max_tokens=16,
                               messages=[{"role": "user", "content": "x"}])
        assert err.value.body["type"] == "error"
        assert "strict" in err.value.body["error"]["message"]
        oc = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as err:
            oc.responses.create(model="llama-9", input="x")
        assert err.value.body["code"] == "model_not_found"
        rows = _rows(tokn)
    assert not any(r.meta.get("model") for r in fake.requests)
    assert [(r["model_requested"], r["status"], r["model_served"]) for r in rows] == [
        ("claude-opus-4-8[1m]", 404, None), ("llama-9", 404, None)]
    assert all("does not exist" in r["error"] for r in rows)
    lines = [r.getMessage() for r in caplog.records if r.name == "tokn.request"]
    assert sum(" 404 " in line and "does not exist" in line for line in lines) == 2, lines


def test_resolution_through_the_proxy_route_mode(fake):
    port = free_port()
    _config(fake, port)
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False) as tokn, \
            applied_env(env):
        ac = anthropic.Anthropic(api_key="sk-ant-client", max_retries=0)
        _claude_code_default(ac, "via proxy")
        oc = openai.OpenAI(api_key="sk-client", max_retries=0)
        raw = oc.responses.with_raw_response.create(model="gpt-6.2-sol", input="codex")
        assert raw.headers["x-tokn-model"] == "gpt-5"
        with pytest.raises(openai.NotFoundError):
            oc.chat.completions.create(model="llama-9",
                                       messages=[{"role": "user", "content": "x"}])
        rows = _rows(tokn)
    assert [(r["front_door"], r["model_requested"], r["model_served"], r["status"])
            for r in rows] == [
        ("proxy", "claude-opus-4-8[1m]", "claude-opus-4.5", 200),
        ("proxy", "claude-opus-4-8[1m]", "claude-opus-4.5", 200),
        ("proxy", "gpt-6.2-sol", "gpt-5", 200), ("proxy", "llama-9", None, 404)]
