"""The real proxy, real TLS, real clients, configured by `tokn proxy env`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

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
from tokn import data

ROOT = Path(__file__).resolve().parents[2]


def _config(port, accounts, **proxy_mode):
    write_config({"proxy_mode": {"port": port, **proxy_mode}, "accounts": accounts})


def test_route_mode_stream_arrives_incrementally():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], chunk_delay=0.2) as fake:
        port = free_port()
        _config(port, [account("local", "openai-compatible", base_url=fake.url + "/v1",
                               api_key="sk-local")])
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = openai.OpenAI(api_key="sk-dummy")
            arrivals, text = [], []
            stream = client.chat.completions.create(
                model="gpt-4o", stream=True,
                messages=[{"role": "user", "content": "one two three four five"}])
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.monotonic())
                    text.append(chunk.choices[0].delta.content)
        assert "".join(text) == "echo: one two three four five"
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert len(gaps) >= 4
        # one event every ~200 ms, never all at the end
        assert min(gaps) > 0.1, gaps
        assert arrivals[-1] - arrivals[0] > 0.6


def test_anthropic_sdk_via_proxy_passthrough_reaches_https_upstream(public_ca, tls_context_for):
    _, root = public_ca
    with FakeLLM(formats={"messages"}, ssl_context=tls_context_for("api.anthropic.com"),
                 auth={"sk-ant-client"}) as fake:
        port = free_port()
        _config(port, [], route_mode="passthrough", upstream_ca_bundle=str(root),
                upstream_overrides={"api.anthropic.com": f"127.0.0.1:{fake.port}"})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False) as tokn, \
                applied_env(env):
            client = anthropic.Anthropic(api_key="sk-ant-client")
            msg = client.messages.create(model="claude-sonnet-4", max_tokens=64,
                                         messages=[{"role": "user", "content": "hello"}])
            assert msg.content[0].text == "echo: hello"
            with client.messages.stream(model="claude-sonnet-4", max_tokens=64,
                                        messages=[{"role": "user", "content": "streamed"}]) as s:
                final = s.get_final_message()
            assert final.content[0].text == "echo: streamed"
            tokn.runtime.usage.flush()
            rows = usage_rows(tokn.runtime.usage.path)
        seen = fake.requests[-1]
        assert seen.headers["x-api-key"] == "sk-ant-client"
        assert seen.headers["host"] == "api.anthropic.com"
        assert not any(k.lower().startswith("x-tokn") for k in seen.headers)
        modes = {(r["route_mode"], r["stream"]) for r in rows}
        assert modes == {("passthrough", 0), ("passthrough", 1)}
        assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)


def test_switch_mode_injects_pooled_key_and_never_forwards_client_key(public_ca,
                                                                       tls_context_for):
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                 ssl_context=tls_context_for("api.openai.com"), auth={"sk-pooled"}) as fake:
        port = free_port()
        _config(port, [account("work", "openai", api_key="sk-pooled")],
                route_mode="switch", upstream_ca_bundle=str(root),
                upstream_overrides={"api.openai.com": f"127.0.0.1:{fake.port}"})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = openai.OpenAI(api_key="sk-dummy-client")
            resp = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "switched"}])
        assert resp.choices[0].message.content == "echo: switched"
        seen = fake.requests[-1]
        assert seen.headers["authorization"] == "Bearer sk-pooled"
        assert seen.path == "/v1/chat/completions"
        assert "sk-dummy-client" not in json.dumps(dict(seen.headers))


def test_switch_mode_without_account_says_which_login(public_ca):
    _, root = public_ca
    port = free_port()
    _config(port, [], route_mode="switch", upstream_ca_bundle=str(root))
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env):
        client = anthropic.Anthropic(api_key="dummy", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model="claude-sonnet-4", max_tokens=10,
                                   messages=[{"role": "user", "content": "x"}])
    assert "tokn login --provider anthropic" in str(info.value)


def test_header_mode_invalid_and_unmapped_path():
    port = free_port()
    _config(port, [])
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env), httpx.Client() as client:  # trust_env: proxy + CA from the env block
        bad = client.post("https://api.openai.com/v1/chat/completions",
                          headers={"x-tokn-route-mode": "teleport"}, json={"model": "x"})
        unmapped = client.get("https://api.openai.com/v1/files")
    assert bad.status_code == 400
    assert "route, switch, passthrough" in bad.json()["error"]["message"]
    # not a model endpoint and no credentials to pass it on with: answered at once
    assert unmapped.status_code == 404
    assert "tokn route mode does not serve /v1/files" in unmapped.json()["error"]["message"]


def _tls_server(ctx: ssl.SSLContext):
    """A bare TLS server on loopback answering one HTTP request; returns its port."""
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n"
                                b"\r\nok")
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_non_allowlisted_host_is_tunnelled_with_its_own_certificate(public_ca, tls_context_for):
    _, root = public_ca
    server_ctx = tls_context_for("localhost")
    sock = _tls_server(server_ctx)
    target = sock.getsockname()[1]
    port = free_port()
    _config(port, [])
    try:
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False):
            raw = socket.create_connection(("127.0.0.1", port))
            raw.sendall(f"CONNECT localhost:{target} HTTP/1.1\r\nHost: localhost:{target}"
                        f"\r\n\r\n".encode())
            assert raw.recv(1024).startswith(b"HTTP/1.1 200")
            client_ctx = ssl.create_default_context(cafile=str(root))
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                peer = tls.getpeercert()
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                body = tls.recv(1024)
    finally:
        sock.close()
    issuer = dict(x[0] for x in peer["issuer"])
    assert issuer["commonName"] == "tokn test public root"  # not tokn's CA
    assert body.endswith(b"ok")


def test_curl_with_env_block_and_help_page():
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl not installed")
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        port = free_port()
        _config(port, [account("local", "openai-compatible", base_url=fake.url + "/v1")])
        script = (f'eval "$({sys.executable} -m tokn proxy env --shell bash)" && '
                  f"curl -sS https://api.openai.com/v1/chat/completions "
                  f"-H 'content-type: application/json' "
                  f"""-d '{{"model":"gpt-4o","messages":[{{"role":"user","content":"curl"}}]}}'""")
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False):
            out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                 timeout=60, env=dict(os.environ))
            help_page = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "echo: curl"
        assert help_page.status_code == 200
        assert "tokn proxy env" in help_page.text


def test_mitmdump_with_tokn_addon_routes_like_tokn_proxy():
    mitmdump = Path(sys.executable).with_name("mitmdump")
    if not mitmdump.exists():
        pytest.skip("mitmdump not installed beside this Python")
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        port = free_port()
        _config(port, [account("local", "openai-compatible", base_url=fake.url + "/v1")])
        env = proxy_env()
        proc = subprocess.Popen(
            [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
             "-s", str(data.path("addon"))],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            answer = None
            with applied_env(env):
                while time.monotonic() < deadline:
                    try:
                        answer = openai.OpenAI(api_key="dummy", max_retries=0).chat.completions \
                            .create(model="gpt-4o",
                                    messages=[{"role": "user", "content": "mitmdump"}])
                        break
                    except (openai.APIConnectionError, openai.APIStatusError):
                        time.sleep(0.3)
        finally:
            proc.terminate()
            output = proc.communicate(timeout=15)[0].decode(errors="replace")
        assert answer is not None, output
        assert answer.choices[0].message.content == "echo: mitmdump"


def test_api_key_set_proxy_requires_auth_and_env_block_carries_it():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        port = free_port()
        write_config({"server": {"api_key": "k3y/with:odd@chars"},
                      "proxy_mode": {"port": port},
                      "accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        env = proxy_env()
        assert env["HTTPS_PROXY"] == f"http://tokn:k3y%2Fwith%3Aodd%40chars@127.0.0.1:{port}"
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False):
            with applied_env(env):
                ok = openai.OpenAI(api_key="x").chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "authed"}])
            assert ok.choices[0].message.content == "echo: authed"
            bare = {**env, "HTTPS_PROXY": f"http://127.0.0.1:{port}",
                    "https_proxy": f"http://127.0.0.1:{port}"}
            with applied_env(bare), pytest.raises(httpx.ProxyError, match="407"):
                httpx.post("https://api.openai.com/v1/chat/completions", json={})
