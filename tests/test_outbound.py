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


class Raw:
    """A loopback server that answers each connection with ``answer(head, body,
    writer)`` (raw bytes: malformed, early, close-delimited...); keeps what it read."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []

    async def __aenter__(self) -> Raw:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b""
                lowered = head.lower()
                if b"content-length:" in lowered:
                    size = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(size)
                elif b"transfer-encoding: chunked" in lowered:
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if size == 0:
                            break
                self.requests.append((head, body))
                if await self.answer(head, body, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _ok(body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def _get(url: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(transport=ConnectionPool(), timeout=5) as client:
        return await client.request(kw.pop("method", "GET"), url, **kw)


def test_a_streamed_request_body_is_sent_chunked_and_the_answer_read():
    async def answer(head, body, writer):
        writer.write(_ok(body[::-1]))

    async def parts():
        for part in (b"abc", b"", b"defg"):
            yield part

    async def main():
        async with Raw(answer) as up:
            r = await _get(up.url + "/x?q=1", method="POST", content=parts())
            assert r.content == b"gfedcba"
            head, body = up.requests[0]
            assert head.startswith(b"POST /x?q=1 HTTP/1.1\r\n")
            assert b"transfer-encoding: chunked" in head.lower() and body == b"abcdefg"

    run(main())


def test_chunked_close_delimited_and_informational_answers():
    async def answer(head, body, writer):
        path = head.split(b" ")[1]
        if path == b"/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        elif path == b"/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"after"))
        else:  # no length: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            await writer.drain()
            return False

    async def main():
        pool = ConnectionPool()
        async with Raw(answer) as up, httpx.AsyncClient(transport=pool, timeout=5) as client:
            chunked = await client.get(up.url + "/chunked")
            assert chunked.content == b"abcde"
            cont = await client.get(up.url + "/continue")
            assert (cont.status_code, cont.content) == (200, b"after")
            assert (await client.get(up.url + "/eof")).content == b"until the end"
            assert pool.connections == 0  # /eof's was not kept

    run(main())


@pytest.mark.parametrize("name,value", [(b"x-a", b"1\r\nx-smuggled: 2"),
                                        (b"x-a", b"1\nGET / HTTP/1.1"), (b"x-a", b"1\x00")])
def test_a_header_with_a_line_break_is_refused_not_sent(name, value):
    async def answer(head, body, writer):
        writer.write(_ok())

    async def main():
        async with Raw(answer) as up:
            request = httpx.Request("GET", up.url + "/", headers=[(name, value)])
            async with httpx.AsyncClient(transport=ConnectionPool(), timeout=5) as client:
                with pytest.raises(httpx.LocalProtocolError):
                    await client.send(request)
                assert client._transport.connections == 0
            assert up.requests == []

    run(main())


@pytest.mark.parametrize("fault,error,text", [
    ("close", httpx.RemoteProtocolError, "Server disconnected without sending a response"),
    ("garbage", httpx.RemoteProtocolError, "malformed HTTP answer"),
    ("half", httpx.RemoteProtocolError, "without sending complete message body"),
    ("reset", httpx.ReadError, "Connection reset by peer"),
    ("silent", httpx.ReadTimeout, "no answer in time"),
    ("stall", httpx.ReadTimeout, "stalled"),
])
def test_broken_answers_are_httpx_errors_and_the_connection_is_dropped(fault, error, text):
    async def answer(head, body, writer):
        if fault == "garbage":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n")
        elif fault in ("half", "stall", "reset"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await writer.drain()
            if fault == "stall":
                await asyncio.sleep(2)
            if fault == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        elif fault == "silent":
            await asyncio.sleep(2)
        return False

    async def main():
        async with Raw(answer) as up:
            pool = ConnectionPool()
            async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(5, read=0.3)) \
                    as client:
                with pytest.raises(error) as info:
                    await client.get(up.url + "/")
                assert text in str(info.value)
                assert pool.connections == 0

    run(main())


def test_a_large_answer_is_read_whole_with_reading_paused_in_between():
    big = bytes(range(256)) * 8192  # 2 MiB, over the pause threshold

    async def answer(head, body, writer):
        writer.write(_ok(big))
        await writer.drain()

    async def main():
        pool = ConnectionPool()
        async with Raw(answer) as up, httpx.AsyncClient(transport=pool, timeout=5) as client:
            async with client.stream("GET", up.url + "/") as r:
                got = b""
                async for part in r.aiter_raw():
                    got += part
                    await asyncio.sleep(0)  # a slow reader
            assert got == big
            assert (await client.get(up.url + "/")).content == big
            assert pool.connections == 1  # the first one, reused

    run(main())


def test_the_outbound_client_keeps_no_cookie_an_upstream_set():
    """One client serves every account: account A's upstream cookie must not
    go out with account B's request to the same host."""
    from tokn.config import Config
    from tokn.runtime import make_client

    async def answer(head, body, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=account-a; Path=/\r\n"
                     b"content-length: 2\r\n\r\nok")

    async def main():
        async with Raw(answer) as up:
            client = make_client(Config())
            async with client:
                for who in ("a", "b"):
                    r = await client.get(up.url + "/", headers={"authorization": f"Bearer {who}"})
                    assert r.cookies["session"] == "account-a"  # the answer still shows it
                assert len(client.cookies) == 0
            assert [b"cookie:" in head.lower() for head, _ in up.requests] == [False, False]

    run(main())


def test_an_answer_before_the_whole_body_ends_the_upload_and_the_connection_is_not_reused():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only: the body is refused unread
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def parts():
        yield b"x" * 1000
        await asyncio.sleep(0.3)  # the answer arrives meanwhile
        for _ in range(3):
            yield b"y" * 1000

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        pool = ConnectionPool()
        async with httpx.AsyncClient(transport=pool, timeout=5) as client:
            r = await client.post(url, content=parts())
            assert (r.status_code, r.content) == (413, b"big")
            assert pool.connections == 0  # half a request went out: not reusable
        server.close()

    run(main())
