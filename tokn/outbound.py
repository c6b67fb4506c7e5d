"""tokn's outbound connection pool: an httpx transport over tokn's own
HTTP/1.1 connections (:mod:`tokn.http11`).

Every upstream call leaves through one ``httpx.AsyncClient``
(:func:`tokn.runtime.make_client`); without an outbound proxy its transport is
a :class:`ConnectionPool`.  httpcore's own pool re-examines every pooled
connection on every request start and end (a readability poll per idle
connection, and a quadratic idle count), and its connections go through anyio
streams, cancel scopes and h11 on every read and write: together about half
of the listener's CPU per request.  This pool keeps, per origin, a stack of
idle connections: a request takes the most recently used one that is still
open and within its keep-alive (the event loop has told the connection if the
upstream hung up), or opens a new one; the response, once closed, gives its
connection back if it is reusable.  Idle connections past their keep-alive
are swept at most once a second, and once they expire even when no request
comes (an idle burst's connections would otherwise hold their sockets and
buffers).

Errors are httpx's, so callers see the same exceptions as with httpx's own
transport.  With an outbound proxy (``[proxy]``) httpx's proxy transport is
used instead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import httpx

from tokn.http11 import Connection, Origin, connect

SWEEP_SECS = 1.0


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (shared: it stays empty)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


_NO_COOKIES = _NoCookies()


class Client(httpx.AsyncClient):
    """tokn's outbound client: httpx's, keeping no cookies.  One client serves
    every account, so a cookie one account's upstream set must not ride along
    with the next account's requests (and reading answers' cookies cost ~5 %
    of the listener's CPU per request)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES


class _Body(httpx.AsyncByteStream):
    """A response body; closing it hands the connection back to the pool."""

    def __init__(self, pool: ConnectionPool, key: Origin, conn: Connection,
                 read_timeout: float | None) -> None:
        self._pool, self._key, self._conn = pool, key, conn
        self._read_timeout = read_timeout
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._conn.body(self._read_timeout)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.release(self._key, self._conn)


class ConnectionPool(httpx.AsyncBaseTransport):
    """HTTP/1.1 connections kept per origin: at most ``max_connections`` open in
    all, at most ``max_idle`` idle per origin, each idle for at most
    ``keepalive_expiry`` seconds.  A request that finds every connection busy
    waits up to its ``pool`` timeout (then :class:`httpx.PoolTimeout`)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *,
                 max_connections: int = 1000, max_idle: int = 100,
                 keepalive_expiry: float = 5.0) -> None:
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self.ssl_context.set_alpn_protocols(["http/1.1"])
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[Connection]] = {}
        self._open = 0  # connections open or opening, busy or idle
        self._waiters: list[asyncio.Future[None]] = []
        self._swept = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None  # the sweep once idle ones expire

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
        self._sweep()
        conn = await self._acquire(key, timeout.get("pool"))
        if conn is None:  # a slot for a new connection
            try:
                conn = await connect(key, self.ssl_context, timeout.get("connect"),
                                     self.keepalive_expiry)
            except BaseException:
                self._forget()
                raise
        stream = request.stream
        body = request.content if isinstance(stream, httpx.ByteStream) else stream
        try:
            status, reason, headers = await conn.request(
                request.method.encode("ascii"), url.raw_path, request.headers.raw, body,
                timeout)
        except BaseException:
            self.release(key, conn)
            raise
        return httpx.Response(status_code=status, headers=headers,
                              stream=_Body(self, key, conn, timeout.get("read")),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    async def _acquire(self, key: Origin, wait: float | None) -> Connection | None:
        """An idle connection to ``key``, or ``None``: a slot to open one in."""
        # Bookkeeping never awaits (a stack changed by another task while this
        # one waits could hand one connection to two requests).
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            stack = self._idle.get(key)
            while stack:
                conn = stack.pop()
                if conn.usable():
                    return conn
                self._drop(conn)
            if self._open < self.max_connections:
                self._open += 1
                return None
            other = next((s for s in self._idle.values() if s), None)
            if other:  # room for this origin: close the oldest idle one of another
                self._drop(other.pop(0))
                continue
            await self._wait(deadline)

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

    def _forget(self) -> None:
        """A connection no longer counts as open."""
        self._open -= 1
        self._wake_one()

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._forget()

    def release(self, key: Origin, conn: Connection) -> None:
        """A request is over with ``conn``: keep it idle when it can serve again."""
        if conn.release():
            stack = self._idle.setdefault(key, [])
            if len(stack) < self.max_idle:
                stack.append(conn)
                self._wake_one()
                self._sweep_later()
                return
        self._drop(conn)

    def _sweep_later(self) -> None:
        """Sweep once the connection just made idle has expired (unless a sweep is
        due already), whether or not a request comes by then."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self.keepalive_expiry + SWEEP_SECS, self._timed_sweep)

    def _timed_sweep(self) -> None:
        self._timer = None
        self._sweep(due=True)

    def _sweep(self, *, due: bool = False) -> None:
        """Close idle connections past their keep-alive (at most once a second,
        unless ``due``); sweep again later while any stay idle."""
        now = time.monotonic()
        if now - self._swept < SWEEP_SECS and not due:
            return
        self._swept = now
        for stack in self._idle.values():
            stale = [c for c in stack if not c.usable()]
            if stale:
                stack[:] = [c for c in stack if c not in stale]  # in place: see _acquire
                for conn in stale:
                    self._drop(conn)
        if self.idle:
            self._sweep_later()

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stack in self._idle.values():
            for conn in stack:
                self._drop(conn)
            stack.clear()
