"""Issue 12.3: ``mitmdump -s "$(tokn paths addon)"`` (as the README shows) applies
the same guard as ``tokn proxy``: loopback unless ``tokn_insecure_allow_remote``
(and then only with a key), proxy authentication when ``[server].api_key`` is
set, regular proxy mode only."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, write_config
from tests.security.helpers import (
    CHAT,
    KEY,
    basic,
    http_request,
    lan_address,
    raw,
    status_of,
)
from tokn import data

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
BODY = json.dumps(CHAT).encode()

pytestmark = pytest.mark.skipif(not MITMDUMP.exists(), reason="mitmdump not installed")


def _config(fake: FakeLLM, key: str = KEY) -> None:
    write_config({"server": {"api_key": key},
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})


@contextlib.contextmanager
def mitmdump(tmp_path: Path, *args: str, quiet: bool = True) -> Iterator[tuple[subprocess.Popen,
                                                                              Path]]:
    log = tmp_path / "mitmdump.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(MITMDUMP), *(["-q"] if quiet else []), *args, "-s",
                                 str(data.path("addon"))],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _chat(port: int, *, auth: bool, host: str = "127.0.0.1") -> bytes:
    headers = [("host", "api.openai.com"), ("content-type", "application/json")]
    if auth:
        headers.append(("proxy-authorization", basic()))
    return raw(port, http_request("POST", "http://api.openai.com/v1/chat/completions",
                                  headers, BODY), host=host)


def _wait_served(port: int, host: str = "127.0.0.1", timeout: float = 40) -> bytes:
    deadline = time.monotonic() + timeout
    answer = b""
    while time.monotonic() < deadline:
        try:
            answer = _chat(port, auth=True, host=host)
            if status_of(answer) == 200:
                return answer
        except OSError:
            pass
        time.sleep(0.3)
    return answer


def test_stock_entry_listens_on_loopback_and_requires_the_key(tmp_path):
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        _config(fake)
        port = free_port()
        with mitmdump(tmp_path, "--listen-port", str(port)) as (_, log):
            served = _wait_served(port)
            assert b"echo: hi" in served, log.read_text()
            refused = _chat(port, auth=False)
            lan = lan_address()
            if lan is not None:
                with pytest.raises(OSError):
                    socket.create_connection((lan, port), timeout=5).close()
    assert status_of(refused) == 407
    assert len(fake.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize("args,key,expected", [
    (["--listen-host", "0.0.0.0"], KEY, "tokn_insecure_allow_remote=true"),
    (["--listen-host", "::"], KEY, "tokn_insecure_allow_remote=true"),
    (["--listen-host", "0.0.0.0", "--set", "tokn_insecure_allow_remote=true"], "",
     "needs an API key"),
    (["--mode", "socks5"], KEY, "regular proxy mode"),
    (["--mode", "regular@0.0.0.0:{port}"], KEY, "tokn_insecure_allow_remote=true"),
])
def test_stock_entry_refuses_to_expose_the_pool(tmp_path, args, key, expected):
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        _config(fake, key)
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in args]
        with mitmdump(tmp_path, "--listen-port", str(port), *args) as (proc, log):
            code = proc.wait(40)
            output = log.read_text()
    assert code != 0, output
    assert expected in output, output
    assert fake.requests == []


def test_stock_entry_on_the_network_with_the_option_and_a_key(tmp_path):
    lan = lan_address()
    if lan is None:
        pytest.skip("no non-loopback address on this machine")
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        _config(fake)
        port = free_port()
        with mitmdump(tmp_path, "--listen-host", lan, "--listen-port", str(port), "--set",
                      "tokn_insecure_allow_remote=true", quiet=False) as (_, log):
            served = _wait_served(port, host=lan)
            assert b"echo: hi" in served, log.read_text()
            refused = _chat(port, auth=False, host=lan)
            output = log.read_text()
    assert status_of(refused) == 407
    old_h11 = tuple(int(x) for x in h11.__version__.split(".")[:2]) < (0, 16)
    assert ("CVE-2025-43859" in output) is old_h11, output
    assert len(fake.requests_to("/chat/completions")) == 1
