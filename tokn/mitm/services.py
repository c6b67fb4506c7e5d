"""What tokn's proxy addons use of the running tokn, and what they share about
a flow.

:class:`ProxyServices` holds the live objects and secrets (settings a user may
set are mitmproxy options, each declared by the addon that reads it in its
``load()``).  Settings from the config file are read through
``services.config()`` at the time of each request, never cached at
construction.  The in-process runner and ``mitmdump -s`` build the same
services and the same addon list (:func:`tokn.mitm.addons.proxy_addons`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from tokn import hop
from tokn.config import Config
from tokn.connlimits import ConnectionCaps
from tokn.drain import Drain, InFlight
from tokn.keys import KeyRing
from tokn.limits import Limiter
from tokn.mitm.inprocess import ASGIApp
from tokn.pool import Pool
from tokn.providers import Provider
from tokn.recorder import Attempt, Recorder
from tokn.wire import Api

BODYLESS = ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")

# flow.metadata keys
INFO = "tokn"  # FlowInfo of an intercepted flow the router decided on
HANDLED = "tokn.handled"  # an addon took care of the flow: the ones after leave it alone
IDENTITY = "tokn.identity"  # the Identity proxy authentication admitted
PROXY_USER = "tokn.proxy_user"  # the route mode the connection's proxy username names
FALLBACK = "tokn.fallback"  # Fallback: forwarded as sent unless the host cannot be asked


@dataclass
class ProxyServices:
    config: Callable[[], Config]  # the config in force
    pool: Pool
    recorder: Recorder
    drain: Drain
    internal_secret: str  # the route-mode hop's (tokn.hop)
    api_key: str  # clients' Proxy-Authorization password ("" = none needed)
    keys: KeyRing  # people's keys (team mode): Basic user = key name, password = key
    limiter: Limiter  # their limits (route flows: the listener applies them)
    listener: tuple[str, int]  # the internal listener route mode hands flows to
    caps: ConnectionCaps  # connections from beyond loopback
    # the listener's ASGI app, called in process for route flows that need no
    # stream (tokn.mitm.inprocess); None: every route flow goes over the socket
    app: ASGIApp | None = None


@dataclass
class FlowInfo:
    """The router's decision for a flow, and what the usage observer gathers."""

    mode: str
    fmt: str | None
    attempt: Attempt | None = None  # the row; None: the pipeline records it (route)
    provider: Provider | None = None  # switch: the account whose credentials went
    converter: Any = None  # watches an event stream (usage, how it ended)
    capture: Any = None
    bytes_out: int = 0
    observe_error: str | None = None  # why the stream observer gave up
    flight: InFlight | None = None  # forwarded by mitmproxy itself: drained at shutdown


@dataclass(frozen=True)
class Fallback:
    """A flow mitmproxy forwards as the client sent it, and the answer to give
    at once instead when that cannot work (:mod:`tokn.mitm.fallback`)."""

    label: str  # for the log line: what the request is
    status: int
    body: Callable[[str], bytes]  # why the host was not asked -> the JSON body
    needs_credentials: bool  # answer at once when the client sent none
    replace_5xx: bool  # a 5xx from the host becomes this answer too


def handled(flow: http.HTTPFlow) -> bool:
    """Whether an addon already answered or took the flow."""
    return flow.response is not None or bool(flow.metadata.get(HANDLED))


def declared_body(req: http.Request) -> int | None:
    """The request body's size as its head declares it; ``None`` when unknown
    (chunked, or HTTP/2 without content-length on a method that has a body)."""
    if "transfer-encoding" in req.headers:
        return None
    length = req.headers.get("content-length")
    if length is not None:
        return int(length) if length.strip().isdigit() else None
    if req.is_http2 and req.method.upper() not in BODYLESS:
        return None
    return 0


def answer(flow: http.HTTPFlow, services: ProxyServices, status: int, body: bytes,
           headers: dict[str, str], buffer_limit: int | None = None) -> None:
    """Answer from the proxy.  When that would mean buffering a body larger
    than ``buffer_limit`` (default ``[server].max_body_mb``) or of unknown
    size, the request is streamed to the listener's reject route instead,
    which answers at once; the rest of the body is discarded."""
    flow.metadata[HANDLED] = True
    size = declared_body(flow.request)
    limit = buffer_limit if buffer_limit is not None \
        else int(services.config().server.max_body_mb * 1024 * 1024)
    if size is not None and size <= limit:
        flow.response = http.Response.make(status, body, headers)
        return
    req = flow.request
    req.scheme, (req.host, req.port) = "http", services.listener
    req.path = hop.REJECT_PATH
    req.headers[hop.INTERNAL] = services.internal_secret
    req.headers[hop.REJECT] = hop.encode_rejection(status, body, headers)
    req.stream = True


def answer_error(flow: http.HTTPFlow, services: ProxyServices, api: Api, status: int,
                 message: str, code: str | None = None) -> None:
    """Answer with an error in the caller's API format."""
    answer(flow, services, status, json.dumps(api.error(status, message, code)).encode(),
           {"content-type": "application/json"})


def peer(flow: http.HTTPFlow) -> str:
    client = flow.client_conn.peername
    return f"{client[0]}:{client[1]}" if client else ""


def in_tunnel(flow: http.HTTPFlow) -> bool:
    """Inside a CONNECT tunnel mitmproxy has preset the server address."""
    return flow.server_conn.address is not None
