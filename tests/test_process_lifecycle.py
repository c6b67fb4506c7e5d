"""The real CLI as a process: start-up lines, SIGINT/SIGTERM stop within 5 s."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import free_port, write_config


def _start(args, port_to_wait):
    proc = subprocess.Popen([sys.executable, "-m", "tokn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port_to_wait), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_proxy_stops_cleanly_within_5s(sig):
    api, proxy = free_port(), free_port()
    write_config({"server": {"port": api}, "proxy_mode": {"port": proxy}})
    proc = _start(["serve", "--with-proxy"], proxy)
    assert httpx.get(f"http://127.0.0.1:{api}/healthz").json()["status"] == "ok"
    assert "tokn proxy env" in httpx.get(f"http://127.0.0.1:{proxy}/", trust_env=False).text
    started = time.monotonic()
    proc.send_signal(sig)
    code = proc.wait(timeout=10)
    elapsed = time.monotonic() - started
    output = proc.stdout.read().decode()
    assert elapsed < 5, output
    assert code == 0, output
    assert f"http://127.0.0.1:{api}" in output and f"http://127.0.0.1:{proxy}" in output
    assert "Traceback" not in output
    for port in (api, proxy):  # both sockets really closed
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5)


def test_proxy_alone_and_port_in_use_message():
    proxy = free_port()
    write_config({"proxy_mode": {"port": proxy}})
    proc = _start(["proxy", "--route-mode", "passthrough"], proxy)
    try:
        clash = subprocess.run([sys.executable, "-m", "tokn", "proxy"], capture_output=True,
                               text=True, timeout=30, env=dict(os.environ))
        assert clash.returncode == 1
        assert clash.stderr.startswith(f"error: the proxy cannot listen on 127.0.0.1:{proxy}: "
                                       "the port is in use")
        assert "`tokn status`" in clash.stderr and "another port with --port" in clash.stderr
        assert len(clash.stderr.splitlines()) == 1 and clash.stdout == ""
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_bad_route_mode_flag():
    result = subprocess.run([sys.executable, "-m", "tokn", "proxy", "--route-mode", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    flat = re.sub(r"[\s│]", "", result.stderr)  # rich wraps the message in a box
    assert "'x';useoneof:route,switch,passthrough" in flat


def test_serve_on_all_interfaces_says_so_and_hints_at_adding_an_account():
    api = free_port()
    write_config({"server": {"port": api}})
    proc = _start(["serve", "--host", "0.0.0.0", "--insecure-allow-remote",
                   "--api-key", "k" * 32], api)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    output = " ".join(proc.stdout.read().decode().split())
    assert f"tokn listener on http://0.0.0.0:{api} (all interfaces; from this machine " \
           f"http://127.0.0.1:{api}) (0 accounts)" in output
    assert "no accounts yet: add one with `tokn login`" in output
