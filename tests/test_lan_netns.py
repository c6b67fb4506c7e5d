"""LAN mode from a second network identity.

The test creates a network namespace and a veth pair with a private /30 it
picks (unused on this machine), runs the real ``tokn serve --with-proxy
--insecure-allow-remote --api-key`` bound to the host-side veth address, and
acts as a colleague from *inside* the namespace: bootstrap.json, the env
script in real bash, the official ``openai`` SDK through the listener and
through the proxy (with proxy auth) to a fake upstream, 407/401 without
credentials, Host-header injection, key material, and a CA swapped after the
script was issued.  Inside the namespace the only routes are the veth /30 and
loopback, so nothing can leave it.  Skipped when namespaces cannot be made.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, write_config
from tokn import ca

KEY = "netns-key-7f3a9c"
REPO = Path(__file__).resolve().parents[1]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for link in json.loads(_ip("-j", "addr").stdout or "[]"):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                             strict=False))
    for route in json.loads(_ip("-j", "route").stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(50):
        net = ipaddress.ip_network(f"10.231.{random.randrange(256)}.{4 * random.randrange(64)}/30")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    pytest.skip("no unused 10.231.0.0/16 /30 left for the test's veth pair")


@pytest.fixture
def netns():
    if sys.platform != "linux" or not shutil.which("ip"):
        pytest.skip("needs Linux with iproute2 (`ip`)")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    ns, host_if, ns_if = f"tokn-lan-{tag}", f"tkh{tag}", f"tkn{tag}"
    added = _ip("netns", "add", ns, check=False)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {added.stderr.strip()}")
    link_made = False
    try:
        made = _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot create a veth pair: {made.stderr.strip()}")
        link_made = True
        net = _pick_subnet()
        host_addr, ns_addr = str(net[1]), str(net[2])
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield {"ns": ns, "host": host_addr, "client": ns_addr}
    finally:
        if link_made:
            _ip("link", "del", host_if, check=False)  # removes the peer too
        _ip("netns", "del", ns, check=False)


def in_ns(ns: str, script: str, home: Path, **extra: str) -> subprocess.CompletedProcess:
    """Run ``script`` in real bash inside the namespace, with a clean environment."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **extra}
    return subprocess.run(["ip", "netns", "exec", ns, "bash", "-c", script],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def lan_server(netns, tmp_path):
    """Real ``tokn serve`` (listener + proxy) on the host side of the veth."""
    fake = FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"])
    fake.__enter__()
    api_port, proxy_port = free_port(), free_port()
    write_config({"server": {"port": api_port}, "proxy_mode": {"port": proxy_port},
                  "accounts": [account("local", "openai-compatible",
                                       base_url=fake.url + "/v1", api_key="sk-local")]})
    host = netns["host"]
    log = (tmp_path / "server.log").open("w+")
    env = {k: v for k, v in os.environ.items() if k != "TOKN_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokn", "serve", "--host", host, "--port", str(api_port),
         "--with-proxy", "--proxy-host", host, "--proxy-port", str(proxy_port),
         "--insecure-allow-remote", "--api-key", KEY],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"tokn serve exited {proc.returncode}:\n{log.read()}")
            try:  # the listener answers first; the proxy (and the CA) come up after it
                if httpx.get(f"http://{host}:{api_port}/healthz", timeout=2,
                             trust_env=False).status_code == 200:
                    socket.create_connection((host, proxy_port), timeout=2).close()
                    break
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"tokn serve did not start:\n{log.read()}")
            time.sleep(0.1)
        yield {**netns, "api": f"http://{host}:{api_port}",
               "proxy": f"http://{host}:{proxy_port}", "fake": fake, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        fake.__exit__(None, None, None)


CLIENT = textwrap.dedent("""
    import json, os, openai
    out = {}
    # 1. the listener, from OPENAI_BASE_URL / OPENAI_API_KEY the script exported
    client = openai.OpenAI(max_retries=0)
    out["direct"] = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "lan direct"}]
    ).choices[0].message.content
    # 2. the real API host, through HTTPS_PROXY (tokn:KEY@) and tokn's CA
    client = openai.OpenAI(base_url="https://api.openai.com/v1", api_key="sk-colleague",
                           max_retries=0)
    out["proxy"] = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "lan via proxy"}]
    ).choices[0].message.content
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "lan stream"}], stream=True)
    out["stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # 3. the proxy without credentials: 407 on CONNECT
    os.environ["HTTPS_PROXY"] = os.environ["https_proxy"] = os.environ["PROXY_NO_CREDS"]
    try:
        openai.OpenAI(base_url="https://api.openai.com/v1", api_key="x",
                      max_retries=0).models.list()
        out["no_creds"] = "no error"
    except openai.APIConnectionError as exc:
        out["no_creds"] = repr(exc.__cause__)
    # 4. the listener with a wrong key: 401
    try:
        openai.OpenAI(api_key="wrong", max_retries=0).models.list()
        out["wrong_key"] = "no error"
    except openai.APIStatusError as exc:
        out["wrong_key"] = exc.status_code
    print("RESULT " + json.dumps(out))
""")


def test_colleague_in_another_namespace(lan_server, tmp_path):
    ns, api, proxy = lan_server["ns"], lan_server["api"], lan_server["proxy"]
    host = lan_server["host"]
    home = tmp_path / "colleague"
    home.mkdir()
    fingerprint = ca.fingerprint_sha256(ca.ca_files().cert_path.read_bytes())

    # bootstrap.json is public and names the address the colleague used
    r = in_ns(ns, f"curl -fsS --noproxy '*' {api}/-/lan/bootstrap.json", home)
    assert r.returncode == 0, r.stderr
    boot = json.loads(r.stdout)
    assert boot["api_url"] == api and boot["proxy_url"] == proxy
    assert boot["ca_cert_url"] == f"{api}/-/lan/ca.crt" and boot["env_url"] == f"{api}/-/lan/env"
    assert boot["ca_sha256"] == fingerprint

    # without credentials: 401 from the listener, 407 from the proxy
    codes = in_ns(ns, textwrap.dedent(f"""
        curl -s -o /dev/null -w '%{{http_code}} ' '{api}/-/lan/env?shell=bash'
        curl -s -o /dev/null -w '%{{http_code}} ' -X POST -H 'content-type: application/json' \
            -d '{{"model":"gpt-4o","messages":[]}}' '{api}/v1/chat/completions'
        curl -s -o /dev/null -w '%{{http_connect}} ' -x '{proxy}' https://api.openai.com/v1/models
        curl -s -o /dev/null -w '%{{http_connect}} ' -x 'http://tokn:wrong@{proxy[7:]}' \
            https://api.openai.com/v1/models
        curl -s -o /dev/null -w '%{{http_code}} ' -x '{proxy}' http://api.openai.com/v1/models
        true"""), home)
    assert codes.stdout.split() == ["401", "401", "407", "407", "407"], codes.stdout

    # Host-header injection and key material, from the colleague's side
    r = in_ns(ns, textwrap.dedent(f"""
        for h in tokn@evil.example evil.example/x a.example:1:2; do
            curl -s -o /dev/null -w '%{{http_code}} ' -H "Host: $h" {api}/-/lan/bootstrap.json
        done
        for p in /-/lan/../ca/ca.key /-/lan/%2e%2e/ca/ca.key /-/lan/ca.key /-/lan/ca.crt/../ca.key \
                 /-/lan/%252e%252e/ca.key '/-/lan/..\\ca\\ca.key'; do
            curl -s --path-as-is -H 'Authorization: Bearer {KEY}' "{api}$p"
            curl -s --path-as-is -H 'Authorization: Bearer {KEY}' "{proxy}$p"
        done | grep -c 'PRIVATE KEY'
        true"""), home)
    assert r.stdout.split() == ["400", "400", "400", "0"], r.stdout + r.stderr

    # the one-liner `tokn lan url` prints, run in the colleague's real bash, then the SDK
    from tokn.cli import app

    res = CliRunner().invoke(app, ["lan", "url", "--host", host, "--port", api.rsplit(":", 1)[1],
                                   "--api-key", KEY])
    assert res.exit_code == 0, res.output
    one_liner = res.output.splitlines()[0]
    assert one_liner.startswith('eval "$(curl') and f"Bearer {KEY}" in one_liner
    assert fingerprint in res.output, (fingerprint, res.output)
    (tmp_path / "client.py").write_text(CLIENT)
    r = in_ns(ns, f'{one_liner} && exec "$PY" {tmp_path / "client.py"}', home,
              PY=sys.executable, PROXY_NO_CREDS=proxy)
    assert r.returncode == 0, r.stdout + r.stderr
    assert fingerprint in r.stderr  # the script shows what it verified
    result = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert result["direct"] == "echo: lan direct"
    assert result["proxy"] == "echo: lan via proxy"
    assert result["stream"] == "echo: lan stream"
    assert "407" in result["no_creds"]
    assert result["wrong_key"] == 401
    fake = lan_server["fake"]
    assert fake.requests and all(req.headers["authorization"] == "Bearer sk-local"
                                 for req in fake.requests)
    lan_dir = home / ".config" / "tokn" / "lan" / f"{host}-{api.rsplit(':', 1)[1]}"
    assert (lan_dir / "ca.crt").is_file() and (lan_dir / "ca-bundle.crt").is_file()

    # curl in that environment too (CURL_CA_BUNDLE + https_proxy with credentials)
    r = in_ns(ns, f'{one_liner} >/dev/null 2>&1 && curl -fsS https://api.openai.com/v1/models',
              home)
    assert r.returncode == 0 and "gpt-4o" in r.stdout, r.stderr

    # The CA is swapped after the script was issued: the colleague's shell refuses it.
    script_path = tmp_path / "issued.sh"
    r = in_ns(ns, f"curl -fsS -H 'Authorization: Bearer {KEY}' -o {script_path} "
                  f"'{api}/-/lan/env?shell=bash'", home)
    assert r.returncode == 0, r.stderr
    ca.regenerate_ca()
    home2 = tmp_path / "colleague2"
    home2.mkdir()
    r = in_ns(ns, f'eval "$(cat {script_path})"; rc=$?; env; exit $rc', home2)
    assert r.returncode != 0
    assert "FINGERPRINT MISMATCH" in r.stderr and fingerprint in r.stderr
    for name in ("HTTPS_PROXY", "https_proxy", "SSL_CERT_FILE", "OPENAI_BASE_URL",
                 "OPENAI_API_KEY", "CURL_CA_BUNDLE"):
        assert f"\n{name}=" not in "\n" + r.stdout
    assert not list((home2 / ".config").rglob("*.crt")) if (home2 / ".config").exists() else True
