"""A stand-in for the internet: a forward proxy that speaks HTTP ``CONNECT`` and
SOCKS5 (RFC 1928, no authentication) and reaches only the names it was given.

``FakeInternet({"api.openai.com:443": fake_llm_port})`` tunnels a client's
connection for ``api.openai.com:443`` to ``127.0.0.1:<fake_llm_port>`` byte for
byte (the fake serves TLS with a certificate for that name), so a client that
is pointed at it with ``HTTPS_PROXY=http://…`` or ``socks5h://…`` reaches the
real host names and nothing leaves the machine.  Every tunnel is recorded in
``tunnels`` as ``(protocol, "host:port")``; an unknown name is refused
(``502`` / SOCKS reply ``0x04`` host unreachable).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping

__all__ = ["FakeInternet"]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        first = sock.recv(1, socket.MSG_PEEK)
        if first == b"\x05":
            target = self._socks5(sock)
            protocol = "socks5"
        else:
            target = self._connect(sock)
            protocol = "http-connect"
        if target is None:
            return
        name, upstream = target
        self.server.owner.tunnels.append((protocol, name))
        sock.settimeout(None)
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(upstream, sock), daemon=True)
        back.start()
        _pipe(sock, upstream)
        back.join(30)
        upstream.close()

    def _open(self, host: str, port: int) -> tuple[str, socket.socket] | None:
        name = f"{host.lower()}:{port}"
        local = self.server.owner.routes.get(name)
        if local is None:
            self.server.owner.refused.append(name)
            return None
        try:
            return name, socket.create_connection(("127.0.0.1", local), timeout=10)
        except OSError:
            self.server.owner.refused.append(name)
            return None

    def _connect(self, sock: socket.socket) -> tuple[str, socket.socket] | None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            sock.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return None
        host, _, port = parts[1].rpartition(":")
        opened = self._open(host.strip("[]"), int(port))
        if opened is None:
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return None
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return opened

    def _socks5(self, sock: socket.socket) -> tuple[str, socket.socket] | None:
        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("client went away")
                data += chunk
            return data

        try:
            _, count = read(2)
            methods = read(count)
            if 0x00 not in methods:
                sock.sendall(b"\x05\xff")
                return None
            sock.sendall(b"\x05\x00")
            _, command, _, kind = read(4)
            if kind == 0x01:
                host = str(ipaddress.IPv4Address(read(4)))
            elif kind == 0x03:
                host = read(read(1)[0]).decode("idna")
            elif kind == 0x04:
                host = str(ipaddress.IPv6Address(read(16)))
            else:
                return None
            (port,) = struct.unpack("!H", read(2))
            self.server.owner.socks_names.append(host)
            reply = b"\x05%c\x00\x01" + b"\x00" * 6
            if command != 0x01:
                sock.sendall(reply % 0x07)   # command not supported
                return None
            opened = self._open(host, port)
            if opened is None:
                sock.sendall(reply % 0x04)   # host unreachable
                return None
            sock.sendall(reply % 0x00)
            return opened
        except ConnectionError:
            return None


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeInternet


class FakeInternet:
    """``with FakeInternet({"api.openai.com:443": port}) as net:`` ``net.http_url`` /
    ``net.socks_url``; ``net.tunnels`` lists what went through."""

    def __init__(self, routes: Mapping[str, int]) -> None:
        self.routes = {k.lower(): v for k, v in routes.items()}
        self.tunnels: list[tuple[str, str]] = []
        self.refused: list[str] = []
        self.socks_names: list[str] = []   # the address as the SOCKS client sent it
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.socks_url = f"socks5h://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeInternet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
