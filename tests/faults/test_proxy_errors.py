"""Through the proxy, an API client sees only answers in its own format: no
keep-alive race with the listener, JSON for every proxy-level failure."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    free_port,
    proxied_client,
    tokn_process,
    wait_for_rows,
    write_config,
)

KEEP_ALIVE = 0.1  # the listener's keep-alive timeout, short so the race is frequent
CLIENTS = 4
PER_CLIENT = 75


def _client_loop(proxy_url: str, seed: int) -> tuple[list[str], set[int]]:
    """One tunnel; requests spaced around the listener's keep-alive timeout."""
    rng = random.Random(seed)
    failures, ports = [], set()
    with proxied_client(proxy_url, timeout=30) as client:
        for i in range(PER_CLIENT):
            resp = client.post("https://api.openai.com/v1/chat/completions",
                               json={"model": "gpt-4o",
                                     "messages": [{"role": "user", "content": f"n{i}"}]})
            sock = resp.extensions["network_stream"].get_extra_info("socket")
            try:
                ports.add(sock.getsockname()[1])
            except OSError:  # closed after the answer (mitmproxy's errors close it)
                ports.add(-1)
            if resp.status_code != 200:
                failures.append(f"{resp.status_code} {resp.text[:200]}")
            time.sleep(KEEP_ALIVE + rng.uniform(-0.015, 0.015))
    return failures, ports


def test_soak_no_502_around_the_listener_keep_alive_boundary():
    """300 routed requests, each ~keep-alive after the previous one on its tunnel.
    (Without the fix, 24 of 300 got mitmproxy's `502 server closed connection`.)"""
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        write_config({"server": {"keep_alive_secs": KEEP_ALIVE},
                      "usage": {"enabled": False},
                      "accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")]})
        with tokn_process(with_proxy=True) as tokn, ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda seed: _client_loop(tokn.proxy_url, seed),
                                    range(CLIENTS)))
    failures = [f for fails, _ in results for f in fails]
    assert failures == [], f"{len(failures)} of {CLIENTS * PER_CLIENT}: {failures[:3]}"
    assert len(fake.requests_to("/chat/completions")) == CLIENTS * PER_CLIENT
    # each client kept its one tunnel: the fix does not close client connections
    assert all(len(ports) == 1 for _, ports in results)


@pytest.mark.parametrize("mode", ["passthrough", "switch"])
def test_upstream_failures_reach_sdk_clients_as_json_in_their_format(mode, public_ca):
    _, root = public_ca
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    write_config({"proxy_mode": {"route_mode": mode, "upstream_ca_bundle": str(root),
                                 "upstream_overrides": {"api.openai.com": dead,
                                                        "api.anthropic.com": dead}},
                  "accounts": [account("o", "openai", api_key="sk-pooled"),
                               account("c", "anthropic", api_key="sk-ant-pooled")]})
    with tokn_process(with_proxy=True) as tokn:
        http = proxied_client(tokn.proxy_url, timeout=30)
        client = openai.OpenAI(api_key="sk-client", max_retries=0, http_client=http)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="gpt-4o",
                                           messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 502
        assert info.value.response.headers["content-type"] == "application/json"
        error = info.value.response.json()["error"]  # OpenAI's shape
        assert error["message"].startswith("tokn proxy: ") and "Connect" in error["message"]
        assert error["code"] == "proxy_error" and error["type"]

        aclient = anthropic.Anthropic(api_key="sk-ant-client", max_retries=0, http_client=http)
        with pytest.raises(anthropic.APIStatusError) as ainfo:
            aclient.messages.create(model="claude-sonnet-4", max_tokens=10,
                                    messages=[{"role": "user", "content": "x"}])
        assert ainfo.value.status_code == 502
        assert ainfo.value.body["type"] == "error"
        assert ainfo.value.body["error"]["message"].startswith("tokn proxy: ")
        assert "<html" not in ainfo.value.response.text.lower()
        http.close()
        rows = wait_for_rows(2)
    assert [(r["route_mode"], r["status"]) for r in rows] == [(mode, 502)] * 2
    assert all(r["error"].startswith("upstream connection failed: ") for r in rows)
    if mode == "switch":
        assert [r["account"] for r in rows] == ["o", "c"]

