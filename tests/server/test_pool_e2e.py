"""Failover, cooldowns and the all-down 503, with real servers and the SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config
from tokn import state


def _two(fa, fb, **pool):
    write_config({"pool": {"strategy": "fill_first", "failure_cooldown_secs": 60, **pool},
                  "accounts": [account("a", "openai-compatible", base_url=fa.url + "/v1"),
                               account("b", "openai-compatible", base_url=fb.url + "/v1")]})


def _ask(client, text="hi", **kw):
    return client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": text}], **kw)


def test_429_fails_over_to_b_and_a_cools_down_until_retry_after():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb)
        fa.fail_next(429, retry_after=120)
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="m1", messages=[{"role": "user", "content": "first"}])
            assert raw.headers["x-tokn-account"] == "b"
            assert raw.parse().choices[0].message.content == "echo: first"
            # fill_first would pick a again, but a is resting: b serves
            assert _ask(client).choices[0].message.content == "echo: hi"
            health = tokn.runtime.pool.health["a"]
            assert 110 < health.cooldown_until - time.time() <= 120
            assert "429" in health.last_error
        assert len(fa.requests_to("/chat/completions")) == 1
        assert len(fb.requests_to("/chat/completions")) == 2
    saved = state.read("health")
    assert saved["a"]["failures"] == 1
    from tokn.cli import app

    listing = CliRunner().invoke(app, ["account", "list", "--json"])
    if listing.exit_code == 0:
        rows = {r["id"]: r for r in json.loads(listing.stdout)}
        assert "cool" in json.dumps(rows["a"]).lower()


def test_all_accounts_down_gives_503_with_retry_time():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb)
        fa.fail_next(503, count=5)
        fb.fail_next(500, count=5)
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as first:
                _ask(client)
            assert first.value.status_code in (500, 503)
            with pytest.raises(openai.APIStatusError) as second:
                _ask(client)
            assert second.value.status_code == 503
            assert "cooling down" in second.value.message
            assert int(second.value.response.headers["retry-after"]) > 0


def test_success_clears_failures_and_cooldown_doubles():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb, failure_cooldown_secs=0.2, max_cooldown_secs=10)
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            pool = tokn.runtime.pool
            fa.fail_next(500)
            _ask(client)
            first = pool.health["a"].cooldown_until - time.time()
            time.sleep(0.25)
            fa.fail_next(500)
            _ask(client)
            second = pool.health["a"].cooldown_until - time.time()
            assert pool.health["a"].failures == 2
            assert second > first * 1.5  # 0.2 s, then 0.4 s
            time.sleep(0.45)
            assert _ask(client).choices[0].message.content == "echo: hi"
            assert pool.health["a"].failures == 0 and pool.health["a"].last_error == ""


def test_client_errors_are_not_failed_over():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb)
        fa.fail_next(400, body={"error": {"message": "bad param", "type": "invalid_request_error",
                                          "param": None, "code": None}})
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.BadRequestError, match="bad param"):
                _ask(client)
            assert tokn.runtime.pool.health["a"].failures == 0
        assert not fb.requests_to("/chat/completions")


def test_mid_stream_drop_ends_with_error_event_and_no_retry():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb)
        fa.mode = "drop_mid_stream"
        body = {"model": "m1", "stream": True,
                "messages": [{"role": "user", "content": "a b c d e f g h"}]}
        with running_tokn() as tokn, \
                httpx.stream("POST", tokn.api_url + "/v1/chat/completions", json=body) as resp:
            lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        events = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
        assert any(e.get("choices") for e in events)  # content arrived before the drop
        assert "error" in events[-1]
        assert "upstream" in events[-1]["error"]["message"]
        assert not fb.requests_to("/chat/completions")  # nothing retried after first byte


def test_unknown_model_404_lists_close_matches_and_bad_json_400():
    with FakeLLM(formats={"chat", "embeddings"}, path_prefix="/v1",
                 models=["gpt-4.1", "gpt-4o"]) as fa:
        # strict: an unserved GPT id is not resolved to the nearest served one
        write_config({"models": {"fallback": "strict"},
                      "accounts": [account("a", "openai-compatible", base_url=fa.url + "/v1")]})
        with running_tokn(api_key="s3cret") as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="s3cret",
                                   max_retries=0)
            with pytest.raises(openai.NotFoundError, match="gpt-4.1"):
                client.chat.completions.create(
                    model="gpt-4.2", messages=[{"role": "user", "content": "x"}])
            emb = client.embeddings.create(model="gpt-4o", input=["a", "b"])
            assert len(emb.data) == 2
            bad = httpx.post(tokn.api_url + "/v1/chat/completions", content=b"{nope",
                             headers={"authorization": "Bearer s3cret",
                                      "content-type": "application/json"})
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
            denied = httpx.post(tokn.api_url + "/v1/messages", json={},
                                headers={"x-api-key": "wrong"})
            assert denied.status_code == 401
            assert denied.json()["type"] == "error"  # Anthropic shape on /v1/messages
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="nope",
                              max_retries=0).models.list()
