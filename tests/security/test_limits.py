"""Issue 12.5: slow and idle connections are closed, and a LAN peer cannot
starve either front door before authenticating.

The deadlines apply to every connection and are tested from loopback.  The
connection caps apply to peers beyond this machine: tokn listens on the host
side of a veth pair and the flooding peer runs inside a network namespace
(``tests/security/flood.py``), while the user's own processes keep using
tokn from 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config
from tests.security.helpers import (
    CHAT,
    KEY,
    basic,
    http_request,
    raw,
    recv_all,
    status_of,
    wait_until,
)

TIMEOUT = 1.5
BODY = json.dumps(CHAT).encode()
FLOOD = Path(__file__).with_name("flood.py")


@pytest.fixture
def fake():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as server:
        yield server


def _start(fake: FakeLLM, host: str = "127.0.0.1", **server):
    write_config({"server": {"api_key": KEY, "header_timeout_secs": TIMEOUT,
                             "body_timeout_secs": TIMEOUT} | server,
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    return running_tokn(with_proxy=True, api_key=KEY, host=host, proxy_host=host)


def _ports(handle) -> tuple[int, int]:
    return int(handle.api_url.rsplit(":", 1)[1]), int(handle.proxy_url.rsplit(":", 1)[1])


def _listener_chat(port: int, host: str = "127.0.0.1") -> bytes:
    return raw(port, http_request("POST", "/v1/chat/completions",
                                  {"host": f"tokn.lan:{port}", "authorization": f"Bearer {KEY}",
                                   "content-type": "application/json"}, BODY),
               host=host, source="127.0.0.1")


def _proxy_chat(port: int, host: str = "127.0.0.1") -> bytes:
    return raw(port, http_request("POST", "http://api.openai.com/v1/chat/completions",
                                  {"host": "api.openai.com", "proxy-authorization": basic(),
                                   "content-type": "application/json"}, BODY),
               host=host, source="127.0.0.1")


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- caps: a peer in another network namespace ---------------------------------------

def _flood(netns: dict, api: int, proxy: int, count: int) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    return subprocess.Popen(["ip", "netns", "exec", netns["ns"], sys.executable, str(FLOOD),
                             netns["host"], str(api), str(proxy), str(count), KEY],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _step(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, f"flood.py exited {proc.wait(10)}"
    return json.loads(line)


@pytest.mark.parametrize("count,cap,deadline", [(1100, None, 8.0), (8, 5, 4.0)])
def test_a_flood_of_half_sent_requests_from_a_lan_peer_starves_nothing(fake, netns, count,
                                                                       cap, deadline):
    server = {"header_timeout_secs": deadline}
    if cap is not None:
        server["max_client_connections"] = cap
    with _start(fake, netns["host"], **server) as t:
        api, proxy = _ports(t)
        # warm up (a model listing that fails under load is retried on the next request)
        assert wait_until(lambda: b"echo: hi" in _listener_chat(api, netns["host"]), 20), \
            [(r.method, r.path) for r in fake.requests]
        started = time.monotonic()
        proc = _flood(netns, api, proxy, count)
        try:
            held = _step(proc)
            assert held["seconds"] < deadline, "the flood was too slow to check the caps"
            # the peer holds exactly its share of each front door ...
            assert held["held"] == {str(api): cap or 100, str(proxy): cap or 100}
            # ... while this machine's own clients are served (a second try only
            # when the loopback fake upstream hiccuped: tokn itself answered a 5xx)
            for call, port in ((_listener_chat, api), (_proxy_chat, proxy)):
                answer = call(port, netns["host"])
                if (status_of(answer) or 0) >= 500 and b"account p failed" in answer:
                    answer = call(port, netns["host"])
                assert b"echo: hi" in answer, (answer, [(r.method, r.path, r.time)
                                                        for r in fake.requests])
            # what the peer holds is closed at the header deadline
            time.sleep(max(0.0, started + deadline + 1.5 - time.monotonic()))
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert _step(proc)["after"] == {str(api): 0, str(proxy): 0}
            # and then it is an ordinary client again
            served = _step(proc)["served"]
        finally:
            proc.kill()
            proc.wait(10)
    assert [line.split(" ")[1] for line in served] == ["200", "200"], served


# --- deadlines: any connection ---------------------------------------------------------

def test_a_drip_fed_request_head_is_cut_at_the_deadline(fake):
    with _start(fake) as t:
        api, _ = _ports(t)
        sock = socket.create_connection(("127.0.0.1", api), timeout=5)
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - started > TIMEOUT + 2:
                break
        answer = recv_all(sock, 3)
        sock.close()
    assert status_of(answer) == 408, answer
    assert time.monotonic() - started < TIMEOUT + 4


def test_a_stalled_request_body_is_closed(fake):
    with _start(fake) as t:
        api, _ = _ports(t)
        sock = socket.create_connection(("127.0.0.1", api), timeout=5)
        sock.sendall(http_request("POST", "/v1/chat/completions", [
            ("host", "127.0.0.1"), ("authorization", f"Bearer {KEY}"),
            ("content-type", "application/json"), ("content-length", "1000")]) + b'{"mod')
        assert _closed_by_peer(sock, TIMEOUT + 3)
        sock.close()
    assert fake.requests_to("/chat/completions") == []


def test_proxy_closes_connections_that_never_authenticate(fake):
    with _start(fake) as t:
        _, proxy = _ports(t)
        idle = socket.create_connection(("127.0.0.1", proxy), timeout=5)
        hello = socket.create_connection(("127.0.0.1", proxy), timeout=5)
        hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS hello, cut
        refused = socket.create_connection(("127.0.0.1", proxy), timeout=5)
        refused.sendall(http_request("CONNECT", "api.openai.com:443",
                                     {"host": "api.openai.com:443"}))
        assert status_of(recv_all(refused, 5)) == 407
        tunnel = socket.create_connection(("127.0.0.1", proxy), timeout=5)
        tunnel.sendall(http_request("CONNECT", "example.test:443",
                                    {"host": "example.test:443", "proxy-authorization": basic()}))
        assert status_of(recv_all(tunnel, 5)) == 200
        assert all(_closed_by_peer(s, TIMEOUT + 3) for s in (idle, hello, refused))
        assert not _closed_by_peer(tunnel, 1.0)  # an authenticated tunnel is the client's
        for s in (idle, hello, refused, tunnel):
            s.close()


def test_an_idle_keep_alive_listener_connection_is_closed(fake):
    with _start(fake) as t:
        api, _ = _ports(t)
        sock = socket.create_connection(("127.0.0.1", api), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status_of(recv_all(sock, 5)) == 200
        assert _closed_by_peer(sock, 10)  # uvicorn's keep-alive timeout (5 s)
        sock.close()


WS_PEER = """
import sys
from websockets.sync.client import connect
host, port, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(n):
    with connect(f"ws://{host}:{port}/v1/responses", proxy=None, open_timeout=5,
                 additional_headers={"authorization": f"Bearer {key}"}) as ws:
        pass
    print("closed", i + 1, flush=True)
"""


def test_a_lan_peers_websockets_give_their_connection_slots_back(fake, netns):
    """A WebSocket upgrade leaves the HTTP protocol that counted the peer's
    connection: the slot must come back when the WebSocket closes, or a peer
    that opened ``max_client_connections`` of them is locked out for good."""
    with _start(fake, netns["host"], max_client_connections=2,
                allowed_hosts=[netns["host"]]) as t:
        api, _ = _ports(t)
        out = subprocess.run(["ip", "netns", "exec", netns["ns"], sys.executable, "-c", WS_PEER,
                              netns["host"], str(api), KEY, "5"],
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                                  "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "closed 5"
