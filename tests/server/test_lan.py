"""LAN mode on loopback: the binding guard, /-/lan/ routes, Host validation,
key material never served, the env script's fingerprint check end to end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from tests.helpers import free_port, running_tokn, write_config
from tokn import ca
from tokn.cli import app
from tokn.server import lan

KEY = "lan-test-key-0123"


# --- the binding guard through the real CLI -----------------------------------------------

@pytest.fixture
def no_env_key(monkeypatch):
    monkeypatch.delenv("TOKN_API_KEY", raising=False)


@pytest.mark.parametrize("args, what", [
    (["serve", "--host", "0.0.0.0"], "the listener"),
    (["serve", "--host", "192.0.2.77", "--api-key", KEY], "the listener"),
    (["serve", "--with-proxy", "--proxy-host", "0.0.0.0"], "the proxy"),
    (["proxy", "start", "--host", "0.0.0.0"], "the proxy"),
])
def test_non_loopback_bind_without_flag_refused(no_env_key, args, what):
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0
    out = " ".join(res.output.split())
    assert f"refusing to bind {what}" in out
    # names what would be exposed, and the way out
    for word in ("the API", "tunnels", "passthrough", "/-/lan/", "--insecure-allow-remote"):
        assert word in out


@pytest.mark.parametrize("args", [
    ["serve", "--host", "0.0.0.0", "--insecure-allow-remote"],
    ["serve", "--with-proxy", "--proxy-host", "::", "--insecure-allow-remote"],
    ["proxy", "start", "--host", "0.0.0.0", "--insecure-allow-remote"],
])
def test_remote_without_api_key_refused(no_env_key, args):
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0
    out = " ".join(res.output.split())
    assert "needs an API key" in out and "server.api_key" in out


def test_loopback_needs_no_flag():
    from tokn.server.guard import check_bind

    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"):
        check_bind(host, allow_remote=False, api_key="", what="x")


# --- helpers --------------------------------------------------------------------------------

def raw_get(port: int, target: str, headers: list[str] | None = None,
            host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One HTTP/1.1 GET with the target and headers exactly as given (no client
    normalisation of ``..`` or percent-escapes)."""
    hdrs = headers if headers is not None else [f"Host: 127.0.0.1:{port}"]
    data = (f"GET {target} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in hdrs)
            + "Connection: close\r\n\r\n").encode("latin-1")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return 0, b""
    status = int(raw.split(b" ", 2)[1])
    return status, raw


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def key_body() -> bytes:
    """The base64 body of tokn's CA private key (to look for in responses)."""
    pem = ca.ca_files().key_path.read_bytes()
    return b"".join(pem.splitlines()[1:-1])[:40]


@pytest.fixture
def tokn_lan():
    proxy_port = free_port()
    write_config({"proxy_mode": {"port": proxy_port}})
    with running_tokn(with_proxy=True, api_key=KEY, proxy_port=proxy_port) as tokn:
        yield tokn


# --- /-/lan/ routes -------------------------------------------------------------------------

def test_bootstrap_json_built_from_host_header(tokn_lan):
    port = port_of(tokn_lan.api_url)
    proxy_port = port_of(tokn_lan.proxy_url)
    for host, origin in [("tokn.example.lan:4141", "http://tokn.example.lan"),
                         ("10.1.2.3:4141", "http://10.1.2.3"),
                         ("[fd00::7]:4141", "http://[fd00::7]"),
                         ("Tokn.Example.LAN.:4141", "http://tokn.example.lan")]:
        r = httpx.get(f"{tokn_lan.api_url}/-/lan/bootstrap.json", headers={"host": host})
        assert r.status_code == 200, (host, r.text)
        data = r.json()
        assert data["api_url"] == f"{origin}:4141"
        assert data["proxy_url"] == f"{origin}:{proxy_port}"
        assert data["ca_cert_url"] == f"{origin}:4141/-/lan/ca.crt"
        assert data["env_url"] == f"{origin}:4141/-/lan/env"
        assert data["api_key_required"] is True
        assert data["ca_sha256"] == ca.fingerprint_sha256(ca.ca_files().cert_path.read_bytes())
    # no port in Host: port 80 as far as the client is concerned
    r = httpx.get(f"{tokn_lan.api_url}/-/lan/bootstrap.json", headers={"host": "tokn.lan"})
    assert r.json()["api_url"] == "http://tokn.lan"
    # public: no key needed, and the real Host works
    r = httpx.get(f"{tokn_lan.api_url}/-/lan/bootstrap.json")
    assert r.json()["api_url"] == f"http://127.0.0.1:{port}"


