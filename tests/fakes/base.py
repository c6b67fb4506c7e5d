"""Loopback HTTP(S) server base for the fake upstreams used in tests.

A :class:`FakeServer` runs a ``ThreadingHTTPServer`` on ``127.0.0.1:0`` in a
daemon thread, speaks HTTP/1.1 with keep-alive (``Content-Length`` on plain
answers, chunked transfer encoding on streams), captures every request and
lets a test inject failures at run time.  Subclasses implement
:meth:`FakeServer.route`.

Usage::

    with FakeLLM() as fake:              # any subclass
        httpx.post(fake.url + "/chat/completions", json=...)
        req = fake.requests[-1]
        req.headers["x-initiator"], req.json["model"]
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["CapturedRequest", "Exchange", "FakeServer", "Headers", "StreamDropped"]


class Headers:
    """Case-insensitive, order-keeping, multi-valued header view."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]

    def __getitem__(self, name: str) -> str:
        low = name.lower()
        for k, v in self._pairs:
            if k.lower() == low:
                return v
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self._pairs if k.lower() == low]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for k, _ in self._pairs:
            seen.setdefault(k.lower(), None)
        return list(seen)

    def items(self) -> list[tuple[str, str]]:
        """All (name, value) pairs as received (original case, duplicates kept)."""
        return list(self._pairs)

    def to_dict(self) -> dict[str, str]:
        """Lower-cased names -> first value."""
        out: dict[str, str] = {}
        for k, v in self._pairs:
            out.setdefault(k.lower(), v)
        return out

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass
class CapturedRequest:
    """One request as the fake saw it."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]  # parse_qs of the query string
    raw_query: str
    headers: Headers
    body: bytes
    json: Any  # parsed JSON body, or None
    time: float  # time.monotonic() when the body was read
    wall_time: float  # time.time() likewise
    client: tuple[str, int]
    meta: dict[str, Any] = field(default_factory=dict)  # facts the fake noted (api, model...)

    @property
    def target(self) -> str:
        return self.path + ("?" + self.raw_query if self.raw_query else "")

    @property
    def form(self) -> dict[str, str]:
        """urlencoded body as a flat dict (first value per key); {} if not a form."""
        ctype = self.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" not in ctype:
            return {}
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}

    def params(self) -> dict[str, Any]:
        """Query params, then form fields, then JSON object fields (later wins)."""
        out: dict[str, Any] = {k: v[0] for k, v in self.query.items()}
        out.update(self.form)
        if isinstance(self.json, dict):
            out.update(self.json)
        return out

    def bearer(self) -> str | None:
        """The credential: ``Authorization: Bearer X`` / ``token X``, else ``x-api-key``."""
        auth = self.headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() in ("bearer", "token") and value:
                return value.strip()
            return auth.strip()
        key = self.headers.get("x-api-key")
        return key.strip() if key else None


class StreamDropped(Exception):
    """Raised inside a route when the client went away mid-stream."""


class Exchange:
    """The response side of one request, handed to :meth:`FakeServer.route`."""

    def __init__(self, server: FakeServer, handler: _Handler, req: CapturedRequest) -> None:
        self.server = server
        self.handler = handler
        self.req = req
        self.headers_sent = False
        self.streaming = False
        self.finished = False
        self.dropped = False
        self.status: int | None = None

    # -- plain answers ----------------------------------------------------
    def send(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode()
        h = self.handler
        self._status_line(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        self._extra_headers(headers)
        h.end_headers()
        self.headers_sent = True
        if self.req.method != "HEAD" and body:
            h.wfile.write(body)
        self.finished = True

    def send_json(
        self,
        status: int,
        obj: Any,
        headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json", headers)

    # -- streams ----------------------------------------------------------
    def start_stream(
        self,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        h = self.handler
        self._status_line(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        self._extra_headers(headers)
        h.end_headers()
        self.headers_sent = True
        self.streaming = True

    def write(self, data: bytes | str) -> None:
        """Write one chunk and put it on the wire now (TCP_NODELAY, unbuffered)."""
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return
        try:
            self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except (OSError, ValueError) as exc:
            self.dropped = True
            raise StreamDropped(str(exc)) from exc

    def sse(self, data: Any, event: str | None = None) -> None:
        """Write one server-sent event (``data`` dict/list -> JSON)."""
        text = data if isinstance(data, str) else json.dumps(data)
        msg = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        self.write(msg)

    def end_stream(self) -> None:
        try:
            self.handler.wfile.write(b"0\r\n\r\n")
        except (OSError, ValueError) as exc:
            self.dropped = True
            raise StreamDropped(str(exc)) from exc
        self.finished = True

    def drop(self, rst: bool = False) -> None:
        """Close the connection now, mid-answer (FIN; ``rst=True`` for a reset)."""
        self.dropped = True
        self.finished = True
        self.handler.close_connection = True
        conn = self.handler.connection
        with contextlib.suppress(OSError):
            if rst:
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            else:
                conn.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            conn.close()

    # -- helpers ----------------------------------------------------------
    def _status_line(self, status: int) -> None:
        self.status = status
        self.handler.send_response(status)

    def _extra_headers(self, headers: dict[str, str] | Iterable[tuple[str, str]] | None) -> None:
        if not headers:
            return
        pairs = headers.items() if isinstance(headers, dict) else headers
        for k, v in pairs:
            self.handler.send_header(k, str(v))


@dataclass
class _Failure:
    status: int
    body: Any
    retry_after: float | int | str | None
    endpoint: str | None
    headers: dict[str, str] | None
    content_type: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "tokn-fake/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections go away eventually

    server: _HTTPServer

    def setup(self) -> None:
        fake = self.server.fake
        if fake.ssl_context is not None:
            # handshake in this connection's thread, not in the accept loop
            self.request = fake.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()
        fake._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        self.server.fake._track(self.connection, False)
        if isinstance(self.connection, ssl.SSLSocket):
            # socketserver closes the raw socket it accepted, not our TLS wrapper
            with contextlib.suppress(OSError):
                self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _any(self) -> None:
        self.server.fake._dispatch(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 resets bursts of concurrent connects
    block_on_close = False
    allow_reuse_address = True
    fake: FakeServer

    def server_activate(self) -> None:
        super().server_activate()
        # serve_forever accepts once select() says a connection waits; if that one
        # is gone by then (reset in the queue), a blocking accept() waits for the
        # next connection, and shutdown() with it, for ever: bounded instead
        self.socket.settimeout(1.0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, OSError, ValueError)):
            return
        self.fake.handler_errors.append(exc)
        traceback.print_exc()


class FakeServer:
    """Base fake upstream: a threaded loopback HTTP(S) server.

    Args:
        ssl_context: serve HTTPS with this server-side context (a cert for e.g.
            ``api.openai.com`` signed by a test CA); ``None`` = plain HTTP.
        host: bind address (loopback by default).
        port: 0 = pick a free port.

    Attributes (all thread-safe to read from tests):
        url, port, host, scheme
        requests: snapshot list of :class:`CapturedRequest` (oldest first)
        request_count: Counter path -> number of requests (query excluded)
        handler_errors: exceptions raised by route code (bugs in the fake)
        mode: None, or "slow" (wait ``slow_delay`` s before answering);
            subclasses add more modes.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.ssl_context = ssl_context
        self.host = host
        self._bind_port = port
        self._lock = threading.RLock()
        self._requests: list[CapturedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._conns: set[Any] = set()
        self._cond = threading.Condition(self._lock)
        self.request_count: Counter[str] = Counter()
        self.handler_errors: list[BaseException] = []
        self.mode: str | None = None
        self.slow_delay: float = 1.0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> FakeServer:
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = _HTTPServer((self.host, self._bind_port), _Handler)
            httpd.fake = self
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}:{httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
            conns = list(self._conns)
            self._conns.clear()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        self.start()
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (no trailing slash)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    # -- captured traffic -------------------------------------------------
    @property
    def requests(self) -> list[CapturedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> CapturedRequest | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    def requests_to(self, path_suffix: str, method: str | None = None) -> list[CapturedRequest]:
        """Captured requests whose path ends with ``path_suffix`` (and method, if given)."""
        return [
            r
            for r in self.requests
            if r.path.endswith(path_suffix) and (method is None or r.method == method.upper())
        ]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[CapturedRequest]:
        """Block until at least ``n`` requests were captured; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {n} requests after {timeout}s")
                self._cond.wait(left)
            return list(self._requests)

    def reset(self) -> None:
        """Forget captured requests, counters, pending failures and the mode."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self.request_count.clear()
            self.handler_errors.clear()
            self.mode = None

    # -- failure injection ------------------------------------------------
    def fail_next(
        self,
        status: int,
        count: int = 1,
        body: Any = None,
        retry_after: float | int | str | None = None,
        *,
        endpoint: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``.

        ``body``: None = the API-shaped error JSON for that status and path;
        a dict/list = sent as JSON; str/bytes = sent raw (``content_type``,
        default text/html if it starts with ``<`` else text/plain).
        ``retry_after``: adds a ``Retry-After`` header.
        ``endpoint``: only requests whose path ends with it; None = every
        request except ``GET .../models`` (so model listing keeps working).
        """
        with self._lock:
            for _ in range(count):
                self._failures.append(
                    _Failure(status, body, retry_after, endpoint, headers, content_type)
                )

    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    def _take_failure(self, req: CapturedRequest) -> _Failure | None:
        with self._lock:
            for i, f in enumerate(self._failures):
                if f.endpoint is None:
                    if req.method == "GET" and req.path.endswith("/models"):
                        continue
                elif not req.path.endswith(f.endpoint):
                    continue
                del self._failures[i]
                return f
        return None

    def _send_failure(self, ex: Exchange, f: _Failure) -> None:
        headers = dict(f.headers or {})
        if f.retry_after is not None:
            headers["Retry-After"] = str(f.retry_after)
        body = f.body
        if body is None:
            payload, extra = self.error_payload(f.status, None, ex.req)
            headers = {**extra, **headers}
            ex.send_json(f.status, payload, headers)
        elif isinstance(body, (dict, list)):
            ex.send_json(f.status, body, headers)
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            ctype = f.content_type or (
                "text/html; charset=utf-8"
                if raw.lstrip().startswith(b"<")
                else "text/plain; charset=utf-8"
            )
            ex.send(f.status, raw, ctype, headers)

    # -- subclass hooks ---------------------------------------------------
    def route(self, ex: Exchange) -> bool:
        """Handle ``ex.req``; return False if no route matched (-> 404)."""
        return False

    def error_payload(
        self, status: int, message: str | None, req: CapturedRequest
    ) -> tuple[Any, dict[str, str]]:
        """(JSON body, extra headers) of an error answer for this request."""
        return {"error": {"message": message or f"HTTP {status}", "code": status}}, {}

    # -- internals --------------------------------------------------------
    def _track(self, conn: Any, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _read_body(self, h: _Handler) -> bytes:
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = h.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(h.rfile.read(size))
                h.rfile.readline(65537)
            return b"".join(parts)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _dispatch(self, h: _Handler) -> None:
        body = self._read_body(h)
        parts = urlsplit(h.path)
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                parsed = json.loads(body)
        req = CapturedRequest(
            method=h.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            raw_query=parts.query,
            headers=Headers(h.headers.items()),
            body=body,
            json=parsed,
            time=time.monotonic(),
            wall_time=time.time(),
            client=tuple(h.client_address[:2]),  # type: ignore[arg-type]
        )
        with self._cond:
            self._requests.append(req)
            self.request_count[req.path] += 1
            self._cond.notify_all()
        ex = Exchange(self, h, req)
        try:
            if self.mode == "slow" and self.slow_delay > 0:
                time.sleep(self.slow_delay)
            failure = self._take_failure(req)
            if failure is not None:
                self._send_failure(ex, failure)
            elif not self.route(ex):
                payload, extra = self.error_payload(
                    404, f"no route for {req.method} {req.path}", req
                )
                ex.send_json(404, payload, extra)
        except StreamDropped:
            h.close_connection = True
        except (ConnectionError, ssl.SSLError, BrokenPipeError):
            h.close_connection = True
        except Exception as exc:  # a bug in the fake: report it loudly
            self.handler_errors.append(exc)
            traceback.print_exc()
            if not ex.headers_sent:
                with contextlib.suppress(Exception):
                    ex.send_json(500, {"error": {"message": f"fake crashed: {exc!r}"}})
            else:
                h.close_connection = True
        finally:
            if ex.streaming and not ex.finished:
                h.close_connection = True


def run_in_thread(fn: Callable[[], Any]) -> threading.Thread:
    """Small helper for tests: start ``fn`` in a daemon thread."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t
