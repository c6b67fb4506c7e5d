"""Attack tooling for the security suite: a recording "attacker" server, raw
sockets speaking to tokn's ports, curl, and the secrets that must never leak."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import account, running_tokn, write_config

KEY = "tokn-key-0c5e1a9b"                 # [server].api_key
POOLED = "sk-POOLED-openai-7d1f02"        # a pooled OpenAI key
POOLED_ANT = "sk-ant-POOLED-3e8a41"       # a pooled Anthropic key
SECRETS = (KEY, POOLED, POOLED_ANT, base64.b64encode(f"tokn:{KEY}".encode()).decode())
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class Attacker:
    """A server that records every byte it receives and answers ``200 ok``.
    ``tls`` makes it speak TLS (any name: it is an attacker)."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.tls = tls
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        try:
            conn.settimeout(2)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self.received.append(data)
            conn.close()

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self.received)

    def leaked(self) -> list[str]:
        data = self.all_bytes()
        return [s for s in SECRETS if s.encode() in data]

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def attacker(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Attacker]:
    att = Attacker(host, tls)
    try:
        yield att
    finally:
        att.close()


def config(*, accounts: list[dict[str, Any]] | None = None, server: dict[str, Any] | None = None,
           proxy_mode: dict[str, Any] | None = None) -> None:
    """Write a config with the key set (and by default two pooled accounts)."""
    write_config({"server": {"api_key": KEY, **(server or {})},
                  "proxy_mode": proxy_mode or {},
                  "accounts": accounts if accounts is not None else [
                      account("work", "openai", api_key=POOLED),
                      account("ant", "anthropic", api_key=POOLED_ANT)]})


@contextlib.contextmanager
def tokn(**kwargs: Any) -> Iterator[Any]:
    """tokn serve --with-proxy on free ports (the proxy's as ``.port``)."""
    with running_tokn(with_proxy=True, api_key=kwargs.pop("api_key", KEY), **kwargs) as handle:
        handle.port = int(handle.proxy_url.rsplit(":", 1)[1])
        yield handle


# --- talking to the ports ---------------------------------------------------------------

def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the peer closes or ``timeout`` passes with a complete answer."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if _complete(data):
                break
    except (TimeoutError, ConnectionResetError, ssl.SSLError):
        pass
    return data


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(answer: bytes) -> int | None:
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None


def raw(port: int, request: bytes, *, tls: bool = False, host: str = "127.0.0.1",
        source: str | None = None) -> bytes:
    """Send ``request`` to ``host:port`` (TLS spoken straight to the port when
    ``tls``, certificate not checked like ``--proxy-insecure``) and read the answer."""
    sock = socket.create_connection((host, port), timeout=10,
                                    source_address=(source, 0) if source else None)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(request)
        return recv_all(sock)
    finally:
        sock.close()


def http_request(method: str, target: str, headers: dict[str, str] | list[tuple[str, str]],
                 body: bytes = b"") -> bytes:
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if body:
        pairs.append(("content-length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in pairs), "", ""]
    return "\r\n".join(lines).encode() + body


def basic(user: str = "tokn", password: str = KEY) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    exe = shutil.which("curl")
    if not exe:
        pytest.skip("curl not installed")
    return subprocess.run([exe, "-sS", "-m", "20", *args], capture_output=True, text=True,
                          timeout=timeout)


def body_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def lan_address() -> str | None:
    """A non-loopback address of this machine (tests act as a LAN peer from it)."""
    from tokn.lan_host import guess_lan_host

    host = guess_lan_host()
    try:
        with socket.socket() as probe:
            probe.bind((host, 0))
    except OSError:
        return None
    from tokn.connlimits import is_loopback_peer

    return None if is_loopback_peer(host) else host


def wait_until(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