BAD_HOSTS = [
    "user@evil.example", "user:pw@evil.example:80", "evil.example/path", "evil.example/",
    "evil.example?x", "evil.example#x", "evil.example:80:81", "evil.example,good.example",
    "evil.example good.example", "evil.example:0", "evil.example:65536", "evil.example:",
    "evil.example:+80", "evil.example:8O", "evil.example:-1", "::1", "[::1", "[::1]x",
    "[fe80::1%25eth0]:80", "[evil.example]:80", "1.2.3.999", "1.2.3", "-evil.example",
    "evil_example.lan", "evil..example", "%65vil.example", "ev\u00efl.example",
    "evil.example\tgood.example", "x" * 300, "evil.example:80\\", "evil.example:80;x",
]


@pytest.mark.parametrize("bad", BAD_HOSTS)
def test_host_header_injection_rejected(tokn_lan, bad):
    port = port_of(tokn_lan.api_url)
    for path in ("/-/lan/bootstrap.json", "/-/lan/env?shell=bash"):
        status, raw = raw_get(port, path, [f"Host: {bad}", f"Authorization: Bearer {KEY}"])
        assert status == 400, (bad, raw[:300])
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert b"evil" not in body and b"export" not in body


def test_host_header_framing_attacks_rejected(tokn_lan):
    port = port_of(tokn_lan.api_url)
    cases = [
        ["Host: evil.example", "Host: 127.0.0.1"],  # two Host headers
        [],  # no Host header
        ["Host: "],
        ["Host: evil.example\rX-Injected: 1"],  # bare CR
    ]
    for headers in cases:
        status, raw = raw_get(port, "/-/lan/bootstrap.json", headers)
        assert status in (0, 400), (headers, raw[:300])
        assert b"evil.example" not in raw.split(b"\r\n\r\n", 1)[-1]


def test_ca_crt_is_the_public_certificate_only(tokn_lan):
    r = httpx.get(f"{tokn_lan.api_url}/-/lan/ca.crt")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-pem-file"
    assert r.content.count(b"-----BEGIN CERTIFICATE-----") == 1
    assert b"PRIVATE KEY" not in r.content
    files = ca.ca_files()
    assert ca.pem_to_der(r.content) == ca.pem_to_der(files.cert_path.read_bytes())
    fp = ca.fingerprint_sha256(r.content)
    assert r.headers["x-tokn-ca-sha256"] == fp
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
                             input=r.content, capture_output=True, check=True).stdout.decode()
        assert out.strip().split("=", 1)[1] == fp


