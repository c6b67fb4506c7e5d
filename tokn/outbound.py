"""tokn's outbound connection pool: an httpx transport over httpcore connections.

Every upstream call leaves through one ``httpx.AsyncClient``
(:func:`tokn.runtime.make_client`); without an outbound proxy its transport is
a :class:`ConnectionPool`.  httpcore's own pool re-examines every pooled
connection on every request start and end (a readability poll per idle
connection, and a quadratic idle count): a fifth of the listener's CPU under
load, and hundreds of concurrent streams crawled.  This pool keeps, per origin, a
stack of idle connections: a request takes the most recently used one (checked
for expiry: one poll), or opens a new one; the response, once closed, gives its
connection back if it is reusable.  Idle connections past their keep-alive are
swept at most once a second, and once they expire even when no request comes
(an idle burst's connections would otherwise hold their sockets and buffers).

Connections are httpcore's (``httpcore.AsyncHTTPConnection``: TLS, HTTP/1.1,
timeouts from the request's ``timeout`` extension); httpcore's errors become
httpx's here, so callers see the same exceptions as with httpx's own transport.
With an outbound proxy (``[proxy]``) httpx's proxy transport is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator

import httpcore
import httpx

# httpcore's exceptions and httpx's, one to one (httpx's transport does the same)
_ERRORS: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
SWEEP_SECS = 1.0

Origin = tuple[bytes, bytes, int]


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise _converted(exc) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError,
            httpcore.UnsupportedProtocol) as exc:
        raise _converted(exc) from exc


def _converted(exc: Exception) -> Exception:
    for core, ours in _ERRORS:
        if isinstance(exc, core):
            return ours(str(exc))
    return httpx.TransportError(str(exc))  # pragma: no cover - the table covers httpcore's


class _Body(httpx.AsyncByteStream):
    """A response body; closing it hands the connection back to the pool."""

    def __init__(self, pool: ConnectionPool, key: Origin, conn: httpcore.AsyncHTTPConnection,
                 response: httpcore.Response) -> None:
        self._pool, self._key, self._conn, self._response = pool, key, conn, response
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with _httpx_errors():
                await self._response.aclose()
        finally:
            await self._pool.release(self._key, self._conn)


class ConnectionPool(httpx.AsyncBaseTransport):
    """HTTP/1.1 connections kept per origin: at most ``max_connections`` open in
    all, at most ``max_idle`` idle per origin, each idle for at most
    ``keepalive_expiry`` seconds.  A request that finds every connection busy
    waits up to its ``pool`` timeout (then :class:`httpx.PoolTimeout`)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *,
                 max_connections: int = 1000, max_idle: int = 100,
                 keepalive_expiry: float = 5.0) -> None:
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[httpcore.AsyncHTTPConnection]] = {}
        self._open = 0  # connections open or opening, busy or idle
        self._waiters: list[asyncio.Future[None]] = []
        self._swept = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None  # the sweep once idle ones expire
        self._sweeper: asyncio.Task[None] | None = None
        self._backend = httpcore.AnyIOBackend()  # asyncio via anyio, no per-call detection

    @property
    def connections(self) -> int:
        """How many connections are open (busy or idle)."""
        return self._open

    @property
    def idle(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key: Origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https"
                                                                  else 80))
        timeout = request.extensions.get("timeout", {})
        await self._sweep()
        conn = await self._acquire(key, timeout.get("pool"))
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        try:
            with _httpx_errors():
                response = await conn.handle_async_request(core)
        except BaseException:
            await self.release(key, conn)
            raise
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(self, key, conn, response),
                              extensions=response.extensions)

    async def _acquire(self, key: Origin, wait: float | None) -> httpcore.AsyncHTTPConnection:
        # Bookkeeping never awaits (a stack changed by another task while this
        # one waits could hand one connection to two requests); connections
        # dropped on the way are closed once a connection is chosen.
        deadline = None if wait is None else time.monotonic() + wait
        dropped: list[httpcore.AsyncHTTPConnection] = []
        try:
            while True:
                stack = self._idle.setdefault(key, [])
                while stack:
                    conn = stack.pop()
                    if conn.is_available() and not conn.has_expired():
                        return conn
                    dropped.append(self._forget(conn))
                if self._open < self.max_connections:
                    self._open += 1
                    return httpcore.AsyncHTTPConnection(
                        httpcore.Origin(*key), ssl_context=self.ssl_context,
                        keepalive_expiry=self.keepalive_expiry, network_backend=self._backend)
                other = next((s for k, s in self._idle.items() if k != key and s), None)
                if other:  # room for this origin: close the oldest idle one of another
                    dropped.append(self._forget(other.pop(0)))
                    continue
                await self._wait(deadline)
        finally:
            await _close_all(dropped)

    async def _wait(self, deadline: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            await asyncio.wait_for(waiter, left)
        except TimeoutError:
            raise httpx.PoolTimeout("no connection to the upstream came free in time") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, then cancelled: the free slot goes to the next
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, conn: httpcore.AsyncHTTPConnection) -> httpcore.AsyncHTTPConnection:
        """``conn`` no longer counts as open (the caller closes it)."""
        self._open -= 1
        self._wake_one()
        return conn

    async def release(self, key: Origin, conn: httpcore.AsyncHTTPConnection) -> None:
        """A request is over with ``conn``: keep it idle when it can serve again."""
        if conn.is_idle() and not conn.is_closed():
            stack = self._idle.setdefault(key, [])
            if len(stack) < self.max_idle:
                stack.append(conn)
                self._wake_one()
                self._sweep_later()
                return
        await _close_all([self._forget(conn)])

    def _sweep_later(self) -> None:
        """Sweep once the connection just made idle has expired (unless a sweep is
        due already), whether or not a request comes by then."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self.keepalive_expiry + SWEEP_SECS, self._timed_sweep)

    def _timed_sweep(self) -> None:
        self._timer = None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep(due=True))

    async def _sweep(self, *, due: bool = False) -> None:
        """Close idle connections past their keep-alive (at most once a second,
        unless ``due``); sweep again later while any stay idle."""
        now = time.monotonic()
        if now - self._swept < SWEEP_SECS and not due:
            return
        self._swept = now
        dropped = []
        for stack in self._idle.values():
            stale = [c for c in stack if c.has_expired() or not c.is_available()]
            if stale:
                stack[:] = [c for c in stack if c not in stale]  # in place: see _acquire
                dropped += [self._forget(c) for c in stale]
        if self.idle:
            self._sweep_later()
        await _close_all(dropped)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeper is not None:
            await asyncio.gather(self._sweeper, return_exceptions=True)
        dropped = []
        for stack in self._idle.values():
            dropped += [self._forget(c) for c in stack]
            stack.clear()
        await _close_all(dropped)


async def _close_all(conns: list[httpcore.AsyncHTTPConnection]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.aclose()
