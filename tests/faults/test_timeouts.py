"""[timeouts] against silent and stalling upstreams, through a real tokn process."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai

from tests.fakes.faults import FaultyLLM
from tests.fakes.llm import FakeLLM
from tests.helpers import account, tokn_process, usage_rows, write_config


def _posts(fake):
    return [r for r in fake.requests if r.method == "POST"]


def test_silent_account_fails_over_before_a_byte_and_cools_down():
    with FaultyLLM(fault="silent", formats={"chat"}, path_prefix="/v1", models=["m1"]) as silent, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as healthy:
        write_config({
            "timeouts": {"response_secs": 1, "first_byte_secs": 1},
            "pool": {"strategy": "round_robin", "failure_cooldown_secs": 60},
            "accounts": [account("silent", "openai-compatible", base_url=silent.url + "/v1"),
                         account("healthy", "openai-compatible", base_url=healthy.url + "/v1")]})
        with tokn_process() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0,
                                   timeout=30)
            took = []
            for i in range(4):
                started = time.monotonic()
                if i % 2:
                    stream = client.chat.completions.create(
                        model="m1", stream=True, messages=[{"role": "user", "content": f"s{i}"}])
                    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                else:
                    text = client.chat.completions.create(
                        model="m1", messages=[{"role": "user", "content": f"s{i}"}]
                    ).choices[0].message.content
                took.append(time.monotonic() - started)
                assert text == f"echo: s{i}"
    # the silent account was tried once; round robin then skipped it (cooling down)
    assert len(_posts(silent)) == 1
    assert len(_posts(healthy)) == 4
    assert max(took) >= 0.9, took  # the request that met the silent account waited 1 s
    rows = usage_rows()
    failed = [r for r in rows if r["account"] == "silent"]
    assert len(failed) == 1
    assert failed[0]["status"] == 504
    assert 900 <= failed[0]["latency_ms"] < 10000
    assert "within 1 s ([timeouts] " in failed[0]["error"]
    assert [r["status"] for r in rows if r["account"] == "healthy"] == [200] * 4
    assert "504" in tokn.output() and "[timeouts]" in tokn.output()  # the log line says why


def test_per_account_first_byte_timeout_overrides_the_default():
    with FaultyLLM(fault="silent", formats={"chat"}, path_prefix="/v1", models=["m1"]) as silent, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as healthy:
        write_config({
            "timeouts": {"first_byte_secs": 60},
            "pool": {"strategy": "fill_first"},
            "accounts": [account("silent", "openai-compatible", base_url=silent.url + "/v1",
                                 timeouts={"first_byte_secs": 0.5}),
                         account("healthy", "openai-compatible", base_url=healthy.url + "/v1")]})
        with tokn_process() as tokn:
            started = time.monotonic()
            with httpx.stream("POST", tokn.api_url + "/v1/chat/completions", timeout=60,
                              json={"model": "m1", "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]}) as resp:
                assert resp.status_code == 200
                assert resp.headers["x-tokn-account"] == "healthy"
                body = resp.read().decode()
            elapsed = time.monotonic() - started
    assert "echo" in body and body.endswith("data: [DONE]\n\n")
    assert 0.4 < elapsed < 30  # the account's 0.5 s, not the default 60 s
    (row,) = [r for r in usage_rows() if r["account"] == "silent"]
    assert row["status"] == 504
    assert "0.5 s ([timeouts] first_byte_secs)" in row["error"]


def test_headers_then_silence_fails_over_within_first_byte_secs():
    with FaultyLLM(fault="headers_then_silent", formats={"chat"}, path_prefix="/v1",
                   models=["m1"]) as silent, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as healthy:
        write_config({
            "timeouts": {"first_byte_secs": 1, "stream_idle_secs": 30},
            "pool": {"strategy": "fill_first"},
            "accounts": [account("silent", "openai-compatible", base_url=silent.url + "/v1"),
                         account("healthy", "openai-compatible", base_url=healthy.url + "/v1")]})
        with tokn_process() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            stream = client.chat.completions.create(
                model="m1", stream=True, messages=[{"role": "user", "content": "late"}])
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: late"
    (row,) = [r for r in usage_rows() if r["account"] == "silent"]
    assert row["status"] == 504 and "first_byte_secs" in row["error"]


def _stalling(**kw):
    return FaultyLLM(fault="stall", fault_after=3, formats={"chat"}, path_prefix="/v1",
                     models=["m1"], **kw)


def test_stream_idle_timeout_ends_each_client_format_with_its_error():
    with _stalling() as fake:
        write_config({"timeouts": {"stream_idle_secs": 1},
                      "accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")]})
        with tokn_process() as tokn:
            # OpenAI chat (the upstream's own stream passed through): an error chunk
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            stream = client.chat.completions.create(
                model="m1", stream=True, messages=[{"role": "user", "content": "a b c d e f"}])
            got = []
            try:
                for chunk in stream:
                    got.append(chunk)
                raise AssertionError("the stream ended without an error")
            except openai.APIError as exc:
                assert "stalled: no data for 1 s ([timeouts] stream_idle_secs)" in exc.message
            assert got  # it had started: the error came mid-stream

            # Anthropic messages (converted from chat): `event: error`
            aclient = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
            try:
                with aclient.messages.stream(model="m1", max_tokens=50, messages=[
                        {"role": "user", "content": "a b c d e f"}]) as astream:
                    for _ in astream:
                        pass
                raise AssertionError("the stream ended without an error")
            except anthropic.APIStatusError as exc:
                assert "stalled" in str(exc)

            # OpenAI Responses (converted): `error` then `response.failed`
            events = list(client.responses.create(model="m1", input="a b c d e f", stream=True))
            kinds = [e.type for e in events]
            assert kinds[-2:] == ["error", "response.failed"], kinds
            assert "stalled" in events[-1].response.error.message
    rows = usage_rows()
    assert [r["status"] for r in rows] == [504, 504, 504]
    assert all("stream_idle_secs" in r["error"] for r in rows)


def test_timeouts_config_defaults_overrides_and_one_line_errors():
    import pytest

    from tokn.config import ConfigError, TimeoutsConfig, parse_config

    cfg = parse_config({"timeouts": {"connect_secs": 5},
                        "accounts": [{"id": "a", "provider": "openai",
                                      "timeouts": {"stream_idle_secs": 30}},
                                     {"id": "b", "provider": "openai"}]})
    assert cfg.timeouts == TimeoutsConfig(connect_secs=5.0)
    assert (cfg.timeouts.first_byte_secs, cfg.timeouts.response_secs,
            cfg.timeouts.stream_idle_secs) == (300.0, 600.0, 120.0)
    assert cfg.accounts[0].timeouts == TimeoutsConfig(connect_secs=5.0, stream_idle_secs=30.0)
    assert cfg.accounts[1].timeouts == cfg.timeouts
    assert "timeouts" not in cfg.accounts[0].fields
    for data, needle in [
        ({"timeouts": {"first_byte_secs": 0}},
         "timeouts.first_byte_secs = 0.0 is not valid; must be above 0"),
        ({"timeouts": {"response_secs": "long"}}, "timeouts.response_secs must be a number"),
        ({"server": {"drain_secs": -1}}, "server.drain_secs = -1.0 is not valid; must be above 0"),
        ({"accounts": [{"id": "a", "provider": "openai", "timeouts": {"idle": 3}}]},
         "accounts.a.timeouts.idle is not a timeout; use one of: connect_secs"),
        ({"accounts": [{"id": "a", "provider": "openai", "timeouts": {"connect_secs": 0}}]},
         "accounts.a.timeouts.connect_secs must be above 0"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_config(data, "/x/config.toml")
        assert needle in str(info.value) and "\n" not in str(info.value)
