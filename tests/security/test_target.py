"""Issue 12.2: pooled credentials go only to their provider's hosts over TLS.
The destination is the real target (CONNECT authority / absolute URL / server
address); a Host, :authority or tunnel SNI that names something else is a 400,
and an "attacker" listener that records everything receives no secret."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account
from tests.security.helpers import (
    CHAT,
    KEY,
    POOLED,
    POOLED_ANT,
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
PROXY = f"tokn:{KEY}@127.0.0.1"


def _switch_through(port: int, url: str, *headers: str) -> dict:
    out = curl("--proxy", f"http://{PROXY}:{port}", url, "-H", "x-tokn-route-mode: switch",
               "-H", "content-type: application/json", *[a for h in headers for a in ("-H", h)],
               "-d", BODY.decode(), "-w", "\n%{http_code}")
    text, _, code = out.stdout.rpartition("\n")
    return {"status": int(code or 0), "body": body_json(text), "stderr": out.stderr}


def test_the_issues_attack_host_header_points_the_key_elsewhere():
    config()
    with attacker() as att, tokn() as t:
        got = _switch_through(t.port, f"http://{att.authority}/v1/chat/completions",
                              "Host: api.openai.com")
    assert got["status"] == 400, got
    assert "Host header" in got["body"]["error"]["message"]
    assert att.received == [] and att.leaked() == []


# Every spelling of "this is api.openai.com" a client could send with a target
# that is the attacker.  None may make tokn attach a pooled credential.
HOST_SPELLINGS = [
    "api.openai.com", "API.OPENAI.COM", "api.openai.com.", "Api.OpenAI.Com.:80",
    "api.openai.com:80", "api.openai.com:443", "api.anthropic.com",
    "tokn@api.openai.com", "api.openai.com@127.0.0.1", "api.openai.com:80:81",
    "[::1]", "api.openai.com/v1", "api.openai.com ", "api.openai.com\t",
]


@pytest.mark.parametrize("host", HOST_SPELLINGS)
def test_no_host_spelling_sends_a_pooled_key_to_the_target(host):
    config()
    with attacker() as att, tokn() as t:
        request = http_request("POST", f"http://{att.authority}/v1/chat/completions",
                               [("Host", host), ("proxy-authorization", basic()),
                                ("x-tokn-route-mode", "switch"),
                                ("content-type", "application/json")], BODY)
        answer = raw(t.port, request)
    assert status_of(answer) == 400, answer[:300]
    assert att.leaked() == [] and att.received == []


@pytest.mark.parametrize("url", [
    "http://api.openai.com@{att}/v1/chat/completions",          # userinfo in the URL
    "http://{att}/v1/chat/completions#@api.openai.com",
    "http://{att}/v1/chat/completions?h=api.openai.com",
])
def test_url_spellings_reach_the_attacker_without_secrets(url):
    config()
    with attacker() as att, tokn() as t:
        got = _switch_through(t.port, url.format(att=att.authority))
    # not an intercepted host: forwarded as a plain proxy request, with nothing of tokn's
    assert att.leaked() == [], att.received
    assert got["status"] in (200, 400)


def test_host_and_target_agreeing_on_an_ipv6_attacker():
    config()
    try:
        att_cm = attacker("::1")
        att = att_cm.__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        with tokn() as t:
            mismatch = raw(t.port, http_request(
                "POST", f"http://{att.authority}/v1/chat/completions",
                [("host", "api.openai.com"), ("proxy-authorization", basic()),
                 ("x-tokn-route-mode", "switch"), ("content-type", "application/json")], BODY))
            agree = raw(t.port, http_request(
                "POST", f"http://{att.authority}/v1/chat/completions",
                [("host", att.authority.upper()), ("proxy-authorization", basic()),
                 ("x-tokn-route-mode", "switch"), ("content-type", "application/json")], BODY))
    finally:
        att_cm.__exit__(None, None, None)
    assert status_of(mismatch) == 400
    assert status_of(agree) == 200  # not an API host: a plain forward, nothing injected
    assert att.leaked() == []


def test_switch_over_plain_http_to_the_real_host_is_refused():
    with attacker() as recorder:  # plays api.openai.com on plain HTTP
        config(proxy_mode={"upstream_overrides": {"api.openai.com": recorder.authority}})
        with tokn() as t:
            got = _switch_through(t.port, "http://api.openai.com/v1/chat/completions")
    assert got["status"] == 400 and "only over TLS" in got["body"]["error"]["message"]
    assert recorder.received == [] and recorder.leaked() == []


def test_switch_over_tls_to_the_real_host_still_works(public_ca, tls_context_for):
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], auth={POOLED},
                 ssl_context=tls_context_for("api.openai.com")) as fake:
        config(proxy_mode={"upstream_ca_bundle": str(root), "upstream_overrides": {
            "api.openai.com": f"127.0.0.1:{fake.port}"}})
        ca_file = _ca_file()
        with tokn() as t:
            out = curl("--proxy", f"http://{PROXY}:{t.port}", "--cacert", ca_file,
                       "https://API.OpenAI.com:443/v1/chat/completions",
                       "-H", "x-tokn-route-mode: switch", "-H", "content-type: application/json",
                       "-d", BODY.decode())
    assert body_json(out.stdout)["choices"][0]["message"]["content"] == "echo: hi", \
        out.stdout + out.stderr
    assert fake.requests[-1].headers["authorization"] == f"Bearer {POOLED}"


def test_authority_disagreeing_with_the_tunnel_is_refused(public_ca, tls_context_for):
    """HTTP/2 ``:authority`` (curl maps -H Host to it) inside a CONNECT tunnel."""
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                 ssl_context=tls_context_for("api.openai.com")) as fake:
        config(proxy_mode={"upstream_ca_bundle": str(root), "upstream_overrides": {
            "api.openai.com": f"127.0.0.1:{fake.port}"}})
        with tokn() as t:
            out = curl("--proxy", f"http://{PROXY}:{t.port}", "--cacert", _ca_file(), "--http2",
                       "https://api.openai.com/v1/chat/completions", "-H", "host: evil.example",
                       "-H", "x-tokn-route-mode: switch", "-H", "content-type: application/json",
                       "-d", BODY.decode(), "-w", "\n%{http_code} %{http_version}")
    assert out.stdout.rstrip().endswith("400 2"), out.stdout + out.stderr
    assert fake.requests_to("/chat/completions") == []


def test_tunnel_sni_naming_an_api_host_for_another_target_is_refused():
    """CONNECT to the attacker, then TLS with SNI api.openai.com (which makes the
    allowlist intercept the tunnel) and Host api.openai.com."""
    config()
    with attacker() as att, tokn() as t:
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
        sock.sendall(http_request("CONNECT", att.authority,
                                  {"host": att.authority, "proxy-authorization": basic()}))
        assert status_of(recv_all(sock)) == 200
        ctx = ssl.create_default_context()  # the attacker's own client checks nothing
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        tls = ctx.wrap_socket(sock, server_hostname="api.openai.com")
        for host in ("api.openai.com", att.authority):
            tls.sendall(http_request("POST", "/v1/chat/completions",
                                     [("host", host), ("x-tokn-route-mode", "switch"),
                                      ("content-type", "application/json")], BODY))
            answer = recv_all(tls)
            assert status_of(answer) == 400, answer[:300]
        tls.close()
    assert att.received == [] and att.leaked() == []


def test_an_account_with_its_own_base_url_keeps_its_key_there(public_ca, tls_context_for):
    """An OpenAI account configured for another endpoint must not send its key
    to api.openai.com in switch mode."""
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"],
                 ssl_context=tls_context_for("api.openai.com")) as fake:
        config(accounts=[account("azure", "openai", api_key=POOLED,
                                 base_url="https://gateway.corp.example/v1")],
               proxy_mode={"upstream_ca_bundle": str(root), "upstream_overrides": {
                   "api.openai.com": f"127.0.0.1:{fake.port}"}})
        with tokn() as t:
            out = curl("--proxy", f"http://{PROXY}:{t.port}", "--cacert", _ca_file(),
                       "https://api.openai.com/v1/chat/completions",
                       "-H", "x-tokn-route-mode: switch", "-H", "content-type: application/json",
                       "-d", BODY.decode(), "-w", "\n%{http_code}")
    assert out.stdout.rstrip().endswith("400"), out.stdout
    assert "no_account_for_host" in out.stdout
    assert fake.requests == []


def test_route_mode_never_sends_a_pooled_key_to_the_named_host():
    """Route mode answers from the pool whatever host the client named; the
    target itself (an attacker in the URL, an API name in Host) sees nothing."""
    with FakeLLM(formats={"chat", "messages"}, path_prefix="/v1", models=["gpt-4o"],
                 auth={POOLED}) as fake:
        config(accounts=[account("p", "openai-compatible", base_url=fake.url + "/v1",
                                 api_key=POOLED)])
        with attacker() as att, tokn() as t:
            spoof = raw(t.port, http_request(
                "POST", f"http://{att.authority}/v1/chat/completions",
                [("host", "api.openai.com"), ("proxy-authorization", basic()),
                 ("content-type", "application/json")], BODY))
            honest = raw(t.port, http_request(
                "POST", "http://api.openai.com/v1/chat/completions",
                [("host", "api.openai.com"), ("proxy-authorization", basic()),
                 ("content-type", "application/json")], BODY))
    assert status_of(spoof) == 400
    assert status_of(honest) == 200 and b"echo: hi" in honest
    assert att.received == [] and att.leaked() == []
    assert POOLED_ANT not in json.dumps([r.headers.to_dict() for r in fake.requests])


def _ca_file() -> str:
    from tokn.ca import ensure_ca
    from tokn.config import load_config

    return str(ensure_ca(load_config()).cert_path)


def test_a_fully_qualified_api_name_gets_no_usable_certificate(public_ca, tls_context_for):
    """``https://api.openai.com.`` is intercepted (its SNI is on the allowlist),
    but the leaf names the host as spelled, outside the CA's name constraints:
    a client checking tokn's CA refuses it, so nothing is sent anywhere."""
    with attacker(tls=tls_context_for("api.openai.com")) as att:
        config(proxy_mode={"upstream_overrides": {"api.openai.com": att.authority}})
        with tokn() as t:
            out = curl("--proxy", f"http://{PROXY}:{t.port}", "--cacert", _ca_file(),
                       "https://api.openai.com.:443/v1/chat/completions",
                       "-H", "x-tokn-route-mode: switch", "-H", "content-type: application/json",
                       "-d", BODY.decode())
    assert "subtree violation" in out.stderr, out.stdout + out.stderr
    assert att.received == [] and att.leaked() == []
