"""Route mode's hop without a socket: the listener's ASGI app called in process.

A routed flow (:meth:`tokn.mitm.router.Router._route`) whose body the proxy
holds and that cannot be answered with a stream (:func:`suits`) is handed to
the listener's app directly from the ``request`` hook: no loopback connection,
no second HTTP serialisation and parse, no uvicorn.  The app sees the same
request the socket hop would carry (the labels of :mod:`tokn.hop`, the
proxy's secret), so authentication, limits, usage rows, errors in the
client's format and the shutdown drain are the listener's own.  When the
client hangs up first, the app's ``receive`` says so (``http.disconnect``),
which cancels the pipeline's work as over a socket (its row: 499).

mitmproxy sends an addon's response whole, so the answer is buffered here:
requests that may be answered with a stream (``"stream": true`` in the body,
or a streaming endpoint such as Gemini's ``streamGenerateContent``) and bodies
the proxy streams keep the loopback hop, which streams both ways.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote

from mitmproxy import http

from tokn import wire

log = logging.getLogger("tokn")

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

# a JSON body that may ask for a stream: a "stream" key whose value is not
# false, null or 0 (the pipeline streams when it is truthy).  A nested match, or
# one inside a string, only costs the socket hop; a real one is never missed,
# since a key is written with unescaped quotes.
_STREAM = re.compile(rb'"stream"\s*:(?!\s*(?:false|null|0)\s*[,}])')
# response headers the buffered answer frames itself
_FRAMING = (b"content-length", b"transfer-encoding", b"connection", b"keep-alive")


def suits(req: http.Request, endpoint: wire.Endpoint, params: Mapping[str, str]) -> bool:
    """Whether ``req`` (its body already read by mitmproxy) can be answered in
    process: an identity-encoded body that asks for no stream, on an endpoint
    that does not stream by its path, and not an upgrade."""
    body = req.raw_content
    if body is None or "upgrade" in req.headers:
        return False
    if req.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return False
    if endpoint.body_of({}, params).get("stream"):
        return False
    return _STREAM.search(body) is None


def scope_of(req: http.Request, listener: tuple[str, int]) -> dict[str, Any]:
    """The ASGI scope uvicorn would give the app for ``req`` sent to ``listener``."""
    raw_path, _, query = req.path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1", "surrogateescape"),
        "query_string": query.encode("latin-1", "surrogateescape"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in req.headers.fields],
        "client": ("127.0.0.1", 0),
        "server": listener,
        "state": {},
    }


async def call(app: ASGIApp, req: http.Request, listener: tuple[str, int],
               disconnected: asyncio.Event) -> http.Response:
    """``req`` answered by ``app``, the answer buffered; ``disconnected`` is set
    when the client hangs up (the app then sees ``http.disconnect``)."""
    body = req.raw_content or b""
    delivered = False
    start: dict[str, Any] | None = None
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            if message.get("more_body") and disconnected.is_set():
                raise OSError("the client disconnected")  # a stream: stop it
            chunks.append(message.get("body", b""))

    try:
        await app(scope_of(req, listener), receive, send)
    except Exception:  # noqa: BLE001 - reported below in the client's format
        if not disconnected.is_set():
            log.exception("proxy: the listener failed on %s", req.path.split("?", 1)[0])
        start = None  # cut short, or Starlette's plain-text 500: no answer to pass on
    if start is None:
        api = wire.caller_api(req.path, headers=req.headers)
        message = "tokn hit an unexpected error in route mode; see the log and please report it."
        return http.Response.make(500, json.dumps(api.error(500, message, None)).encode(),
                                  {"content-type": "application/json"})
    headers = http.Headers([(name, value) for name, value in start.get("headers", ())
                            if name.lower() not in _FRAMING])
    return http.Response.make(start["status"], b"".join(chunks), headers)
