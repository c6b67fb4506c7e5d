"""End-to-end usage accounting: bursts through both front doors, SIGTERM mid-burst,
and a passthrough flow whose usage is read from the SSE stream it observed."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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

N_REQUESTS = 1_000
CONCURRENCY = 50


def _complete(fmt: str, stream: bool, response: httpx.Response, body: bytes) -> bool:
    """The client saw the whole answer: 200 and a finished body/stream."""
    if response.status_code != 200:
        return False
    if stream:
        return (b"data: [DONE]" in body) if fmt == "chat" else (b"message_stop" in body)
    data = json.loads(body)
    return bool(data.get("choices") if fmt == "chat" else data.get("content"))


def _send(client: httpx.Client, url: str, fmt: str, stream: bool, text: str,
          headers: dict[str, str] | None = None) -> bool:
    if fmt == "chat":
        payload = {"model": "gpt-4o", "stream": stream,
                   "messages": [{"role": "user", "content": text}]}
    else:
        payload = {"model": "gpt-4o", "stream": stream, "max_tokens": 64,
                   "messages": [{"role": "user", "content": text}]}
    with client.stream("POST", url, json=payload, headers=headers) as response:
        body = response.read()
    return _complete(fmt, stream, response, body)


def test_burst_of_1000_mixed_requests_through_listener_and_proxy_loses_no_row():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port},
                      "accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        env = proxy_env()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        with running_tokn(with_proxy=True, proxy_port=port) as tokn:
            listener = httpx.Client(base_url=tokn.api_url, trust_env=False, limits=limits,
                                    timeout=60)
            proxied = httpx.Client(proxy=env["HTTPS_PROXY"], trust_env=False, limits=limits,
                                   verify=ssl.create_default_context(cafile=env["SSL_CERT_FILE"]),
                                   timeout=60)
            # i % 2: front door; (i // 2) % 2: stream; (i // 4) % 2: chat or messages
            plan = []
            for i in range(N_REQUESTS):
                door = "proxy" if i % 2 else "listener"
                stream = bool((i // 2) % 2)
                fmt = "messages" if (i // 4) % 2 else "chat"
                if door == "listener":
                    client = listener
                    url = "/v1/chat/completions" if fmt == "chat" else "/v1/messages"
                else:
                    client = proxied
                    url = ("https://api.openai.com/v1/chat/completions" if fmt == "chat"
                           else "https://api.anthropic.com/v1/messages")
                plan.append((client, url, fmt, stream, f"request number {i} " + "x" * (i % 37)))
            started = time.monotonic()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                done = list(pool.map(lambda p: _send(*p), plan))
            elapsed = time.monotonic() - started
            listener.close()
            proxied.close()
        # running_tokn's exit is a clean shutdown: every queued row must be written
        assert all(done), f"{done.count(False)} request(s) did not complete"
        rows = usage_rows()
        assert len(rows) == N_REQUESTS
        assert fake.reported_usage["count"] == N_REQUESTS
        assert sum(r["input_tokens"] for r in rows) == fake.reported_usage["input_tokens"]
        assert sum(r["output_tokens"] for r in rows) == fake.reported_usage["output_tokens"]
        assert all(r["status"] == 200 and r["estimated"] == 0 for r in rows)
        doors = [r["front_door"] for r in rows]
        assert doors.count("proxy") == doors.count("listener") == N_REQUESTS // 2
        assert sum(r["stream"] for r in rows) == N_REQUESTS // 2
        fmts = [r["inbound_format"] for r in rows]
        assert fmts.count("messages") == fmts.count("chat") == N_REQUESTS // 2
        assert len({r["request_id"] for r in rows}) == N_REQUESTS
        assert all(r["latency_ms"] is not None and r["latency_ms"] >= 0 for r in rows)
        assert elapsed < 60, f"the burst took {elapsed:.1f} s"


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"tokn serve exited early: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("tokn serve did not come up")


def test_sigterm_mid_burst_keeps_every_request_the_client_saw_finish():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                 chunk_delay=0.002) as fake:
        port = free_port()
        write_config({"accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        proc = subprocess.Popen([sys.executable, "-m", "tokn", "serve", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ), text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, proc)
            finished: set[str] = set()
            lock = threading.Lock()
            stop = threading.Event()

            def worker(n: int) -> None:
                with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
                    i = 0
                    while not stop.is_set():
                        sid = f"w{n}-{i}"
                        stream = bool((n + i) % 2)
                        i += 1
                        try:
                            ok = _send(client, "/v1/chat/completions", "chat", stream,
                                       f"burst {sid} words to stream", {"x-session-id": sid})
                        except (httpx.HTTPError, ValueError):
                            time.sleep(0.01)  # refused/cut by the shutdown: not finished
                            continue
                        if ok:
                            with lock:
                                finished.add(sid)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONCURRENCY)]
            for t in threads:
                t.start()
            end = time.monotonic() + 30
            while len(finished) < 300 and time.monotonic() < end:
                time.sleep(0.01)
            assert len(finished) >= 300, "the burst did not get going"
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = proc.wait(timeout=15)
            took = time.monotonic() - sent
            stop.set()
            for t in threads:
                t.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0, proc.stderr.read()
        assert took < 5, f"tokn serve took {took:.1f} s to exit after SIGTERM"
        rows = usage_rows()
        stored = {r["session_key"] for r in rows if r["status"] == 200}
        missing = finished - stored
        assert not missing, f"{len(missing)} finished request(s) not in the store"
        # nothing recorded twice, and every stored success really reached the upstream
        assert len(rows) == len({r["request_id"] for r in rows})
        assert len(stored) <= len(fake.requests)
        print(f"finished={len(finished)} stored={len(rows)} exit={took:.2f}s")


# --- passthrough: usage observed on an SSE stream to the real host name ---------------
def _test_ca(tmp: Path, host: str) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (file) and a server context with a leaf for ``host``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokn usage test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = tmp / "upstream-test-ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = tmp / "leaf.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = tmp / "leaf.key"
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key_pem)
    return ca_pem, ctx


def test_passthrough_flow_usage_is_parsed_from_the_sse_stream(tmp_path):
    ca_pem, server_ctx = _test_ca(tmp_path, "api.openai.com")
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], ssl_context=server_ctx,
                 cached_tokens=2, reasoning_tokens=3) as fake:
        port = free_port()
        write_config({"proxy_mode": {
            "port": port,
            "upstream_overrides": {"api.openai.com": f"127.0.0.1:{fake.port}"},
            "upstream_ca_bundle": str(ca_pem)}})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = openai.OpenAI(api_key="sk-clients-own",
                                   default_headers={"x-tokn-route-mode": "passthrough"})
            chunks = list(client.chat.completions.create(
                model="gpt-4o", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "count these words for usage please"}]))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "echo: count these words for usage please"
            final = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "and a plain one"}])
            assert final.choices[0].message.content == "echo: and a plain one"
        # the client's own credentials went upstream, untouched
        assert all(r.headers["authorization"] == "Bearer sk-clients-own" for r in fake.requests)
        sent = [entry["usage"] for entry in fake.usage_log]
        rows = usage_rows()
        assert len(rows) == 2 == len(sent)
        for row, usage, stream in zip(rows, sent, (1, 0), strict=True):
            assert (row["front_door"], row["route_mode"], row["stream"]) == ("proxy",
                                                                             "passthrough",
                                                                             stream)
            assert row["status"] == 200 and row["inbound_format"] == "chat"
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            assert cached == 2
            # tokn stores input tokens net of cache reads (Anthropic's convention)
            assert row["input_tokens"] == usage["prompt_tokens"] - cached
            assert row["cache_read_tokens"] == cached
            assert row["output_tokens"] == usage["completion_tokens"]
            assert row["reasoning_tokens"] == 3
            assert row["model_requested"] == "gpt-4o"
            assert row["account"] is None  # the client's own key: no pooled account
        assert sum(r["output_tokens"] for r in rows) == fake.reported_usage["output_tokens"]
