"""Regression tests for bugs a review found (each failed before its fix)."""

from __future__ import annotations

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


def _one(fake, **extra):
    write_config({"pool": {"strategy": "fill_first"}, **extra,
                  "accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")]})


def _two(fa, fb, **extra):
    write_config({"pool": {"strategy": "fill_first"}, **extra,
                  "accounts": [account("a", "openai-compatible", base_url=fa.url + "/v1"),
                               account("b", "openai-compatible", base_url=fb.url + "/v1")]})


def _chat(text="hi", **kw):
    return {"model": "m1", "messages": [{"role": "user", "content": text}], **kw}


def _rows(runtime):
    runtime.usage.flush()
    return usage_rows(runtime.usage.path)


def test_single_account_transient_500_does_not_lock_the_only_account():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        fake.fail_next(500)
        with running_tokn() as tokn:
            first = httpx.post(tokn.api_url + "/v1/chat/completions", json=_chat())
            assert first.status_code == 500
            # the upstream is fine again; the retry must reach it
            second = httpx.post(tokn.api_url + "/v1/chat/completions", json=_chat())
            assert second.status_code == 200, second.text


def test_transient_models_listing_failure_is_not_cached_for_ten_minutes():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        fake.fail_next(503, endpoint="/models")
        with running_tokn() as tokn:
            first = httpx.post(tokn.api_url + "/v1/chat/completions", json=_chat())
            assert first.status_code in (404, 502, 503)
            second = httpx.post(tokn.api_url + "/v1/chat/completions", json=_chat())
            assert second.status_code == 200, second.text


def test_stream_without_include_usage_gets_no_usage_only_chunk():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            stream = client.chat.completions.create(
                model="m1", stream=True, messages=[{"role": "user", "content": "a b c"}])
            # what many clients do: every chunk must have a choice when usage was not asked
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        assert text == "echo: a b c"


def test_stream_request_answered_with_json_still_streams_to_the_client():
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m1",
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "json answer"}}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        fake.fail_next(200, body=completion)
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            stream = client.chat.completions.create(
                model="m1", stream=True, messages=[{"role": "user", "content": "x"}])
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "json answer"


def test_failover_row_keeps_the_model_the_client_asked_for():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb, models={"aliases": {"fast": "m1"}})
        fa.fail_next(500)
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions",
                              json={**_chat(), "model": "fast"})
            assert resp.status_code == 200
            rows = _rows(tokn.runtime)
        assert [r["account"] for r in rows] == ["a", "b"]
        assert [r["model_requested"] for r in rows] == ["fast", "fast"]


def test_upstream_body_cut_mid_json_gives_error_in_callers_format_and_fails_over():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fa, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fb:
        _two(fa, fb)
        fa.mode = "drop_mid_stream"  # non-stream: half the body, then the socket closes
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions", json=_chat())
            rows = _rows(tokn.runtime)
        assert resp.headers["content-type"].startswith("application/json"), resp.text
        assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] \
            == "echo: hi"
        assert rows and rows[0]["account"] == "a"


def test_model_id_with_slash_served_verbatim_is_not_hijacked_by_provider_prefix():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["openai/gpt-4o"]) as router, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o-mini"]) as oai:
        write_config({"accounts": [
            account("router", "openai-compatible", base_url=router.url + "/v1"),
            account("work", "openai", base_url=oai.url + "/v1", api_key="sk-x")]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions",
                              json={**_chat(), "model": "openai/gpt-4o"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-tokn-account"] == "router"


def test_stream_options_null_is_not_a_500():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions",
                              json=_chat(stream=True, stream_options=None))
        assert resp.status_code == 200, resp.text


def test_object_user_field_with_sticky_sessions_is_not_a_500():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        write_config({"pool": {"sticky_sessions": True},
                      "accounts": [account("a", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/messages",
                              json={"model": "m1", "max_tokens": 10,
                                    "metadata": {"user_id": {"org": 1}},
                                    "messages": [{"role": "user", "content": "hi"}]})
        # Anthropic's API answers this body with a 400 too: user_id is a string
        assert resp.status_code == 400, resp.text
        assert "`metadata.user_id` must be a string, not an object" in \
            resp.json()["error"]["message"]


def test_route_mode_large_request_goes_to_the_pool_not_the_original_host(public_ca,
                                                                         tls_context_for):
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                 ssl_context=tls_context_for("api.openai.com")) as real, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as pooled:
        port = free_port()
        write_config({"proxy_mode": {"port": port, "upstream_ca_bundle": str(root),
                                     "upstream_overrides": {
                                         "api.openai.com": f"127.0.0.1:{real.port}"}},
                      "accounts": [account("local", "openai-compatible",
                                           base_url=pooled.url + "/v1", api_key="sk-local")]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = openai.OpenAI(api_key="sk-dummy-client", max_retries=0)
            big = "x " * 700_000  # ~1.4 MB body, like a long agent context
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": big}])
        assert not real.requests_to("/chat/completions"), \
            real.requests_to("/chat/completions")[0].headers
        assert pooled.requests_to("/chat/completions")


def test_proxy_key_blocks_large_plain_http_request_before_it_is_forwarded():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as target:
        port = free_port()
        write_config({"proxy_mode": {"port": port}, "accounts": []})
        with running_tokn(with_proxy=True, proxy_port=port, api_key="secret-key",
                          listener_public=False) as tokn, \
                httpx.Client(proxy=tokn.proxy_url, trust_env=False) as client:
                small = client.post(target.url + "/v1/chat/completions", json=_chat())
                assert small.status_code == 407
                assert not target.requests_to("/chat/completions")
                client.post(target.url + "/v1/chat/completions",
                            json=_chat("x " * 700_000))
        assert not target.requests_to("/chat/completions"), "forwarded without proxy auth"


@pytest.mark.parametrize("path,body", [
    ("/v1/messages", {"model": "m1", "max_tokens": 5, "messages": "hi"}),
    ("/v1/messages/count_tokens", {"model": "m1", "messages": [None]}),
    ("/v1/responses", {"model": "m1", "input": 5}),
])
def test_malformed_body_is_a_400_in_the_callers_format(path, body):
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        _one(fake)
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + path, json=body)
        assert resp.status_code == 400, resp.text
        assert "error" in resp.json()
