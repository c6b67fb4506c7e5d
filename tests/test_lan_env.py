"""tokn.lan_env: Host validation, bootstrap URLs, and the env scripts run in
real shells against a tiny local HTTP server serving the right, a swapped,
or a tampered CA."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokn import ca, certs, lan_env, shellenv
from tokn.lan_env import BadHost, EnvSpec, HostPort, parse_host

NASTY_KEY = "k'e\"y $HOME `id` \\ %40@:/;&|"


@pytest.mark.parametrize("value, host, port", [
    ("example.lan", "example.lan", None),
    ("Example.LAN:4141", "example.lan", 4141),
    ("tokn.:8", "tokn", 8),
    ("localhost:1", "localhost", 1),
    ("10.0.0.5:65535", "10.0.0.5", 65535),
    ("[::1]:4141", "::1", 4141),
    ("[FD00:0:0::7]", "fd00::7", None),
    ("a-b.c-d.e", "a-b.c-d.e", None),
    ("x1.example", "x1.example", None),
])
def test_parse_host_accepts(value, host, port):
    assert parse_host(value) == HostPort(host, port)


@pytest.mark.parametrize("value", [
    None, "", "user@h", "h/p", "h:80/p", "h?q", "h#f", "h:80:81", "a,b", "a b", "h:0",
    "h:65536", "h:", "h:+1", "h: 80", "h:0x50", "::1", "[::1", "[::1]:", "[::1]x",
    "[fe80::1%eth0]", "[v1.x]", "[h]:80", "1.2.3.4.5", "1.2.3", "01.2.3.4", "256.1.1.1",
    "-h", "h-", "a..b", "a_b", ".h", "%41", "h\u00e9", "h\r", "h\n", "h\x00", "h\x7f",
    "a" * 64 + ".lan", ".".join(["a" * 60] * 5), "*", "*.lan", "h\\x",
])
def test_parse_host_rejects(value):
    with pytest.raises(BadHost):
        parse_host(value)


def test_origins_and_bootstrap():
    hp = parse_host("[fd00::2]:4141")
    assert hp.url_host == "[fd00::2]" and hp.origin() == "http://[fd00::2]:4141"
    assert hp.slug == "fd00__2-4141"
    assert HostPort("h", 80).origin() == "http://h" and HostPort("h", None).origin() == "http://h"
    data = lan_env.bootstrap(parse_host("h:4141"), request_port=4141, api_port=4141,
                             proxy_port=4142, ca_sha256="AA", key_required=True)
    assert data == {"api_url": "http://h:4141", "proxy_url": "http://h:4142",
                    "ca_cert_url": "http://h:4141/-/lan/ca.crt",
                    "env_url": "http://h:4141/-/lan/env", "ca_sha256": "AA",
                    "api_key_required": True, "shells": list(lan_env.SHELLS)}
    # through the proxy port, with a private listener
    data = lan_env.bootstrap(parse_host("h:4142"), request_port=4142, api_port=None,
                             proxy_port=4142, ca_sha256="AA", key_required=True)
    assert data["api_url"] is None and data["env_url"] == "http://h:4142/-/lan/env"


def test_small_helpers():
    assert lan_env.port_of("http://h:12") == 12 and lan_env.port_of("http://[::1]:7/x") == 7
    assert lan_env.port_of("") is None and lan_env.port_of("http://h") is None
    assert lan_env.proxy_url_with_key("http://h:1", "a b/@") == "http://tokn:a%20b%2F%40@h:1"
    assert lan_env.proxy_url_with_key("http://h:1", None) == "http://h:1"
    assert lan_env.fingerprint_hex("AB:" * 31 + "CD") == "ab" * 31 + "cd"
    with pytest.raises(ValueError):
        lan_env.fingerprint_hex("AB:CD")


def test_one_liners():
    url = "http://h:4141/-/lan/env"
    assert lan_env.one_liner("bash", url, "K") == (
        "eval \"$(curl -fsS --noproxy '*' -H 'Authorization: Bearer K' "
        "'http://h:4141/-/lan/env?shell=bash' || echo false)\"")
    assert lan_env.one_liner("zsh", url) == (
        "eval \"$(curl -fsS --noproxy '*' 'http://h:4141/-/lan/env?shell=zsh' || echo false)\"")
    assert lan_env.one_liner("fish", url, "K") == (
        "curl -fsS --noproxy '*' -H 'Authorization: Bearer K' "
        "'http://h:4141/-/lan/env?shell=fish' | source")
    assert lan_env.one_liner("pwsh", url, "K'") == (
        "Invoke-WebRequest -UseBasicParsing -Headers @{Authorization='Bearer K'''} "
        "-Uri 'http://h:4141/-/lan/env?shell=pwsh' | Select-Object -ExpandProperty Content "
        "| Invoke-Expression")
    with pytest.raises(ValueError):
        lan_env.one_liner("tcsh", url)


# --- a tiny server playing the tokn host ------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    routes: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        body = self.routes.get(self.path)
        self.send_response(200 if body is not None else 404)
        body = body if body is not None else b"not found\n"
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def pem_server(routes: dict[str, bytes]) -> Iterator[str]:
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def new_cert() -> bytes:
    return certs.build_ca(common_name="tokn test CA").cert_pem


def spec_for(base: str, cert: bytes, key: str | None = NASTY_KEY) -> EnvSpec:
    hp = parse_host(base.split("://", 1)[1])
    return EnvSpec(hp=hp, ca_cert_url=base + "/-/lan/ca.crt",
                   ca_sha256=ca.fingerprint_sha256(cert), proxy_url="http://10.99.0.1:4142",
                   api_url="http://10.99.0.1:4141", api_key=key)


SH_SHELLS = [s for s in ("bash", "dash", "zsh", "busybox") if shutil.which(s)]
LAN_VARS = (*shellenv.VAR_NAMES, *lan_env.API_VARS)


def run_in(shell: str, script: str, home: Path, extra: dict[str, str] | None = None
           ) -> tuple[int, dict[str, str], str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **(extra or {})}
    if shell == "fish":
        argv = ["fish", "--no-config", "-c", "echo $argv[1] | source; set -l rc $status; "
                "env -0; exit $rc", "--", script]
    elif shell == "pwsh":
        argv = ["pwsh", "-NoProfile", "-NonInteractive", "-Command",
                "$s = [IO.File]::ReadAllText($env:TOKN_SCRIPT); Invoke-Expression $s; "
                "[IO.File]::WriteAllText($env:TOKN_OUT, ((Get-ChildItem env: | ForEach-Object "
                "{ $_.Name + '=' + $_.Value }) -join [char]0))"]
        (home / "script.ps1").write_text(script)
        env.update(TOKN_SCRIPT=str(home / "script.ps1"), TOKN_OUT=str(home / "env.out"))
    else:
        argv = [shell, "-c", 'eval "$1"; rc=$?; env -0; exit $rc', shell, script]
        if shell == "busybox":
            argv = ["busybox", "sh", "-c", argv[2], "sh", script]
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    raw = proc.stdout.decode()
    if shell == "pwsh":
        out = home / "env.out"
        raw = out.read_text() if out.exists() else ""
    after = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    return proc.returncode, after, proc.stderr.decode()


@pytest.mark.parametrize("shell", SH_SHELLS)
def test_sh_script_installs_ca_and_exports(shell, tmp_path):
    cert = new_cert()
    with pem_server({"/-/lan/ca.crt": cert}) as base:
        spec = spec_for(base, cert)
        rc, env, err = run_in(shell, lan_env.env_script("sh", spec), tmp_path)
    assert rc == 0, err
    d = tmp_path / ".config" / "tokn" / "lan" / spec.hp.slug
    assert (d / "ca.crt").read_bytes() == cert
    bundle = (d / "ca-bundle.crt").read_bytes()
    blocks = ca.split_pem_certs(bundle)
    assert len(blocks) > 10 and ca.pem_to_der(blocks[-1]) == ca.pem_to_der(cert)
    assert sorted(p.name for p in d.iterdir()) == ["ca-bundle.crt", "ca.crt"]
    assert env["SSL_CERT_FILE"] == str(d / "ca-bundle.crt")
    assert env["NODE_EXTRA_CA_CERTS"] == str(d / "ca.crt")
    assert env["HTTPS_PROXY"] == lan_env.proxy_url_with_key("http://10.99.0.1:4142", NASTY_KEY)
    assert env["OPENAI_API_KEY"] == NASTY_KEY and env["ANTHROPIC_API_KEY"] == NASTY_KEY
    assert env["OPENAI_BASE_URL"] == "http://10.99.0.1:4141/v1"
    assert env["NO_PROXY"] == "localhost,127.0.0.1,::1"  # + the server host (deduped)
    assert set(LAN_VARS) <= set(env)
    assert not any(k.startswith("__tokn") for k in env)
    assert ca.fingerprint_sha256(cert) in err


def test_sh_script_honours_xdg_config_home(tmp_path):
    cert = new_cert()
    with pem_server({"/-/lan/ca.crt": cert}) as base:
        spec = spec_for(base, cert)
        rc, env, err = run_in("bash", lan_env.env_script("bash", spec), tmp_path,
                              {"XDG_CONFIG_HOME": str(tmp_path / "x d g")})
    assert rc == 0, err
    assert env["SSL_CERT_FILE"] == str(tmp_path / "x d g" / "tokn" / "lan" / spec.hp.slug
                                       / "ca-bundle.crt")


def tampered_cases(cert: bytes) -> dict[str, bytes | None]:
    other = new_cert()
    return {
        "swapped CA": other,
        "extra certificate appended": cert + other,
        "extra certificate first": other + cert,
        "truncated": cert[: len(cert) // 2],
        "empty": b"",
        "not found": None,
        "key material": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }


@pytest.mark.parametrize("shell", SH_SHELLS)
def test_sh_script_refuses_tampered_ca(shell, tmp_path):
    cert = new_cert()
    for name, served in tampered_cases(cert).items():
        home = tmp_path / name.replace(" ", "-")
        home.mkdir()
        routes = {} if served is None else {"/-/lan/ca.crt": served}
        with pem_server(routes) as base:
            rc, env, err = run_in(shell, lan_env.env_script("sh", spec_for(base, cert)), home)
        assert rc != 0, name
        assert "tokn:" in err, name
        if served is not None:
            assert "FINGERPRINT MISMATCH" in err, (name, err)
        for var in LAN_VARS:
            assert var not in env, (name, var)
        assert not any(k.startswith("__tokn") for k in env), name
        assert not list(home.rglob("*.crt")), name
        assert not list(home.rglob("*.download")), name


def test_sh_script_keeps_the_shell_alive_on_failure(tmp_path):
    """eval'd in an interactive-like shell, a failure returns, it does not exit."""
    cert = new_cert()
    with pem_server({"/-/lan/ca.crt": new_cert()}) as base:
        script = lan_env.env_script("bash", spec_for(base, cert))
        proc = subprocess.run(["bash", "-c", 'eval "$1" || echo "still here $?"', "bash",
                               script], capture_output=True, text=True, timeout=60,
                              env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert "still here 1" in proc.stdout


def test_one_liner_fails_when_download_fails(tmp_path):
    with pem_server({}) as base:
        line = lan_env.one_liner("bash", base + "/-/lan/env")
        proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                              timeout=60, env={"PATH": os.environ["PATH"],
                                               "HOME": str(tmp_path)})
    assert proc.returncode != 0 and "404" in proc.stderr


