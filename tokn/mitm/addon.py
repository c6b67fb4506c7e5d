"""tokn's mitmproxy addon: who may use the proxy, where a request really goes,
and the three route modes for intercepted flows.

Only allowlisted hosts reach these hooks decrypted (``allow_hosts``); every
other CONNECT is tunnelled by mitmproxy untouched.  Every decision is taken
from the request *head* (``requestheaders``), before the body is read:

* proxy authentication, per client connection (:mod:`tokn.mitm.access`);
* the real target and the names the client sent for it (:mod:`tokn.mitm.target`);
* the mode: ``passthrough`` forwards as is and only observes (usage recorded);
  ``switch`` replaces the client's credentials with a pooled account's, only
  over TLS and only to that account's own hosts; ``route`` rewrites the flow to
  the in-process listener, whose pipeline picks the account and converts
  formats, so both front doors share one pool.

So large bodies can be streamed (``stream_large_bodies``) without anything
reaching an upstream before it was decided.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.http import _http1, _http2

from tokn import endings, hosts
from tokn.convert import extract_usage, stream_converter
from tokn.drain import InFlight
from tokn.endings import Ending
from tokn.errors import ToknError, anthropic_error, error_body
from tokn.mitm import modes
from tokn.mitm.access import (
    DENIED_HEADERS,
    DENIED_TEXT,
    UNAUTHENTICATED_BODY_LIMIT,
    ProxyAccess,
)
from tokn.mitm.target import Target, check_names, credential_may_go, target_of
from tokn.pipeline import log_request, usage_columns
from tokn.server.app import INTERNAL_HEADER, REJECT_HEADER, REJECT_PATH
from tokn.usage import BodyCapture, capture_body

log = logging.getLogger("tokn.proxy")

HELP_TEXT = """tokn proxy

This is tokn's local HTTP(S) forward proxy. Point clients at it with
    eval "$(tokn proxy env)"
