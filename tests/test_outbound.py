"""tokn's outbound connection pool (tokn.outbound) against a real loopback server."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tokn.outbound import ConnectionPool


class Upstream:
    """A tiny HTTP/1.1 keep-alive server: ``/slow`` answers after ``delay``, ``/close``
    answers and closes, anything else answers at once; counts connections."""

    def __init__(self, delay: float = 0.2, hold: int = 0) -> None:
        self.delay = delay
        self.hold = hold  # /slow also waits (up to 10 s) until this many are open
        self.enough = asyncio.Event()
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        if self.hold and self.open >= self.hold:
            self.enough.set()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/slow":
                    await asyncio.sleep(self.delay)
                    if self.hold:
                        await asyncio.wait_for(self.enough.wait(), 10)
                body = b'{"ok":true}'
                close = path == b"/close"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n%s\r\n%s"
                             % (len(body), b"connection: close\r\n" if close else b"", body))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def run(coro):
    return asyncio.run(coro)


def test_sequential_requests_reuse_one_connection():
    async def main():
        async with Upstream() as up:
            async with httpx.AsyncClient(transport=ConnectionPool()) as client:
                for _ in range(20):
                    r = await client.get(up.url + "/")
                    assert r.json() == {"ok": True}
                assert client._transport.idle == 1
            assert up.connections == 1

    run(main())


def test_hundreds_of_concurrent_requests_each_get_a_connection_and_idle_ones_are_capped():
    async def main():
        async with Upstream(delay=0.0, hold=300) as up:
            pool = ConnectionPool(max_idle=50)
            async with httpx.AsyncClient(transport=pool, timeout=30) as client:
                replies = await asyncio.gather(*(client.get(up.url + "/slow")
                                                 for _ in range(300)))
                assert all(r.status_code == 200 for r in replies)
                # all at once, not queued behind a 200-connection cap
                assert up.most_open == 300
                assert pool.idle == 50 and pool.connections == 50

    run(main())


def test_idle_connections_are_closed_once_expired_without_another_request():
    # a burst's idle connections used to stay open (sockets, buffers) until the
    # next request swept them
    async def main():
        async with Upstream(delay=0.0, hold=20) as up:
            pool = ConnectionPool(keepalive_expiry=0.05)
            async with httpx.AsyncClient(transport=pool, timeout=30) as client:
                await asyncio.gather(*(client.get(up.url + "/slow") for _ in range(20)))
                assert pool.idle == 20 and up.open == 20
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if pool.idle == 0 and up.open == 0:
                        break
                assert (pool.idle, pool.connections, up.open) == (0, 0, 0)
                assert (await client.get(up.url + "/")).json() == {"ok": True}

    run(main())


def test_max_connections_is_respected_and_waiting_requests_are_served():
    async def main():
        async with Upstream(delay=0.05) as up:
            pool = ConnectionPool(max_connections=3)
            async with httpx.AsyncClient(transport=pool, timeout=30) as client:
                replies = await asyncio.gather(*(client.get(up.url + "/slow")
                                                 for _ in range(30)))
            assert all(r.status_code == 200 for r in replies)
            assert up.most_open <= 3 and up.connections == 3

    run(main())


def test_a_request_waits_at_most_its_pool_timeout():
    async def main():
        async with Upstream(delay=2.0) as up:
            pool = ConnectionPool(max_connections=1)
            async with httpx.AsyncClient(transport=pool) as client:
                busy = asyncio.ensure_future(client.get(up.url + "/slow", timeout=30))
                await asyncio.sleep(0.1)
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(up.url + "/", timeout=httpx.Timeout(30, pool=0.2))
                assert (await busy).status_code == 200
                # the slot came back: the next request goes through
                assert (await client.get(up.url + "/")).status_code == 200

    run(main())


def test_a_connection_the_server_closed_is_not_reused():
    async def main():
        async with Upstream() as up:
            pool = ConnectionPool()
            async with httpx.AsyncClient(transport=pool) as client:
                assert (await client.get(up.url + "/close")).status_code == 200
                assert pool.idle == 0 and pool.connections == 0
                assert (await client.get(up.url + "/")).status_code == 200
                await asyncio.sleep(0.05)
                up.server.close()  # stop listening; the idle connection stays open
                for w in list(asyncio.all_tasks()):
                    if w.get_coro().__qualname__.startswith("Upstream._serve"):
                        w.cancel()  # the server hangs up on the idle connection
                await asyncio.sleep(0.1)
                up.server = await asyncio.start_server(up._serve, "127.0.0.1", up.port)
                assert (await client.get(up.url + "/")).status_code == 200
            assert up.connections == 3

    run(main())


def test_errors_are_httpx_errors():
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pool = ConnectionPool()
        async with httpx.AsyncClient(transport=pool) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")
            assert pool.connections == 0

    run(main())


def test_a_response_abandoned_mid_body_frees_its_connection():
    async def main():
        async with Upstream() as up:
            pool = ConnectionPool(max_connections=1)
            async with httpx.AsyncClient(transport=pool, timeout=5) as client:
                async with client.stream("GET", up.url + "/") as r:
                    assert r.status_code == 200  # body never read
                assert pool.connections == 0  # closed, not returned half-read
                for _ in range(3):
                    assert (await client.get(up.url + "/")).status_code == 200
            assert up.connections == 2

    run(main())


def test_connections_closing_under_concurrent_load_are_never_handed_out_twice(monkeypatch):
    """Sweeps (here on every request) and stale connections met while acquiring
    run between other requests' acquisitions: no connection is given to two
    requests at once (httpcore would refuse the second, or two reads collide)."""
    from tokn import outbound

    monkeypatch.setattr(outbound, "SWEEP_SECS", 0.0)

    async def main():
        async with Upstream(delay=0.002) as up:
            pool = ConnectionPool(max_connections=40, max_idle=40, keepalive_expiry=0.003)
            async with httpx.AsyncClient(transport=pool, timeout=30) as client:
                async def one(i: int) -> int:
                    await asyncio.sleep((i % 7) * 0.002)
                    return (await client.get(up.url + "/slow")).status_code

                for _ in range(8):
                    codes = await asyncio.gather(*(one(i) for i in range(200)),
                                                 return_exceptions=True)
                    assert codes == [200] * 200, [c for c in codes if c != 200][:3]

    run(main())