def test_scripts_for_every_shell_are_well_formed():
    cert = new_cert()
    spec = spec_for("http://10.99.0.1:4141", cert)
    for shell in lan_env.SHELLS:
        text = lan_env.env_script(shell, spec)
        assert ca.fingerprint_sha256(cert) in text
        assert lan_env.fingerprint_hex(ca.fingerprint_sha256(cert)) in text
        assert "PRIVATE" not in text
        for name in LAN_VARS:
            assert name in text
    if shutil.which("bash"):
        for shell in ("sh", "bash", "zsh"):
            subprocess.run(["bash", "-n"], input=lan_env.env_script(shell, spec).encode(),
                           check=True)
    if shutil.which("fish"):
        subprocess.run(["fish", "--no-execute"], input=lan_env.env_script("fish", spec).encode(),
                       check=True)
    with pytest.raises(ValueError):
        lan_env.env_script("tcsh", spec)


def test_no_proxy_spec_exports_only_trust_and_api():
    spec = EnvSpec(hp=parse_host("h:1"), ca_cert_url="http://h:1/-/lan/ca.crt",
                   ca_sha256="AA:" * 31 + "AA", proxy_url=None, api_url="http://h:1")
    names = spec.var_names()
    assert "HTTPS_PROXY" not in names and "https_proxy" not in names
    assert "SSL_CERT_FILE" in names and "OPENAI_BASE_URL" in names


