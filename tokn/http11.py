"""One outbound HTTP/1.1 connection: an asyncio protocol parsed by httptools.

tokn's outbound pool (:mod:`tokn.outbound`) keeps these per origin.  A
connection carries one request at a time: the request head (and a body given
as bytes) leaves in one write, the answer is parsed by httptools (llhttp, the
parser the listener uses too) as it arrives, and the body is handed out in
the pieces that came, reading paused while more than :data:`HIGH` bytes wait.
Every wait is bounded by the request's ``timeout`` extension (connect, read,
write); failures are httpx's exceptions, as httpx's own transport raises them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator

import httptools
import httpx

HIGH = 1 << 18  # bytes of an answer buffered before reading pauses
LOW = 1 << 16  # ... and resumes

Origin = tuple[bytes, bytes, int]


def _head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # one line per header: a CR, LF or NUL inside a name or value would smuggle
    # another header (or request) to the upstream
    if head.count(b"\n") != len(headers) + 2 or head.count(b"\r") != len(headers) + 2 \
            or b"\0" in head:
        raise httpx.LocalProtocolError("a request header holds a line break or NUL")
    return head


async def connect(origin: Origin, ssl_context: ssl.SSLContext | None, timeout: float | None,
                  keepalive_expiry: float) -> Connection:
    """A new connection to ``origin`` (TLS for https) within ``timeout`` seconds."""
    scheme, host, port = origin
    if scheme not in (b"http", b"https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode()!r}")
    loop = asyncio.get_running_loop()
    conn = Connection(loop, keepalive_expiry)
    name = host.decode("ascii")
    tls = {"ssl": ssl_context, "server_hostname": name} if scheme == b"https" else {}
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: conn, name, port, **tls)
    except TimeoutError:
        raise httpx.ConnectTimeout(f"no connection to {name}:{port} within {timeout} s") \
            from None
    except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
    return conn


class Connection(asyncio.Protocol):
    """An open HTTP/1.1 connection (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keepalive_expiry: float) -> None:
        self._loop = loop
        self._keepalive_expiry = keepalive_expiry
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[bool] | None = None
        self._closed = False
        self._lost: BaseException | None = None  # why the peer went away (None: it closed)
        self._error: httpx.HTTPError | None = None  # the answer was malformed
        self._write_paused = False
        self._read_paused = False
        self._expires = float("inf")
        self._reset()

    def _reset(self) -> None:
        self._active = False  # a request is on this connection
        self._sent = False  # ... and all of it was sent
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._informational = False
        self._head_done = False
        self._until_close = False  # the body ends when the connection does
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False

    # --- the pool's view ---------------------------------------------------------
    def usable(self) -> bool:
        """Idle, open and within its keep-alive."""
        return not self._closed and not self._active and time.monotonic() < self._expires

    def release(self) -> bool:
        """The request is over: whether the connection can serve another (then
        it is idle from now); closed otherwise."""
        if self._complete and self._keep_alive and self._sent and not self._closed \
                and not self._chunks:
            self._reset()
            self._expires = time.monotonic() + self._keepalive_expiry
            return True
        self.close()
        return False

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    # --- a request ----------------------------------------------------------------
    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes | AsyncIterable[bytes], timeouts: dict[str, float | None]
                      ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Send the request; its answer's status, reason and headers (the body
        follows from :meth:`body`)."""
        head = _head(method, target, headers)
        self._active = True
        self._until_close = method == b"HEAD"  # (no body: closed after, see on_headers_complete)
        if self._closed:
            self._raise_lost()
        transport = self._transport
        if isinstance(body, bytes):
            if len(body) <= LOW:
                transport.write(head + body)
            else:
                transport.write(head)
                transport.write(body)
            self._sent = True
        else:
            transport.write(head)
            chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower()
                          for n, v in headers)
            async for part in body:
                if not part:
                    continue
                if chunked:
                    transport.write(b"%x\r\n" % len(part) + part + b"\r\n")
                else:
                    transport.write(part)
                if not await self._drained(timeouts.get("write")):
                    break  # the upstream answered (or hung up) before the body was sent
            else:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                self._sent = True  # (an answer before the whole body: never reused)
        while not self._head_done:
            self._raise_if_broken()
            if not await self._wait(timeouts.get("read")):
                raise httpx.ReadTimeout("the upstream sent no answer in time")
        return self._status, self._reason, self._headers

    async def body(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The answer's body as it arrives."""
        while True:
            if self._chunks:  # one piece per chunk, as sent (a stream's events stay apart)
                part = self._chunks.popleft()
                self._buffered -= len(part)
                if self._read_paused and self._buffered < LOW:
                    self._read_paused = False
                    self._transport.resume_reading()
                yield part
                continue
            if self._complete:
                return
            self._raise_if_broken()
            if not await self._wait(read_timeout):
                raise httpx.ReadTimeout("the upstream's answer stalled")

    async def _drained(self, secs: float | None) -> bool:
        """Wait while the socket's send buffer is full; ``False`` when the
        upstream answered meanwhile (sending stops), WriteError when it is gone."""
        while self._write_paused or self._closed:
            if self._head_done:
                return False
            if self._closed:
                raise httpx.WriteError(str(self._lost or "the upstream closed the connection")) \
                    from self._lost
            if not await self._wait(secs):
                raise httpx.WriteTimeout("the upstream took no more of the request in time")
        return not self._head_done

    async def _wait(self, secs: float | None) -> bool:
        """Until the connection has news (``True``) or ``secs`` passed (``False``)."""
        waiter = self._waiter = self._loop.create_future()
        timer = None if secs is None else self._loop.call_later(secs, _settle, waiter, False)
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._waiter is not None:
            _settle(self._waiter, True)

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            self._raise_lost()

    def _raise_lost(self) -> None:
        lost = self._lost
        if lost is not None:
            raise httpx.ReadError(str(lost)) from lost
        if self._head_done:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body")
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    # --- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._active or self._complete:  # bytes nobody asked for: not reusable
            self.close()
            self._wake()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._error = httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}")
            self.close()
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = exc
        if self._until_close and self._head_done and exc is None:
            self._complete = True  # a body delimited by the end of the connection
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    # --- httptools' callbacks -----------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and the like: the answer follows
            self._informational = True
            self._headers, self._reason = [], b""
            return
        self._status = status
        self._head_done = True
        if self._until_close:  # HEAD: no body whatever the headers say; not reused
            self._complete = True
            self._keep_alive = False
        elif status not in (204, 304):
            self._until_close = not any(n.lower() in (b"content-length", b"transfer-encoding")
                                        for n, _ in self._headers)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._complete:  # (HEAD's was complete with its head)
            self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._wake()


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
