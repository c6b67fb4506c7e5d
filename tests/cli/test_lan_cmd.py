"""``tokn lan url``: the colleague's one-liner, run for real against a loopback tokn."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config
from tokn import ca
from tokn.cli import app
from tokn.lan_host import addresses_from_ip_json, guess_lan_host


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("TOKN_API_KEY", raising=False)


def fingerprint() -> str:
    return ca.fingerprint_sha256(ca.ca_files().cert_path.read_bytes())


def test_url_prints_one_liner_with_key_and_fingerprint():
    write_config({"server": {"api_key": "s3cret'key", "port": 4141}})
    res = CliRunner().invoke(app, ["lan", "url", "--host", "10.20.30.40"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == ("eval \"$(curl -fsS --noproxy '*' -H 'Authorization: Bearer "
                        "s3cret'\\''key' 'http://10.20.30.40:4141/-/lan/env?shell=bash' "
                        "|| echo false)\"")
    assert fingerprint() in res.output


@pytest.mark.parametrize("args, expected", [
    (["--shell", "fish", "--host", "tokn.lan"],
     "'http://tokn.lan:4141/-/lan/env?shell=fish' | source"),
    (["--shell", "pwsh", "--host", "fd00::5"],
     "-Uri 'http://[fd00::5]:4141/-/lan/env?shell=pwsh'"),
    (["--host", "h.lan", "--via-proxy"], "'http://h.lan:4142/-/lan/env?shell=bash'"),
    (["--host", "h.lan", "--port", "9000", "--api-key", "other"], "Bearer other"),
])
def test_url_variants(args, expected):
    write_config({"server": {"api_key": "k"}})
    res = CliRunner().invoke(app, ["lan", "url", *args])
    assert res.exit_code == 0, res.output
    assert expected in res.output.splitlines()[0]


def test_url_without_key_warns_and_bad_input_fails():
    write_config({})
    res = CliRunner().invoke(app, ["lan", "url", "--host", "h.lan"])
    assert res.exit_code == 0 and "Authorization" not in res.output
    assert "no API key is set" in res.output
    for args in (["--host", "evil.lan/x"], ["--host", "a b"], ["--shell", "tcsh"]):
        res = CliRunner().invoke(app, ["lan", "url", *args])
        assert res.exit_code != 0, args


def test_addresses_from_ip_json():
    data = [
        {"ifname": "lo", "flags": ["LOOPBACK", "UP"],
         "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}]},
        {"ifname": "down0", "flags": ["BROADCAST"],
         "addr_info": [{"family": "inet", "local": "10.0.0.9", "scope": "global"}]},
        {"ifname": "eth0", "flags": ["BROADCAST", "UP", "LOWER_UP"],
         "addr_info": [{"family": "inet6", "local": "fd00::2", "scope": "global"},
                       {"family": "inet6", "local": "fe80::1", "scope": "link"},
                       {"family": "inet", "local": "192.168.7.3", "scope": "global"}]},
    ]
    assert addresses_from_ip_json(data) == ["192.168.7.3", "fd00::2"]


def test_guess_lan_host_sends_nothing_and_is_not_loopback(monkeypatch):
    import socket

    def no_connect(*a, **k):
        raise AssertionError("guess_lan_host must not open connections")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket, "create_connection", no_connect)
    host = guess_lan_host()
    assert host and host not in ("127.0.0.1", "::1", "localhost")


def test_one_liner_sets_up_a_shell_that_works(tmp_path):
    """The printed line, run in real bash, then the openai SDK through the listener."""
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["local-model"]) as fake:
        write_config({"server": {"api_key": "lan-k"},
                      "accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        with running_tokn(api_key="lan-k") as tokn:
            port = tokn.api_url.rsplit(":", 1)[1]
            res = CliRunner().invoke(app, ["lan", "url", "--host", "127.0.0.1", "--port", port])
            line = res.output.splitlines()[0]
            code = ("import openai; print(openai.OpenAI().chat.completions.create(model="
                    "'local-model', messages=[{'role': 'user', 'content': 'hi lan'}])"
                    ".choices[0].message.content)")
            proc = subprocess.run(["bash", "-c", f'{line} && "$PY" -c "$CODE"'],
                                  capture_output=True, text=True, timeout=120,
                                  env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                                       "PY": sys.executable, "CODE": code})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "echo: hi lan"
    assert fingerprint() in proc.stderr