@pytest.mark.parametrize("shell", [s for s in ("fish", "pwsh") if shutil.which(s)] or
                         [pytest.param("fish", marks=pytest.mark.skip(
                             reason="neither fish nor pwsh is installed"))])
def test_fish_and_pwsh_scripts_run(shell, tmp_path):
    cert = new_cert()
    with pem_server({"/-/lan/ca.crt": cert}) as base:
        spec = spec_for(base, cert)
        ok = tmp_path / "ok"
        ok.mkdir()
        rc, env, err = run_in(shell, lan_env.env_script(shell, spec), ok)
        assert rc == 0, err
        assert env["HTTPS_PROXY"] == lan_env.proxy_url_with_key("http://10.99.0.1:4142",
                                                                NASTY_KEY)
        assert env["OPENAI_API_KEY"] == NASTY_KEY
        assert Path(env["SSL_CERT_FILE"]).read_bytes().count(b"BEGIN CERTIFICATE") > 10
        bad = tmp_path / "bad"
        bad.mkdir()
        spec_bad = spec_for(base, new_cert())
        rc, env, err = run_in(shell, lan_env.env_script(shell, spec_bad), bad)
        assert rc != 0 and "MISMATCH" in err
        assert "HTTPS_PROXY" not in env and "SSL_CERT_FILE" not in env
