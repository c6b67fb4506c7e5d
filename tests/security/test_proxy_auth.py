"""Issue 12.1: with ``[server].api_key`` set, nobody without the key uses the
pool or the proxy, whichever way the connection arrives (CONNECT, absolute-form
plain HTTP, TLS spoken straight to the proxy port, HTTP/2)."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, usage_rows
from tests.security.helpers import (
    CHAT,
    KEY,
    POOLED,
    attacker,
    basic,
    body_json,
    config,
    curl,
    http_request,
    raw,
    recv_all,
    status_of,
    tokn,
)

BODY = json.dumps(CHAT).encode()
JSON = {"content-type": "application/json"}


@pytest.fixture
def pool():
    """A fake upstream serving the pooled account (only with the pooled key), and
    tokn (listener + proxy, key set) using it."""
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], auth={POOLED}) as fake:
        config(accounts=[account("work", "openai-compatible", base_url=fake.url + "/v1",
                                 api_key=POOLED)])
        with tokn() as handle:
            yield fake, handle


def _chat_requests(fake: FakeLLM) -> int:
    return len(fake.requests_to("/chat/completions"))


def test_tls_spoken_to_the_proxy_port_needs_the_key(pool):
    fake, t = pool
    bare = curl("--proxy", f"https://127.0.0.1:{t.port}", "--proxy-insecure",
                "http://api.openai.com/v1/chat/completions", "-H",
                "content-type: application/json", "-d", BODY.decode(), "-w", "\n%{http_code}")
    assert bare.stdout.rstrip().endswith("407"), bare.stdout + bare.stderr
    assert _chat_requests(fake) == 0
    keyed = curl("--proxy", f"https://tokn:{KEY}@127.0.0.1:{t.port}", "--proxy-insecure",
                 "http://api.openai.com/v1/chat/completions", "-H",
                 "content-type: application/json", "-d", BODY.decode())
    assert body_json(keyed.stdout)["choices"][0]["message"]["content"] == "echo: hi", keyed.stderr
    assert _chat_requests(fake) == 1


def test_tls_to_the_proxy_port_is_not_an_open_proxy(pool):
    _, t = pool
    with attacker() as att:
        out = curl("--proxy", f"https://127.0.0.1:{t.port}", "--proxy-insecure",
                   f"http://{att.authority}/anything", "-w", "\n%{http_code}")
        assert out.stdout.rstrip().endswith("407"), out.stdout + out.stderr
        keyed = curl("--proxy", f"https://tokn:{KEY}@127.0.0.1:{t.port}", "--proxy-insecure",
                     f"http://{att.authority}/anything")
    assert keyed.stdout == "ok"  # with the key it is a proxy, as documented
    assert len(att.received) == 1 and att.leaked() == []


WAYS_IN = {
    "absolute-form": (False, http_request("POST", "http://api.openai.com/v1/chat/completions",
                                          {"host": "api.openai.com", **JSON}, BODY)),
    "absolute-form, wrong key": (False, http_request(
        "POST", "http://api.openai.com/v1/chat/completions",
        {"host": "api.openai.com", "proxy-authorization": basic(password="guess"), **JSON},
        BODY)),
    "absolute-form, key as username": (False, http_request(
        "POST", "http://api.openai.com/v1/chat/completions",
        {"host": "api.openai.com", "proxy-authorization": basic(user=KEY, password=""), **JSON},
        BODY)),
    "TLS to the proxy port, absolute-form": (True, http_request(
        "POST", "http://api.openai.com/v1/chat/completions", {"host": "api.openai.com", **JSON},
        BODY)),
    "TLS to the proxy port, origin-form": (True, http_request(
        "POST", "/v1/chat/completions", {"host": "api.openai.com", **JSON}, BODY)),
    "plain origin-form naming the API host": (False, http_request(
        "POST", "/v1/chat/completions", {"host": "api.openai.com", **JSON}, BODY)),
    "CONNECT": (False, http_request("CONNECT", "api.openai.com:443",
                                    {"host": "api.openai.com:443"})),
    "CONNECT, wrong key": (False, http_request(
        "CONNECT", "api.openai.com:443",
        {"host": "api.openai.com:443", "proxy-authorization": basic(password=KEY + "x")})),
    "TLS to the proxy port, then CONNECT": (True, http_request(
        "CONNECT", "api.openai.com:443", {"host": "api.openai.com:443"})),
}


@pytest.mark.parametrize("way", list(WAYS_IN))
def test_every_way_in_without_the_key_is_refused(pool, way):
    fake, t = pool
    tls, request = WAYS_IN[way]
    answer = raw(t.port, request, tls=tls)
    assert status_of(answer) == 407, answer[:300]
    assert b"proxy-authenticate" in answer.lower()
    assert _chat_requests(fake) == 0


def test_http2_to_the_proxy_port_without_the_key_is_refused(pool):
    fake, t = pool
    over_tls = curl("-k", "--http2", f"https://127.0.0.1:{t.port}/v1/chat/completions",
                    "-H", "host: api.openai.com", "-H", "content-type: application/json",
                    "-d", BODY.decode(), "-w", "\n%{http_code} %{http_version}")
    cleartext = curl("--http2-prior-knowledge", f"http://127.0.0.1:{t.port}/v1/models",
                     "-H", "host: api.openai.com", "-w", "\n%{http_code}")
    assert over_tls.stdout.rstrip().endswith("407 2"), over_tls.stdout + over_tls.stderr
    assert not cleartext.stdout.rstrip().endswith("200")
    assert _chat_requests(fake) == 0


def test_http2_inside_an_authenticated_tunnel_carries_the_connections_auth(pool):
    fake, t = pool
    from tokn.ca import ensure_ca
    from tokn.config import load_config

    ca_file = str(ensure_ca(load_config()).cert_path)
    out = curl("--proxy", f"http://tokn:{KEY}@127.0.0.1:{t.port}", "--cacert", ca_file,
               "--http2", "https://api.openai.com/v1/chat/completions", "-H",
               "content-type: application/json", "-d", BODY.decode(), "-w",
               "\n%{http_version}")
    t.runtime.usage.flush()
    rows = usage_rows(t.runtime.usage.path)
    text, _, version = out.stdout.rpartition("\n")
    assert version == "2", out.stderr
    assert body_json(text)["choices"][0]["message"]["content"] == "echo: hi"
    assert [r["front_door"] for r in rows] == ["proxy"]


def test_one_connections_key_does_not_open_another(pool):
    fake, t = pool
    first = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    first.sendall(http_request("CONNECT", "example.test:443",
                               {"host": "example.test:443", "proxy-authorization": basic()}))
    assert status_of(recv_all(first)) == 200
    second = raw(t.port, WAYS_IN["absolute-form"][1])
    first.close()
    assert status_of(second) == 407
    assert _chat_requests(fake) == 0


def test_keep_alive_connection_is_checked_until_it_authenticates(pool):
    fake, t = pool
    sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    sock.sendall(WAYS_IN["absolute-form"][1])
    refused = recv_all(sock)
    sock.sendall(http_request("POST", "http://api.openai.com/v1/chat/completions",
                              {"host": "api.openai.com", "proxy-authorization": basic(),
                               **JSON}, BODY))
    served = recv_all(sock)
    sock.close()
    assert status_of(refused) == 407
    assert status_of(served) == 200 and b"echo: hi" in served
    assert _chat_requests(fake) == 1


def test_large_unauthenticated_body_is_refused_without_being_buffered(pool):
    fake, t = pool
    size = 64 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    sock.sendall(http_request("POST", "http://api.openai.com/v1/chat/completions",
                              [("host", "api.openai.com"), *JSON.items(),
                               ("content-length", str(size))]))
    sock.sendall(b"x" * (1024 * 1024))  # a little of it, then wait for the answer
    answer = recv_all(sock)
    sock.close()
    assert status_of(answer) == 407, answer[:200]
    assert _chat_requests(fake) == 0


def test_tls_to_proxy_keyed_client_gets_its_own_certificate_check(pool):
    """The proxy port speaks TLS with tokn's CA; a client that verifies sees it
    is not talking to anything else (no regression of the name constraint)."""
    _, t = pool
    from tokn.ca import ensure_ca
    from tokn.config import load_config

    ctx = ssl.create_default_context(cafile=str(ensure_ca(load_config()).cert_path))
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as sock, \
            pytest.raises(ssl.SSLError):
        ctx.wrap_socket(sock, server_hostname="bank.example")  # outside the constraint