LLM API hosts on the allowlist are intercepted (route / switch / passthrough);
every other host is tunnelled untouched.  See `tokn proxy --help`.
"""

BODYLESS = ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")
STRIP_ALWAYS = ("proxy-authorization", "proxy-connection")
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
OBSERVED = ("chat", "messages", "responses")


@dataclass
class FlowInfo:
    mode: str
    provider: str | None
    fmt: str | None
    account: str | None = None
    started: float = field(default_factory=time.perf_counter)
    ttfb: float | None = None
    converter: Any = None
    model: str | None = None
    stream: bool = False
    bytes_out: int = 0
    capture: Any = None
    flight: InFlight | None = None  # forwarded by mitmproxy itself: drained at shutdown
    observe_error: str | None = None  # why the stream observer gave up


# --- mitmproxy's own error answers --------------------------------------------------
def _json_error_page(status: int, message: str) -> bytes:
    """An error body both the OpenAI and the Anthropic SDKs read as theirs
    (``error.message`` / ``error.type`` / ``error.code`` and ``type: error``)."""
    body = anthropic_error(status, f"tokn proxy: {message}")
    body["error"].update(code="proxy_error", param=None)
    return json.dumps(body).encode()


def _json_error_response(status: int, message: str = "") -> bytes:
    resp = http.Response.make(status, _json_error_page(status, message),
                              {"content-type": "application/json", "connection": "close"})
    return http1.assemble_response(resp)


def use_json_error_pages() -> None:
    """Make mitmproxy answer its own errors (upstream unreachable, connection
    closed, malformed request) with JSON instead of an HTML page, so an API
    client behind the proxy always gets an error it can read.  mitmproxy has no
    hook for this (mitmproxy#4854, PR #7999): replace its two page builders."""
    _http1.make_error_response = _json_error_response
    _http2.format_error = _json_error_page  # HTTP/2: the body (its header says HTML)


def _caller_format(host: str, path: str) -> str:
    return "messages" if "anthropic" in host or path.rstrip("/").endswith("/messages") else "chat"


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


class ToknAddon:
    """Routing for intercepted flows.  Give it a running :class:`~tokn.runtime.Runtime`
    and the listener's URL; ``tokn_standalone`` (below) builds both for stock
    ``mitmdump -s``."""

    def __init__(self, runtime: Any, listener_url: str, *, route_mode: str | None = None,
                 proxy_key: str = "", self_addrs: tuple[tuple[str, int], ...] = ()) -> None:
        use_json_error_pages()
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.listener_url = listener_url
        host_port = listener_url.split("://", 1)[1]
        self.listener_host, _, port = host_port.rpartition(":")
        self.listener_port = int(port)
        self.default_mode = route_mode or self.cfg.proxy_mode.route_mode
        self.access = ProxyAccess(proxy_key)
        self.self_addrs = set(self_addrs)
        self.max_body = int(self.cfg.server.max_body_mb * 1024 * 1024)
        self.cors_origins = {o.rstrip("/").lower() for o in self.cfg.server.cors_origins}
        self.overrides = {hosts.normalize_host(h): v
                          for h, v in self.cfg.proxy_mode.upstream_overrides.items()}
        self.patterns = hosts.intercept_patterns(self.cfg.proxy_mode.intercept_hosts,
                                                 self.cfg.proxy_mode.passthrough_hosts)

    # --- connections ------------------------------------------------------------------
    def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.access.admit(flow.client_conn.id,
                                 flow.request.headers.get("proxy-authorization")):
            flow.response = http.Response.make(407, DENIED_TEXT, DENIED_HEADERS)

    def client_disconnected(self, client: Any) -> None:
        self.access.forget(client.id)

    def server_connect(self, data: Any) -> None:
        address = data.server.address
        if not address:
            return
        override = self.overrides.get(hosts.normalize_host(address[0]))
        if override:
            host, _, port = override.rpartition(":")
            data.server.address = (host or override, int(port) if port else address[1])

    # --- answers that do not come from an upstream -----------------------------------
    def _answer(self, flow: http.HTTPFlow, status: int, body: bytes, headers: dict[str, str],
                buffer_limit: int | None = None) -> None:
        """Answer from the proxy.  When that would mean buffering a body larger
        than ``buffer_limit`` (default ``[server].max_body_mb``) or of unknown
        size, the request is streamed to the listener's reject route instead,
        which answers at once; the rest of the body is discarded."""
        size = declared_body(flow.request)
        limit = self.max_body if buffer_limit is None else buffer_limit
        if size is not None and size <= limit:
            flow.response = http.Response.make(status, body, headers)
            return
        req = flow.request
        req.scheme, req.host, req.port = "http", self.listener_host, self.listener_port
        req.path = REJECT_PATH
        req.headers[INTERNAL_HEADER] = self.runtime.state.internal_secret
        req.headers[REJECT_HEADER] = base64.b64encode(json.dumps(
            {"status": status, "body": body.decode(), "headers": headers}).encode()).decode()
        req.stream = True

    def _error(self, flow: http.HTTPFlow, status: int, message: str,
               code: str | None = None) -> None:
        fmt = _caller_format(flow.request.host, flow.request.path)
        self._answer(flow, status, json.dumps(error_body(fmt, status, message, code)).encode(),
                     {"content-type": "application/json"})

    def _deny(self, flow: http.HTTPFlow) -> None:
        self._answer(flow, 407, DENIED_TEXT, DENIED_HEADERS, UNAUTHENTICATED_BODY_LIMIT)

    # --- requests ----------------------------------------------------------------------
    def _in_tunnel(self, flow: http.HTTPFlow) -> bool:
        """Inside a CONNECT tunnel mitmproxy has preset the server address."""
        return flow.server_conn.address is not None

    def _is_for_proxy_itself(self, flow: http.HTTPFlow) -> bool:
        """A request addressed to this proxy's own port (a plain ``GET /`` or
        ``/-/lan/...`` sent to the proxy as a server), under whatever name."""
        if self._in_tunnel(flow):
            return False
        req = flow.request
        sockname = flow.client_conn.sockname
        own_ports = {p for _, p in self.self_addrs} | ({sockname[1]} if sockname else set())
        return (req.host, req.port) in self.self_addrs or req.port in own_ports

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        req = flow.request
        if self._is_for_proxy_itself(flow):
            self._serve_local(flow)
            return
        if not self.access.admit(flow.client_conn.id, req.headers.get("proxy-authorization")):
            self._deny(flow)
            return
        for name in STRIP_ALWAYS:
            req.headers.pop(name, None)
        target = target_of(req.host, req.port, req.scheme)
        tunnel_sni = flow.client_conn.sni if self._in_tunnel(flow) else None
        problem = check_names(target, scheme=req.scheme, host_headers=req.headers.get_all("host"),
                              authority=req.authority, tunnel_sni=tunnel_sni)
        if problem:
            self._error(flow, 400, f"tokn proxy: {problem}.")
            return
        if not hosts.should_intercept(target.host, self.patterns,
                                      self.cfg.proxy_mode.passthrough_hosts):
            return  # plain-HTTP request to another host: forwarded untouched
        header_mode = req.headers.get(modes.MODE_HEADER)
        for name in list(req.headers):
            if name.lower().startswith("x-tokn-"):
                req.headers.pop(name)
        provider = hosts.provider_for(target.host, req.path)
        try:
            mode = modes.resolve_mode(
                header=header_mode, connect_user=self.access.user(flow.client_conn.id),
                provider=provider, provider_modes=self.cfg.proxy_mode.provider_modes,
                default=self.default_mode)
        except ValueError as exc:
            self._error(flow, 400, str(exc))
            return
        origin = req.headers.get("origin")
        if mode != "passthrough" and origin is not None \
                and origin.rstrip("/").lower() not in self.cors_origins:
            # a web page in a browser that uses this proxy must not spend the pool
            self._error(flow, 403, f"tokn proxy: requests from the web origin {origin!r} may "
                        "not use pooled accounts; add it to [server].cors_origins to allow it.")
            return
        fmt = modes.map_endpoint(req.method, req.path)
        info = FlowInfo(mode=mode, provider=provider, fmt=fmt)
        flow.metadata["tokn"] = info
        if mode == "route":
            self._route(flow, info)
        elif mode == "switch":
            await self._switch(flow, info, target)
        if mode != "route" and flow.response is None:
            self._track(flow, info)

    def request(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get("tokn")
        if info is not None:
            self._note_request(flow, info)

    def _track(self, flow: http.HTTPFlow, info: FlowInfo) -> None:
        """A flow mitmproxy forwards itself is in flight until its response or
        error; if shutdown's drain period ends first, its row says so."""
        drain = self.runtime.state.drain
        info.flight = drain.begin()
        info.flight.on_stop = lambda: self._record(
            flow, endings.shut_down(self.cfg.server.drain_secs))

    def _serve_local(self, flow: http.HTTPFlow) -> None:
        path = flow.request.path.split("?", 1)[0]
        if path in ("/", "/help") and flow.request.method == "GET":
            self._answer(flow, 200, HELP_TEXT.encode(),
                         {"content-type": "text/plain; charset=utf-8"})
            return
        if path.startswith("/-/lan/") and flow.request.method == "GET":
            # LAN bootstrap lives on the listener: hand the plain GET to it,
            # keeping the Host the client used (setting .host rewrites it).
            req = flow.request
            host_header, public_port = req.host_header, req.port
            req.scheme, req.host, req.port = "http", self.listener_host, self.listener_port
            if host_header is not None:
                req.host_header = host_header
            req.headers["x-forwarded-port"] = str(public_port)
            return
        self._answer(flow, 404, b"tokn proxy: not found. Use this port as an HTTP(S) proxy.\n",
                     {"content-type": "text/plain"})

    def _route(self, flow: http.HTTPFlow, info: FlowInfo) -> None:
        req = flow.request
        if info.fmt is None:
            self._error(flow, 501, f"tokn route mode has no endpoint for {req.method} "
                        f"{req.path.split('?', 1)[0]} on {req.host}; use "
                        f"x-tokn-route-mode: passthrough to reach the host directly.")
            return
        req.headers[INTERNAL_HEADER] = self.runtime.state.internal_secret
        req.headers["x-tokn-front-door"] = "proxy"
        req.headers["x-tokn-route-mode"] = "route"
        if flow.client_conn.peername:
            req.headers["x-tokn-client"] = _peer(flow)
        req.scheme, req.host, req.port = "http", self.listener_host, self.listener_port
        req.path = modes.LISTENER_PATHS[info.fmt]

    async def _switch(self, flow: http.HTTPFlow, info: FlowInfo, target: Target) -> None:
        pool = self.runtime.pool
        if info.provider is None:
            self._error(flow, 400, f"switch mode has no provider for {target.host}.")
            return
        if not target.tls:
            self._error(flow, 400, "switch mode sends a pooled credential only over TLS; this "
                        f"request is plain HTTP to {target.host}: use https://.")
            return
        try:
            chosen = pool.switch_account(info.provider, accept=lambda p: credential_may_go(
                target, base_url=p.account.base_url, provider_hosts=type(p).hosts))
            headers = await chosen.switch_headers()
        except ToknError as exc:
            self._error(flow, exc.status, exc.message, exc.code)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client in its format
            pool.mark_failure(chosen.account_id, str(exc))
            self._error(flow, 502, f"account {chosen.account_id} could not supply credentials: "
                        f"{exc}")
            return
        for name in CREDENTIAL_HEADERS:
            flow.request.headers.pop(name, None)
        for name, value in headers.items():
            flow.request.headers[name] = value
        info.account = chosen.account_id

    def _note_request(self, flow: http.HTTPFlow, info: FlowInfo) -> None:
        if info.mode == "route" or info.fmt not in OBSERVED or flow.response is not None \
                or flow.request.raw_content is None:  # streamed: too large to look at
            return
        try:
            body = json.loads(flow.request.content or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if isinstance(body, dict):
            info.model = body.get("model")
            info.stream = bool(body.get("stream"))

    # --- responses -----------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        info: FlowInfo | None = flow.metadata.get("tokn")
        if info is None:
            return
        info.ttfb = time.perf_counter() - info.started
        if "text/event-stream" not in flow.response.headers.get("content-type", ""):
            return  # JSON bodies are small; mitmproxy streams any over stream_large_bodies
        if info.mode != "route" and info.fmt in OBSERVED:
            max_line = int(self.cfg.server.max_sse_line_mb * 1024 * 1024)
            info.converter = stream_converter(info.fmt, info.fmt, max_line=max_line)

            info.capture = BodyCapture(self.cfg)

            def observe(chunk: bytes) -> bytes:
                info.bytes_out += len(chunk)
                info.capture.feed(chunk)
                if info.observe_error is None:
                    try:
                        info.converter.feed(chunk) if chunk else info.converter.close()
                    except ValueError as exc:  # a line over the cap: stop looking, pass on
                        info.observe_error = str(exc)
                return chunk

            flow.response.stream = observe
        else:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow, cut: Ending | None = None) -> None:
        info: FlowInfo | None = flow.metadata.pop("tokn", None)
        store = self.runtime.usage
        if info is not None and info.flight is not None:
            self.runtime.state.drain.end(info.flight)
        if info is None or info.mode == "route" or store is None:
            return  # route flows are recorded by the pipeline
        usage = info.converter.usage if info.converter is not None else None
        served = info.converter.model if info.converter is not None else None
        response = flow.response
        if usage is None and response is not None and response.content \
                and info.fmt in OBSERVED:
            try:
                data = json.loads(response.content)
                usage = extract_usage(info.fmt, data)
                served = data.get("model")
            except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
                usage = None
        ending = cut or self._ending(flow, info)
        if info.account:
            pool = self.runtime.pool
            status = response.status_code if response is not None else 0
            if ending is not None and ending.status in (endings.UPSTREAM_FAILED,
                                                        endings.TIMED_OUT):
                pool.mark_failure(info.account, f"{ending.reason} (switch)")
            elif ending is None and status < 400:
                pool.mark_success(info.account)
            elif status in (401, 403, 429) or status >= 500:
                pool.mark_failure(info.account, f"HTTP {status} (switch)")
        row = {
            "request_id": uuid.uuid4().hex[:16], "front_door": "proxy", "route_mode": info.mode,
            "client": _peer(flow),
            "inbound_format": info.fmt, "upstream_format": info.fmt,
            "provider": info.provider, "account": info.account,
            "model_requested": info.model, "model_served": served,
            "stream": int(info.stream),
            "status": ending.status if ending else response.status_code,
            "error": ending.reason if ending else (
                f"usage not observed: {info.observe_error}" if info.observe_error else None),
            "ttfb_ms": info.ttfb * 1000 if info.ttfb is not None else None,
            "latency_ms": (time.perf_counter() - info.started) * 1000,
            "bytes_out": info.bytes_out or (len(response.raw_content or b"")
                                            if response is not None else 0),
        }
        if usage is not None:
            row.update(usage_columns(usage))
        row["bytes_in"] = len(flow.request.raw_content or b"")
        row["request_body"] = capture_body(self.cfg, flow.request.content or b"")
        if info.capture is not None:
            row["response_body"] = info.capture.text()
        elif response is not None and response.raw_content is not None:
            row["response_body"] = capture_body(self.cfg, response.content or b"")
        log_request(row)
        store.record(row)

    @staticmethod
    def _ending(flow: http.HTTPFlow, info: FlowInfo) -> Ending | None:
        """How a flow mitmproxy forwarded really ended (``None``: as its status says)."""
        if flow.error is not None:
            message = str(flow.error.msg or flow.error)
            if "client disconnected" in message.lower():
                return endings.client_closed()
            if flow.response is None:
                return Ending(endings.UPSTREAM_FAILED, f"upstream connection failed: {message}")
            return Ending(endings.UPSTREAM_FAILED, f"upstream stream broke: {message}")
        conv = info.converter
        if conv is None or info.observe_error is not None or flow.response is None \
                or flow.response.status_code >= 400:
            return None  # (a stream tokn stopped observing went through unchanged)
        if conv.invalid is not None:
            return endings.invalid_event(conv.invalid)
        if conv.upstream_error is not None:
            return endings.upstream_error(conv.upstream_error)
        if not conv.ended:
            return endings.upstream_cut()
        return None


def _peer(flow: http.HTTPFlow) -> str:
    client = flow.client_conn.peername
    return f"{client[0]}:{client[1]}" if client else ""
