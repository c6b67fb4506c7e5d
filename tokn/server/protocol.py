"""The listener's HTTP/1.1 protocol: uvicorn's httptools protocol (the C
parser, several times cheaper per request than h11) plus client-side deadlines,
a head size cap and connection caps (uvicorn has neither a header timeout nor a
body read timeout, so a half-sent request would hold its connection forever,
and llhttp does not bound a request head).

* a connection must finish each request head within ``header_timeout``
  seconds of its first byte (of connecting, for the first one): else 408 and
  close;
* a request head larger than :data:`MAX_HEAD_BYTES` (counted from the read
  after the one it began in: at most one read, 256 KiB, more) gets a 431 and
  the connection is closed;
* while a request body is coming, ``body_timeout`` seconds without a byte
  close the connection (the handler sees the client disconnect);
* peers beyond loopback are capped by :class:`~tokn.connlimits.ConnectionCaps`:
  a connection over a cap gets a 503 and is closed at once;
* each request's scope carries a :class:`Hangup` (``scope[HANGUP]``): the
  handler learns that the client went away without a task watching
  ``receive()`` for ``http.disconnect``.

Idle keep-alive connections are closed by uvicorn (``timeout_keep_alive``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokn.connlimits import ConnectionCaps
from tokn.drain import HANGUP, Hangup

log = logging.getLogger("tokn")

REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                   b"content-length: 39\r\nconnection: close\r\n\r\n"
                   b"tokn: the request head took too long.\r\n")
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                  b"content-type: text/plain\r\ncontent-length: 37\r\nconnection: close\r\n\r\n"
                  b"tokn: the request head is too large.\r\n")
MAX_HEAD_BYTES = 64 * 1024
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"content-length: 48\r\nconnection: close\r\n\r\n"
        b"tokn: too many connections from this address.\r\n")


@dataclass
class ClientLimits:
    caps: ConnectionCaps
    header_timeout: float = 20.0
    body_timeout: float = 60.0


class GuardedProtocol(HttpToolsProtocol):
    limits: ClientLimits  # set on the subclass :func:`guarded_protocol` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = False
        self._head_cycle = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # between a request's first byte and its head's end
        self._head_bytes = 0  # of it, counted from the chunk after the one it began in
        self._peer = self.client[0] if self.client else ""
        caps = self.limits.caps
        if not caps.exempt(self._peer, self.server[0] if self.server else ""):
            if not caps.admit(self._peer):
                log.warning("listener: refusing a connection from %s (connection cap reached)",
                            self._peer)
                transport.write(BUSY)
                transport.close()
                return
            self._admitted = True  # counted: released when it closes
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._head_cycle:
            self._head_cycle = cycle  # a new request head is complete
            self._header_timer = _cancel(self._header_timer)
        elif self._header_timer is None and (cycle is None or cycle.response_complete):
            self._arm_header_timer()  # the next request has started arriving
        if self._in_head:
            if self._head_bytes < 0:  # it began in this chunk (after what else, unknown)
                self._head_bytes = 0
            else:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        if cycle is not None and cycle is self._head_cycle and cycle.more_body:
            _cancel(self._body_timer)
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_idle)
        else:
            self._body_timer = _cancel(self._body_timer)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, -1

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        self.scope[HANGUP] = Hangup()  # (the scope is the new cycle's, or an upgrade's)

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer = _cancel(self._header_timer)
        self._body_timer = _cancel(self._body_timer)
        if self._admitted:
            self._admitted = False
            self.limits.caps.release(self._peer)
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            cycle.scope[HANGUP].fire()

    def handle_websocket_upgrade(self) -> None:
        """The connection becomes a WebSocket (uvicorn hands the transport to
        its WebSocket protocol; this one hears nothing more): the head and body
        deadlines stop, and a capped peer's slot is released when the WebSocket
        connection closes."""
        self._header_timer = _cancel(self._header_timer)
        self._body_timer = _cancel(self._body_timer)
        super().handle_websocket_upgrade()
        if self._admitted:
            self._admitted = False
            ws = self.transport.get_protocol()
            lost, caps, peer = ws.connection_lost, self.limits.caps, self._peer

            def release(exc: Exception | None) -> None:
                try:
                    lost(exc)
                finally:
                    caps.release(peer)

            ws.connection_lost = release  # type: ignore[method-assign]

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("listener: closing a connection from %s: no complete request head in "
                     "%.0f s", self._peer, self.limits.header_timeout)
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()

    def _refuse_head(self) -> None:
        self._header_timer = _cancel(self._header_timer)
        log.info("listener: closing a connection from %s: request head over %d bytes",
                 self._peer, MAX_HEAD_BYTES)
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def _body_idle(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading, not the client
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_idle)
            return
        log.info("listener: closing a connection from %s: request body stalled for %.0f s",
                 self._peer, self.limits.body_timeout)
        self.transport.close()


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


def guarded_protocol(limits: ClientLimits) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` sharing ``limits``."""

    class Protocol(GuardedProtocol):
        pass

    Protocol.limits = limits
    return Protocol
