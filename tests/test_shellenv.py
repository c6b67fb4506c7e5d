"""Env blocks: quoting per shell, evaluated by real shells."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tokn import shellenv
from tokn.config import Config

NASTY = "/tmp/it's a \"dir\" with $HOME `x` \\ back\\slash and ‘smart’ quotes\n2nd line"


def test_proxy_url():
    assert shellenv.proxy_url("127.0.0.1", 4142) == "http://127.0.0.1:4142"
    assert shellenv.proxy_url("0.0.0.0", 8) == "http://127.0.0.1:8"
    assert shellenv.proxy_url("::", 8) == "http://[::1]:8"
    assert shellenv.proxy_url("::1", 8) == "http://[::1]:8"
    assert shellenv.proxy_url("localhost", 8) == "http://localhost:8"


def test_env_vars_contents():
    pairs = dict(shellenv.env_vars("http://127.0.0.1:1", "/c/ca.crt", "/c/bundle.crt",
                                   ["corp.local", "localhost", ""]))
    assert list(pairs) == list(shellenv.VAR_NAMES)
    for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        assert pairs[k] == "http://127.0.0.1:1"
    assert pairs["NO_PROXY"] == pairs["no_proxy"] == "localhost,127.0.0.1,::1,corp.local"
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
              "CODEX_CA_CERTIFICATE"):
        assert pairs[k] == "/c/bundle.crt"
    assert pairs["NODE_EXTRA_CA_CERTS"] == "/c/ca.crt"
    assert pairs["NODE_USE_ENV_PROXY"] == "1"


def test_render_quoting_literal():
    assert shellenv.render("bash", [("A", "it's")]) == "export A='it'\\''s'\n"
    assert shellenv.render("fish", [("A", "it's \\")]) == "set -gx A 'it\\'s \\\\'\n"
    assert shellenv.render("pwsh", [("A", "it's ’")]) == "$Env:A = 'it''s ’’'\n"
    assert shellenv.render_unset("zsh", ["A", "B"]) == "unset A B\n"
    assert shellenv.render_unset("fish", ["A"]) == "set -e A\n"
    assert shellenv.render_unset("pwsh", ["A"]) == \
        "Remove-Item Env:A -ErrorAction SilentlyContinue\n"


def test_render_rejects_bad_names_and_shells():
    with pytest.raises(ValueError):
        shellenv.render("bash", [("A;rm -rf /", "x")])
    with pytest.raises(ValueError):
        shellenv.render("tcsh", [("A", "x")])


def test_shell_family_and_guess():
    assert shellenv.shell_family("/usr/bin/zsh") == "sh"
    assert shellenv.shell_family("-bash") == "sh"
    assert shellenv.shell_family("fish") == "fish"
    assert shellenv.shell_family("powershell.exe") == "pwsh"
    assert shellenv.guess_shell({"SHELL": "/usr/local/bin/fish"}) == "fish"
    assert shellenv.guess_shell({"SHELL": "/bin/zsh"}) == "zsh"
    assert shellenv.guess_shell({"SHELL": "/opt/pwsh"}) == "pwsh"
    assert shellenv.guess_shell({"SHELL": "/bin/tcsh"}) == "sh"
    if os.name != "nt":
        assert shellenv.guess_shell({}) == "sh"


def _run(argv: list[str], script: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    return subprocess.run(argv + [script], capture_output=True, text=True, env=env,
                          check=True, timeout=30).stdout


PAIRS = [("HTTPS_PROXY", "http://127.0.0.1:4142"), ("SSL_CERT_FILE", NASTY),
         ("NO_PROXY", "localhost,127.0.0.1,::1")]


@pytest.mark.parametrize("sh", ["bash", "sh", "dash", "zsh"])
def test_sh_family_round_trip(sh):
    if shutil.which(sh) is None:
        pytest.skip(f"{sh} not installed")
    block = shellenv.render(sh, PAIRS)
    script = block + "".join(f'printf "%s\\0" "${k}"\n' for k, _ in PAIRS)
    script += shellenv.render_unset(sh, [k for k, _ in PAIRS])
    script += "".join(f'printf "%s\\0" "${{{k}-UNSET}}"\n' for k, _ in PAIRS)
    out = _run([sh, "-c"], script).split("\0")
    assert out[: len(PAIRS)] == [v for _, v in PAIRS]
    assert out[len(PAIRS): 2 * len(PAIRS)] == ["UNSET"] * len(PAIRS)


def test_sh_exports_reach_children():
    block = shellenv.render("sh", PAIRS)
    code = "import os,sys; sys.stdout.write(os.environ['SSL_CERT_FILE'])"
    out = _run(["sh", "-c"], block + f'"{sys.executable}" -c "{code}"')
    assert out == NASTY


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed")
def test_fish_round_trip():
    block = shellenv.render("fish", PAIRS)
    script = block + "".join(f'printf "%s\\0" "${k}"\n' for k, _ in PAIRS)
    script += shellenv.render_unset("fish", [k for k, _ in PAIRS])
    script += "set -q SSL_CERT_FILE; or printf 'UNSET\\0'\n"
    out = _run(["fish", "-c"], script).split("\0")
    assert out[: len(PAIRS)] == [v for _, v in PAIRS]
    assert out[len(PAIRS)] == "UNSET"


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="pwsh not installed")
def test_pwsh_round_trip():
    block = shellenv.render("pwsh", PAIRS)
    script = block + "".join(f'[Console]::Out.Write($Env:{k} + "`0")\n' for k, _ in PAIRS)
    script += shellenv.render_unset("pwsh", [k for k, _ in PAIRS])
    script += 'if ($null -eq $Env:SSL_CERT_FILE) { [Console]::Out.Write("UNSET`0") }\n'
    out = _run(["pwsh", "-NoProfile", "-Command"], script).split("\0")
    assert out[: len(PAIRS)] == [v for _, v in PAIRS]
    assert out[len(PAIRS)] == "UNSET"


def test_env_for_config_creates_ca_and_bundle():
    cfg = Config()
    cfg.proxy_mode.host = "0.0.0.0"
    cfg.proxy.no_proxy = ["corp.local"]
    pairs = dict(shellenv.env_for_config(cfg, port=5555))
    assert pairs["HTTPS_PROXY"] == "http://127.0.0.1:5555"
    assert pairs["NO_PROXY"].endswith(",corp.local")
    assert os.path.isfile(pairs["SSL_CERT_FILE"])
    assert os.path.isfile(pairs["NODE_EXTRA_CA_CERTS"])


def test_shellenv_import_is_light():
    """shellenv (and the CA module it calls on the hot path) import nothing heavy."""
    code = ("import sys, tokn.shellenv, tokn.ca; "
            "heavy = [m for m in ('mitmproxy', 'httpx', 'uvicorn', 'starlette', 'cryptography')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
