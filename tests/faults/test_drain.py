"""SIGTERM drains: no new work, in-flight requests finish within [server].drain_secs,
what is left ends with a proper error and an honest row; no tracebacks."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, proxied_client, tokn_process, usage_rows, write_config

WORDS = " ".join(["w"] * 24)  # 24 deltas, 0.2 s apart: a stream of about 5 s


def _config(pooled, upstream, root, **server):
    write_config({
        "server": server,
        "proxy_mode": {"upstream_ca_bundle": str(root),
                       "upstream_overrides": {"api.openai.com": f"127.0.0.1:{upstream.port}"}},
        "accounts": [account("a", "openai-compatible", base_url=pooled.url + "/v1")]})


def _streams(tokn):
    """Start three long streams: listener, proxy route, proxy passthrough."""
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": WORDS}]}
    results: dict[str, list[str]] = {}
    started = threading.Barrier(4)

    def run(name, client, url, headers):
        lines: list[str] = []
        results[name] = lines
        with client, client.stream("POST", url, json=body, headers=headers) as resp:
            lines.append(str(resp.status_code))
            first = True
            try:
                for line in resp.iter_lines():
                    if line:
                        lines.append(line)
                        if first:
                            first = False
                            started.wait(10)
            except httpx.HTTPError as exc:
                lines.append(f"broken: {exc!r}")

    openai_url = "https://api.openai.com/v1/chat/completions"
    jobs = [
        ("listener", httpx.Client(timeout=60), tokn.api_url + "/v1/chat/completions", {}),
        ("route", proxied_client(tokn.proxy_url, timeout=60), openai_url, {}),
        ("passthrough", proxied_client(tokn.proxy_url, timeout=60), openai_url,
         {"x-tokn-route-mode": "passthrough", "authorization": "Bearer sk-client"}),
    ]
    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    started.wait(20)  # every stream has its first event
    return threads, results


def _fakes(tls_context_for):
    return (FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], chunk_delay=0.2),
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], chunk_delay=0.2,
                    ssl_context=tls_context_for("api.openai.com")))


def _sigterm_during_streams(tls_context_for, root, drain_secs, during=None):
    """Three long streams, SIGTERM, then wait: (exit code, seconds from the
    signal to the exit, tokn's output, each stream's lines)."""
    pooled, upstream = _fakes(tls_context_for)
    with pooled, upstream:
        _config(pooled, upstream, root, drain_secs=drain_secs)
        with tokn_process(with_proxy=True) as tokn:
            threads, results = _streams(tokn)
            sent = time.monotonic()
            tokn.proc.send_signal(signal.SIGTERM)
            if during is not None:
                during(tokn)
            for t in threads:
                t.join(60)
            code = tokn.proc.wait(60)
            return code, time.monotonic() - sent, tokn.output(), results


def _refuses_new_work(tokn):
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(tokn.api_url + "/healthz")
    with pytest.raises(httpx.HTTPError), proxied_client(tokn.proxy_url, timeout=5) as late:
        late.get("https://api.openai.com/v1/models")


def test_sigterm_lets_streams_finish_and_refuses_new_work(public_ca, tls_context_for):
    code, took, output, results = _sigterm_during_streams(tls_context_for, public_ca[1], 30,
                                                          during=_refuses_new_work)
    assert code == 0, output
    assert "Traceback" not in output
    assert took < 20, took
    for name, lines in results.items():
        assert lines[0] == "200", (name, lines)
        assert lines[-1] == "data: [DONE]", (name, lines[-3:])
    rows = usage_rows()
    assert sorted((r["route_mode"], r["front_door"], r["status"]) for r in rows) == [
        ("passthrough", "proxy", 200), ("route", "listener", 200), ("route", "proxy", 200)]


def test_what_outlives_drain_secs_ends_with_an_error_event_and_a_503_row(public_ca,
                                                                        tls_context_for):
    code, took, output, results = _sigterm_during_streams(tls_context_for, public_ca[1], 1)
    assert code == 0, output
    assert "Traceback" not in output and "Exception" not in output, output
    assert took < 8, took
    reason = "tokn shut down before the answer was complete ([server] drain_secs = 1)"
    for name in ("listener", "route"):  # tokn's own streams end with an error event
        last = json.loads(results[name][-1][6:])
        assert last["error"]["message"] == reason, (name, results[name][-2:])
    # a passthrough stream is the upstream's: it is cut, but its row says why
    assert results["passthrough"][-1] != "data: [DONE]"
    rows = usage_rows()
    assert sorted((r["route_mode"], r["front_door"], r["status"]) for r in rows) == [
        ("passthrough", "proxy", 503), ("route", "listener", 503), ("route", "proxy", 503)]
    assert all(r["error"] == reason for r in rows)
    assert "ending 3 request(s) still in flight after 1 s" in output
