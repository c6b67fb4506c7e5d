"""Listening sockets for tokn's two front doors, and the one error a busy port gives.

The listener's sockets are bound here, before uvicorn starts (uvicorn's own
bind exits the process with a traceback when the port is taken); the proxy's
port is checked here the same way just before mitmproxy binds it.  Both raise
:class:`PortInUse`, which the CLI turns into one line naming the fix.

Only the standard library: ``tokn proxy env`` uses :func:`accepts`.
"""

from __future__ import annotations

import errno
import socket

from tokn.errors import ToknError


class PortInUse(ToknError):
    """``what`` ("the listener", "the proxy") cannot bind ``host:port``: another
    socket has it."""

    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(f"{what} cannot listen on {host}:{port}: the port is in use",
                         status=500, code="port_in_use")
        self.what, self.host, self.port = what, host, port


def _addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """(family, sockaddr) for each address ``host`` names, without repeats."""
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ToknError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", status=500,
                        code="bad_address") from None
    seen: list[tuple[int, tuple]] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    return seen


def _bind_one(family: int, sockaddr: tuple, what: str, host: str, port: int,
              several: bool) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; without it a response written in two parts waited for the
    # client's delayed ACK (40 ms per request on a keep-alive connection)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
        if family == socket.AF_INET6 and several:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(what, host, port) from None
        raise ToknError(f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}",
                        status=500, code="cannot_listen") from None
    return sock


def bind(what: str, host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for every address of ``host`` on
    ``port`` (0: a free port, the same for all of them)."""
    found = _addresses(host, port)
    sockets: list[socket.socket] = []
    try:
        for family, sockaddr in found:
            if sockets and port == 0:  # the port the first address got
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sockets.append(_bind_one(family, sockaddr, what, host, port, len(found) > 1))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise ToknError(f"{what} cannot listen on {host}:{port}: no IPv4 or IPv6 address",
                        status=500, code="bad_address")
    return sockets


def check_free(what: str, host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``host:port`` cannot be bound now (the
    proxy binds it itself a moment later); port 0 is always free."""
    if port == 0:
        return
    for sock in bind(what, host, port):
        sock.close()


def accepts(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (a wildcard
    address is tried on loopback)."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True