TRAVERSALS = [
    "/-/lan/../ca/ca.key", "/-/lan/../../config/ca/ca.key", "/-/lan/%2e%2e/ca/ca.key",
    "/-/lan/%2E%2E/%2E%2E/config/ca/ca.key", "/-/lan/ca.key", "/-/lan/ca.crt/../ca.key",
    "/-/lan/ca.crt/..%2fca.key", "/-/lan/%252e%252e/ca/ca.key", "/-/lan/..%252fca.key",
    "/-/lan/..\\ca\\ca.key", "/-/lan/%5c..%5cca%5cca.key", "/-/lan/ca.crt%00.key",
    "/-/lan/mitmproxy/mitmproxy-ca.pem", "/-/lan/ca.crt/", "/-/lan//ca.key",
    "/-/lan/./ca.key", "/-/lan/CA.KEY", "/-/lan/ca.key%20", "/-/lan/env/../ca.key",
    "/-/lan/..;/ca.key", "/ca/ca.key", "/ca.key", "/-/lan/%2e%2e%2fca%2fca.key",
    "/-/lan/.%2e/ca/ca.key", "/-/lan/ca%2ekey", "/-/lan", "/-/lan/",
    "//-/lan/../ca/ca.key", "/-/lan/....//ca.key",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_serves_key_material(tokn_lan, path):
    port = port_of(tokn_lan.api_url)
    secret = key_body()
    for headers in ([f"Host: 127.0.0.1:{port}"],
                    [f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {KEY}"]):
        status, raw = raw_get(port, path, headers)
        assert status in (0, 400, 404), (path, raw[:300])
        assert b"PRIVATE KEY" not in raw and secret not in raw


def test_no_lan_response_contains_key_material(tokn_lan):
    port = port_of(tokn_lan.api_url)
    secret = key_body()
    auth = [f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {KEY}"]
    for path in ("/-/lan/bootstrap.json", "/-/lan/ca.crt", "/-/lan/ca.crt?x=../ca.key",
                 *(f"/-/lan/env?shell={s}" for s in ("sh", "bash", "zsh", "fish", "pwsh"))):
        status, raw = raw_get(port, path, auth)
        assert status == 200, path
        assert b"PRIVATE KEY" not in raw and secret not in raw


def test_lan_paths_through_the_proxy_port(tokn_lan):
    """Plain GETs to the proxy port under /-/lan/ reach the listener; traversal
    there serves nothing either."""
    pport = port_of(tokn_lan.proxy_url)
    secret = key_body()
    status, raw = raw_get(pport, "/-/lan/ca.crt", [f"Host: 127.0.0.1:{pport}"])
    assert status == 200 and raw.count(b"BEGIN CERTIFICATE") == 1
    for path in TRAVERSALS:
        status, raw = raw_get(pport, path, [f"Host: 127.0.0.1:{pport}",
                                            f"Authorization: Bearer {KEY}"])
        assert b"PRIVATE KEY" not in raw and secret not in raw, path
        assert status in (0, 400, 404, 407), (path, raw[:200])
    status, raw = raw_get(pport, "/-/lan/bootstrap.json", [f"Host: 127.0.0.1:{pport}"])
    assert status == 200
    data = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert data["ca_cert_url"] == f"http://127.0.0.1:{pport}/-/lan/ca.crt"
    assert data["proxy_url"] == f"http://127.0.0.1:{pport}"


def test_env_requires_the_key_in_a_header(tokn_lan):
    url = f"{tokn_lan.api_url}/-/lan/env?shell=bash"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + f"&key={KEY}").status_code == 401  # never in the URL
    for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-type"].startswith("text/plain")
        assert f"http://tokn:{KEY}@127.0.0.1:{port_of(tokn_lan.proxy_url)}" in r.text
        assert f"export OPENAI_API_KEY='{KEY}'" in r.text
    r = httpx.get(f"{tokn_lan.api_url}/-/lan/env?shell=tcsh", headers={"x-api-key": KEY})
    assert r.status_code == 400 and "unknown shell" in r.json()["error"]["message"]


def test_env_without_server_key_has_no_credentials():
    write_config({})
    with running_tokn(api_key="") as tokn:
        r = httpx.get(f"{tokn.api_url}/-/lan/env?shell=bash")
        assert r.status_code == 200
        assert "tokn:" not in r.text.split("HTTPS_PROXY=", 1)[1].split("\n", 1)[0]
        assert "export OPENAI_API_KEY='tokn'" in r.text
        assert httpx.get(f"{tokn.api_url}/-/lan/bootstrap.json").json()[
            "api_key_required"] is False


def test_listener_api_still_needs_the_key(tokn_lan):
    r = httpx.post(f"{tokn_lan.api_url}/v1/chat/completions", json={"model": "x"})
    assert r.status_code == 401


# --- the env script against the real server ----------------------------------------------

def run_script(script: str, home: Path, shell: str = "bash") -> tuple[int, dict[str, str], str]:
    """``eval`` the script in a real shell; returns (status, env after, stderr)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    proc = subprocess.run([shell, "-c", 'eval "$1"; rc=$?; env -0; exit $rc', shell, script],
                          capture_output=True, env=env, timeout=60)
    after = dict(item.split("=", 1) for item in proc.stdout.decode().split("\0") if "=" in item)
    return proc.returncode, after, proc.stderr.decode()


def test_env_script_sets_up_a_shell_and_refuses_a_swapped_ca(tokn_lan, tmp_path):
    url = f"{tokn_lan.api_url}/-/lan/env?shell=bash"
    script = httpx.get(url, headers={"authorization": f"Bearer {KEY}"}).text
    home = tmp_path / "colleague"
    home.mkdir()
    rc, env, err = run_script(script, home)
    assert rc == 0, err
    lan_dir = home / ".config" / "tokn" / "lan" / f"127.0.0.1-{port_of(tokn_lan.api_url)}"
    assert env["SSL_CERT_FILE"] == str(lan_dir / "ca-bundle.crt")
    assert env["NODE_EXTRA_CA_CERTS"] == str(lan_dir / "ca.crt")
    assert env["OPENAI_BASE_URL"] == f"{tokn_lan.api_url}/v1"
    assert env["ANTHROPIC_BASE_URL"] == tokn_lan.api_url
    assert env["HTTPS_PROXY"] == f"http://tokn:{KEY}@127.0.0.1:{port_of(tokn_lan.proxy_url)}"
    bundle = (lan_dir / "ca-bundle.crt").read_bytes()
    assert bundle.count(b"BEGIN CERTIFICATE") > 10  # system roots + our CA
    assert ca.pem_to_der(ca.split_pem_certs(bundle)[-1]) == ca.pem_to_der(
        ca.ca_files().cert_path.read_bytes())
    assert "CA SHA-256" in err

    # The CA is swapped after the script was issued: the script must refuse.
    old_fp = ca.fingerprint_sha256(ca.ca_files().cert_path.read_bytes())
    ca.regenerate_ca()
    assert ca.fingerprint_sha256(httpx.get(f"{tokn_lan.api_url}/-/lan/ca.crt").content) != old_fp
    home2 = tmp_path / "colleague2"
    home2.mkdir()
    rc, env, err = run_script(script, home2)
    assert rc != 0
    assert "FINGERPRINT MISMATCH" in err and old_fp in err
    for name in ("HTTPS_PROXY", "https_proxy", "SSL_CERT_FILE", "OPENAI_BASE_URL",
                 "OPENAI_API_KEY", "NODE_EXTRA_CA_CERTS"):
        assert name not in env
    assert not any(n.startswith("__tokn") for n in env)
    lan_dir2 = home2 / ".config" / "tokn" / "lan"
    assert not list(lan_dir2.rglob("*.crt")) and not list(lan_dir2.rglob("*.download"))


# --- startup lines -------------------------------------------------------------------------

def test_startup_lines():
    write_config({})
    runtime = SimpleNamespace(cfg=__import__("tokn.config", fromlist=["load_config"])
                              .load_config())
    fp = lan.ca_certificate(runtime)[1]
    assert lan.startup_lines(runtime, SimpleNamespace(api_url="http://127.0.0.1:4141",
                                                      proxy_url=""), "127.0.0.1") == []
    lines = lan.startup_lines(runtime, SimpleNamespace(api_url="http://10.9.8.7:4141",
                                                       proxy_url="http://10.9.8.7:4142"),
                              "10.9.8.7", "10.9.8.7")
    assert lines[0].endswith(fp)
    assert lines[1] == "LAN bootstrap: http://10.9.8.7:4141/-/lan/bootstrap.json"
    lines = lan.startup_lines(runtime, SimpleNamespace(api_url="", proxy_url="http://[fd00::2]:4142"),
                              "127.0.0.1", "fd00::2")
    assert lines[1] == "LAN bootstrap: http://[fd00::2]:4142/-/lan/bootstrap.json"
    lines = lan.startup_lines(runtime, SimpleNamespace(api_url="http://127.0.0.1:4141",
                                                       proxy_url=""), "0.0.0.0")
    assert "127.0.0.1" not in lines[1] and "0.0.0.0" not in lines[1]
