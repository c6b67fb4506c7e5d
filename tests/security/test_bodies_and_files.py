"""Issue 12.6 and 12.7: deeply nested JSON is a 400 and an oversized body a 413,
in the caller's format, on the listener and through the proxy; the log file
stays 0600 across rotation; LAN mode on h11 < 0.16 says so at start."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h11
import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config
from tests.security.helpers import (
    KEY,
    basic,
    http_request,
    lan_address,
    raw,
    recv_all,
    status_of,
)
from tokn.initiator import has_image

JSON = {"content-type": "application/json"}
REPO = Path(__file__).resolve().parents[2]


def _port(handle) -> int:
    return int(handle.proxy_url.rsplit(":", 1)[1])


def _nested(depth: int) -> bytes:
    return ('{"model":"gpt-4o","messages":[{"role":"user","content":' + "[" * depth
            + "]" * depth + "}]}").encode()


@pytest.fixture
def fake():
    with FakeLLM(formats={"chat", "messages"}, path_prefix="/v1", models=["gpt-4o"]) as server:
        write_config({"server": {"max_body_mb": 1},
                      "accounts": [account("p", "openai-compatible", base_url=server.url + "/v1",
                                           settings={"formats": ["chat", "messages"]})]})
        yield server


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
@pytest.mark.parametrize("path,anthropic", [("/v1/chat/completions", False),
                                            ("/v1/messages", True),
                                            ("/v1/responses", False)])
def test_deep_json_is_a_400_in_the_callers_format(fake, depth, path, anthropic):
    with running_tokn() as t:
        got = httpx.post(t.api_url + path, content=_nested(depth), headers=JSON, timeout=30)
        ok = httpx.post(t.api_url + "/v1/chat/completions", content=_nested(20), headers=JSON)
    assert got.status_code == 400, got.text
    body = got.json()
    if anthropic:
        assert body["type"] == "error" and "nests" in body["error"]["message"]
    else:
        assert "nests" in body["error"]["message"]
    assert ok.status_code != 500  # depth 20 is ordinary JSON: reaches the pipeline
    assert fake.requests_to("/messages") == [] and fake.requests_to("/responses") == []


def test_deep_json_through_the_proxy_route_mode(fake):
    write_config({"accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    with running_tokn(with_proxy=True, listener_public=False) as t:
        answer = raw(_port(t), http_request("POST", "http://api.anthropic.com/v1/messages",
                                        {"host": "api.anthropic.com", **JSON}, _nested(5_000)))
    assert status_of(answer) == 400, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["type"] == "error"


def test_has_image_is_iterative():
    deep: list = []
    cursor = deep
    for _ in range(100_000):
        cursor.append([])
        cursor = cursor[0]
    cursor.append({"type": "image_url", "image_url": {"url": "data:,"}})
    assert has_image(deep) is True
    assert has_image([[[[{"type": "text", "text": "x"}]]]]) is False


def test_oversized_bodies_are_a_413_in_the_callers_format(fake):
    big = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"x" * 1_100_000 + b'"}]}'

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    with running_tokn() as t:
        declared = httpx.post(t.api_url + "/v1/chat/completions", content=big, headers=JSON)
        chunked = httpx.post(t.api_url + "/v1/messages", content=chunks(), headers=JSON)
        fits = httpx.post(t.api_url + "/v1/chat/completions", headers=JSON,
                          content=big.replace(b"x" * 200_000, b""))
    assert declared.status_code == 413 and "max_body_mb" in declared.json()["error"]["message"]
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "request_too_large"
    assert fits.status_code == 200
    assert len(fake.requests_to("/chat/completions")) == 1 and fake.requests_to("/messages") == []


def test_a_50_mb_body_is_refused_before_it_is_read(fake):
    with running_tokn() as t:
        port = int(t.api_url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(http_request("POST", "/v1/chat/completions",
                                  [("host", "127.0.0.1"), *JSON.items(),
                                   ("content-length", str(50 * 1024 * 1024))]))
        answer = recv_all(sock)  # nothing of the body sent: the answer comes anyway
        sock.close()
    assert status_of(answer) == 413, answer


def test_oversized_bodies_through_the_proxy(fake):
    write_config({"server": {"api_key": KEY, "max_body_mb": 1},
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    big = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"x" * 3_000_000 + b'"}]}'
    auth = {"host": "api.anthropic.com", "proxy-authorization": basic(), **JSON}
    with running_tokn(with_proxy=True, api_key=KEY, listener_public=False) as t:
        routed = raw(_port(t), http_request("POST", "http://api.anthropic.com/v1/messages", auth,
                                            big))
        sock = socket.create_connection(("127.0.0.1", _port(t)), timeout=10)
        sock.sendall(http_request("POST", "http://api.anthropic.com/v1/messages",
                                  [*auth.items(), ("transfer-encoding", "chunked")]))
        for i in range(0, len(big), 65536):
            piece = big[i:i + 65536]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break
        try:
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        chunked = recv_all(sock)
        sock.close()
    for answer in (routed, chunked):
        assert status_of(answer) == 413, answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["type"] == "error"  # Anthropic's
    assert fake.requests == []


def test_rotated_log_file_stays_private(tmp_path, monkeypatch):
    from tokn import logs
    from tokn.config import Config

    monkeypatch.setattr(logs, "MAX_BYTES", 2048)
    old_umask = os.umask(0o022)
    try:
        cfg = Config()
        cfg.logging.file = str(tmp_path / "tokn.log")
        logs.setup_logging(cfg)
        log = logging.getLogger("tokn.request")
        for i in range(200):
            log.info("request %d %s", i, "x" * 64)
    finally:
        os.umask(old_umask)
        for handler in list(logging.getLogger("tokn").handlers):
            logging.getLogger("tokn").removeHandler(handler)
            handler.close()
    files = sorted(tmp_path.glob("tokn.log*"))
    assert len(files) == 1 + logs.BACKUPS  # rotated several times
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: "0o600" for f in files}


def test_lan_mode_start_warns_on_old_h11(tmp_path):
    lan = lan_address()
    if lan is None:
        pytest.skip("no non-loopback address on this machine")
    out = tmp_path / "serve.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokn", "serve", "--host", lan, "--port", "0",
             "--with-proxy", "--proxy-host", lan, "--proxy-port", "0",
             "--insecure-allow-remote", "--api-key", KEY], cwd=REPO, stdout=fh,
            stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "400"})
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    text = out.read_text()
    assert "LAN bootstrap:" in text, text
    old = tuple(int(x) for x in h11.__version__.split(".")[:2]) < (0, 16)
    assert ("CVE-2025-43859" in text) is old, text
    if old:
        assert text.count("CVE-2025-43859") == 1


def test_loopback_start_does_not_warn():
    from tokn.server.lan import old_h11_warning

    assert old_h11_warning("0.16.0") is None and old_h11_warning("1.0.0") is None
    assert "Python >= 3.12" in old_h11_warning("0.14.0")


def test_proxy_route_hop_and_lan_paths_still_work_with_every_guard_on(fake):
    """The in-process hop (mitmproxy -> listener with the internal secret) and
    the LAN bootstrap paths on the proxy port pass the listener's gate."""
    write_config({"server": {"cors_origins": []},
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    with running_tokn(with_proxy=True) as t:
        port = _port(t)
        routed = raw(port, http_request(
            "POST", "http://api.openai.com/v1/chat/completions",
            {"host": "api.openai.com", "content-type": "text/plain"},
            b'{"model":"gpt-4o","messages":[{"role":"user","content":"hop"}]}'))
        boot = httpx.get(f"http://127.0.0.1:{port}/-/lan/bootstrap.json", trust_env=False)
        t.runtime.usage.flush()
        rows = usage_rows(t.runtime.usage.path)
    # the gate's content-type rule is for browsers on the listener port; the hop passes
    assert status_of(routed) == 200 and b"echo: hop" in routed
    assert boot.status_code == 200 and boot.json()["proxy_url"].endswith(f":{port}")
    assert [r["front_door"] for r in rows] == ["proxy"]


def test_an_early_413_reaches_a_client_still_sending(fake):
    """The answer comes before the body is read, and the connection is not reset
    under it: the client can finish sending and use the connection again."""
    size = 8 * 1024 * 1024
    with running_tokn() as t:
        port = int(t.api_url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(http_request("POST", "/v1/chat/completions",
                                  [("host", "127.0.0.1"), *JSON.items(),
                                   ("content-length", str(size))]))
        sock.sendall(b"x" * (1024 * 1024))
        early = recv_all(sock)
        for _ in range(size // (1024 * 1024) - 1):
            sock.sendall(b"x" * (1024 * 1024))  # no reset while the rest goes out
        sock.sendall(http_request("GET", "/healthz", {"host": "127.0.0.1"}))
        again = recv_all(sock)
        sock.close()
    assert status_of(early) == 413 and status_of(again) == 200


def test_a_big_routed_body_streams_through_the_proxy_intact(fake):
    # over 1 MiB (and chunked, of unknown size): streamed to the listener as it
    # arrives, not held by the proxy; the upstream gets it whole
    write_config({"server": {"api_key": KEY, "max_body_mb": 8},
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    text = "y" * 3_000_000
    big = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    auth = {"host": "api.openai.com", "proxy-authorization": basic(), **JSON}
    with running_tokn(with_proxy=True, api_key=KEY, listener_public=False) as t:
        routed = raw(_port(t), http_request("POST", "http://api.openai.com/v1/chat/completions",
                                            auth, big.encode()))
        sock = socket.create_connection(("127.0.0.1", _port(t)), timeout=10)
        sock.sendall(http_request("POST", "http://api.openai.com/v1/chat/completions",
                                  [*auth.items(), ("transfer-encoding", "chunked")]))
        data = big.encode()
        for i in range(0, len(data), 65536):
            piece = data[i:i + 65536]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        chunked = recv_all(sock)
        sock.close()
    for answer in (routed, chunked):
        assert status_of(answer) == 200, answer[:300]
    sent = fake.requests_to("/chat/completions")
    assert len(sent) == 2
    assert all(json.loads(r.body)["messages"][0]["content"] == text for r in sent)
    rows = usage_rows()
    assert [r["status"] for r in rows] == [200, 200]
    assert all(r["front_door"] == "proxy" and r["bytes_in"] == len(data) for r in rows)
