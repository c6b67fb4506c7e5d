"""Every stream ends honestly: for the client (a proper error in its format) and
in the usage row (the status and reason of how it really ended)."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.fakes.faults import FaultyLLM
from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    proxied_client,
    tokn_process,
    usage_rows,
    wait_for_rows,
    write_config,
)

CHAT = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}


def _one(fake, **extra):
    write_config({"accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")],
                  **extra})


@pytest.mark.parametrize("fault,reason", [
    ("garbage", "upstream stream ended before its final event"),
    ("not_json", "upstream sent an invalid stream event: '{this is not json'"),
])
def test_garbage_stream_is_an_error_not_an_empty_answer(fault, reason):
    with FaultyLLM(fault=fault, formats={"chat"}, path_prefix="/v1", models=["m1"]) as bad:
        _one(bad)
        with tokn_process() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as info:
                list(client.chat.completions.create(**CHAT))
            assert info.value.status_code == 502
            assert reason in info.value.message
            # Anthropic clients get theirs in Anthropic's shape
            aclient = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as ainfo, aclient.messages.stream(
                    model="m1", max_tokens=20,
                    messages=[{"role": "user", "content": "x"}]) as stream:
                list(stream)
            assert ainfo.value.status_code == 502 and reason in str(ainfo.value)
    rows = usage_rows()
    assert [r["status"] for r in rows] == [502, 502]
    assert all(reason in r["error"] for r in rows)


def test_garbage_from_one_account_fails_over_to_the_next():
    with FaultyLLM(fault="garbage", formats={"chat"}, path_prefix="/v1", models=["m1"]) as bad, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as good:
        write_config({"pool": {"strategy": "fill_first"},
                      "accounts": [account("bad", "openai-compatible", base_url=bad.url + "/v1"),
                                   account("good", "openai-compatible",
                                           base_url=good.url + "/v1")]})
        with tokn_process() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            text = "".join(c.choices[0].delta.content or ""
                           for c in client.chat.completions.create(**CHAT) if c.choices)
    assert text == "echo: a b c d e f"
    assert [(r["account"], r["status"]) for r in usage_rows()] == [("bad", 502), ("good", 200)]


@pytest.mark.parametrize("fault,reason", [
    ("cut", "upstream stream ended before its final event"),
    ("drop", "upstream stream broke: ReadError: [Errno 104] Connection reset by peer"),
    ("error_event", "upstream reported an error mid-stream: Overloaded"),
])
def test_stream_broken_midway_ends_with_an_error_event_and_an_honest_row(fault, reason):
    with FaultyLLM(fault=fault, fault_after=3, formats={"chat"}, path_prefix="/v1",
                   models=["m1"]) as bad:
        _one(bad)
        with tokn_process() as tokn:
            with httpx.stream("POST", tokn.api_url + "/v1/chat/completions", json=CHAT,
                              timeout=30) as resp:
                assert resp.status_code == 200  # it had started
                events = [json.loads(line[6:]) for line in resp.iter_lines()
                          if line.startswith("data: {")]
            aclient = anthropic.Anthropic(base_url=tokn.api_url, api_key="x", max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as info, aclient.messages.stream(
                    model="m1", max_tokens=20,
                    messages=[{"role": "user", "content": "a b c d e f"}]) as stream:
                list(stream)
    assert "error" in events[-1] and "choices" in events[0]
    if fault != "error_event":  # (that one is the upstream's own error, passed through)
        assert reason in events[-1]["error"]["message"]
        assert reason in str(info.value)
    rows = usage_rows()
    assert [r["status"] for r in rows] == [502, 502]
    assert all(reason in r["error"] for r in rows)


def _slow():
    return FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"], chunk_delay=0.2)


def _read_two_events_then_hang_up(client_stream):
    with client_stream as resp:
        assert resp.status_code == 200
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: ")
            if seen == 2:
                break  # leaving the block closes the connection mid-stream


def test_client_that_hangs_up_is_recorded_as_499():
    long = {**CHAT, "messages": [{"role": "user", "content": " ".join(["w"] * 40)}]}
    with _slow() as fake:
        _one(fake)
        with tokn_process() as tokn:
            _read_two_events_then_hang_up(httpx.stream(
                "POST", tokn.api_url + "/v1/chat/completions", json=long, timeout=30))
            # a non-stream request the client gives up on before the answer
            fake.mode, fake.slow_delay = "slow", 3.0
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(tokn.api_url + "/v1/chat/completions", timeout=0.5,
                           json={**long, "stream": False})
            rows = wait_for_rows(2)
    assert [r["status"] for r in rows] == [499, 499], rows
    assert all(r["error"] == "client closed the connection before the answer was complete"
               for r in rows)
    assert rows[0]["latency_ms"] < 5000  # the upstream stream was not read to its end
    assert rows[1]["latency_ms"] < 2500  # nor was the slow answer waited for


def test_through_the_proxy_route_and_passthrough_rows_are_honest(public_ca, tls_context_for):
    _, root = public_ca
    long = {**CHAT, "model": "gpt-4o",
            "messages": [{"role": "user", "content": " ".join(["w"] * 40)}]}
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], chunk_delay=0.2,
                 ssl_context=tls_context_for("api.openai.com")) as upstream, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                    chunk_delay=0.2) as pooled, \
            FaultyLLM(fault="cut", fault_after=3, formats={"chat"}, path_prefix="/v1",
                      models=["gpt-4o"], ssl_context=tls_context_for("api.openai.com")) as cut:
        write_config({
            "proxy_mode": {"upstream_ca_bundle": str(root),
                           "upstream_overrides": {"api.openai.com": f"127.0.0.1:{upstream.port}"}},
            "accounts": [account("a", "openai-compatible", base_url=pooled.url + "/v1")]})
        with tokn_process(with_proxy=True) as tokn, \
                proxied_client(tokn.proxy_url, timeout=30) as client:
            url = "https://api.openai.com/v1/chat/completions"
            for mode in ("route", "passthrough"):
                _read_two_events_then_hang_up(client.stream(
                    "POST", url, json=long, headers={"x-tokn-route-mode": mode,
                                                     "authorization": "Bearer sk-client"}))
            rows = wait_for_rows(2)
            assert sorted((r["route_mode"], r["status"]) for r in rows) == [
                ("passthrough", 499), ("route", 499)], rows
        # an upstream that ends its body without the final event, passed through
        write_config({
            "proxy_mode": {"upstream_ca_bundle": str(root),
                           "upstream_overrides": {"api.openai.com": f"127.0.0.1:{cut.port}"}},
            "usage": {"enabled": True}})
        with tokn_process(with_proxy=True) as tokn, \
                proxied_client(tokn.proxy_url, timeout=30) as client:
            with client.stream("POST", "https://api.openai.com/v1/chat/completions", json=long,
                               headers={"x-tokn-route-mode": "passthrough",
                                        "authorization": "Bearer sk-client"}) as resp:
                body = resp.read().decode()
            assert "[DONE]" not in body  # passthrough: the client got the upstream's bytes
            rows = wait_for_rows(3)
    assert (rows[-1]["route_mode"], rows[-1]["status"]) == ("passthrough", 502)
    assert rows[-1]["error"] == "upstream stream ended before its final event"


class _Upstream:
    """Just enough of an UpstreamResponse for a Relay: chunks, then the end."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks
        self.closed = False

    async def chunks(self):
        for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("dst", ["messages", "chat"])
def test_a_final_event_without_its_blank_line_is_a_clean_end(dst):
    import asyncio

    from tokn.convert import stream_converter
    from tokn.drain import InFlight
    from tokn.streaming import Relay
    from tokn.usage import BodyCapture

    up = _Upstream(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":'
        b'"message","role":"assistant","model":"c","content":[],"usage":{"input_tokens":3}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"hi"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        b'"end_turn"},"usage":{"output_tokens":1}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}')  # no blank line: EOF ends it
    ended = []
    relay = Relay(up, stream_converter("messages", dst), InFlight(), idle_secs=5, drain_secs=1,
                  capture=BodyCapture(None), on_end=lambda ending, sent: ended.append(ending))

    async def run() -> bytes:
        assert await relay.look_ahead(5) is None
        return b"".join([c async for c in relay.body()])

    out = asyncio.run(run()).decode()
    assert ended == [None] and up.closed
    assert "error" not in out
    assert ("message_stop" if dst == "messages" else "data: [DONE]") in out
