"""The OpenAI- and Anthropic-compatible listener (Starlette ASGI app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tokn import hop, wire
from tokn.drain import Drain, InFlight
from tokn.errors import ToknError
from tokn.identity import RESERVED, Identity, key_matches, presented_key
from tokn.keys import KeyRing
from tokn.limits import Limiter, LocalCounters, Refusal, model_allowed
from tokn.pipeline import SERVED_HEADERS, Inbound, Pipeline, Reply, error_reply
from tokn.server.httpguard import FrontGuard, Policy, read_json_object
from tokn.server.responses_ws import front_labels, request_headers, serve_socket

# The API endpoints are the wire table's (tokn.wire): each at its listener
# paths (un-prefixed forms are what Copilot-style clients send).
log = logging.getLogger("tokn")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class AppState:
    pipeline: Pipeline
    api_key: str = ""
    internal_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    extra_routes: list[Route] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    drain: Drain = field(default_factory=Drain)
    keys: KeyRing = field(default_factory=lambda: KeyRing(None))  # people's keys (team mode)
    limiter: Limiter = field(default_factory=lambda: Limiter(LocalCounters()))

    def is_internal(self, headers: Mapping[str, str]) -> bool:
        """Whether a request carries the proxy's secret (its route-mode hop)."""
        value = headers.get(hop.INTERNAL)
        return bool(value) and key_matches(self.internal_secret, value)

    def identity(self, headers: Mapping[str, str],
                 query: Mapping[str, str] | None = None) -> Identity | None:
        """Who is calling (``None``: refused): the proxy's hop says whom it
        admitted (a person's key is looked up again: revoked since, refused);
        anyone else presents the admin key or a person's key (Google clients
        may send it as ``?key=`` in ``query``)."""
        if self.is_internal(headers):
            name = headers.get(hop.IDENTITY) or "proxy"
            if name in RESERVED:
                return Identity(name, admin=True)
            return self.keys.by_name(name)
        return self.keys.identify(self.api_key, presented_key(headers, query))


FLIGHT = "tokn.flight"  # the scope key of a request's InFlight


class TrackRequests:
    """ASGI middleware: every HTTP request is in flight (for the drain at
    shutdown) from its start until its response, streamed or not, is over."""

    def __init__(self, app: Any, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.drain.track() as flight:
            scope[FLIGHT] = flight
            try:
                await self.app(scope, receive, send)
            finally:
                await flight.end()


async def _disconnected(request: Request) -> None:
    """Return when the client hangs up (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Any) -> Any:
    """Await ``work``; cancel it if the client hangs up first (then ``None``)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


def to_response(reply: Reply) -> Response:
    if reply.stream is not None:
        return StreamingResponse(reply.stream, status_code=reply.status, headers=reply.headers,
                                 media_type=reply.media_type)
    headers = dict(reply.headers)
    media = headers.pop("content-type", reply.media_type)
    return Response(reply.body, status_code=reply.status, headers=headers, media_type=media)


def error_response(request: Request, status: int, message: str,
                   code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """An error in the caller's own API format (:func:`tokn.wire.caller_api`)."""
    api = wire.caller_api(request.url.path, headers=request.headers)
    return JSONResponse(api.error(status, message, code), status, headers=headers)


def refusal_response(request: Request, refusal: Refusal) -> Response:
    """A limit's refusal in the caller's format, with ``Retry-After`` when it has one."""
    headers = None
    if refusal.retry_after is not None:
        headers = {"retry-after": str(max(int(refusal.retry_after + 0.999), 1))}
    return error_response(request, refusal.status, refusal.message, refusal.code, headers)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else ""


def is_authorized(state: AppState, request: Request) -> bool:
    """The proxy's internal secret, or the API key when one is set (constant time)."""
    return state.identity(request.headers) is not None


def admin_only(request: Request) -> Response:
    """403 for a person's key on what only the admin key may do."""
    return error_response(request, 403, f"{request.method} {request.url.path} needs the admin "
                          "key ([server].api_key); a person's key may call the model APIs "
                          "only.", "admin_only")


def denied(request: Request) -> Response:
    """401 in the caller's format, saying how to authenticate."""
    return error_response(request, 401,
                          "Invalid or missing API key: send it as `Authorization: Bearer KEY`, "
                          "`x-api-key: KEY` or `x-goog-api-key: KEY` (the key is "
                          "[server].api_key / --api-key).")


def create_app(state: AppState) -> Starlette:
    def api(endpoint: wire.Endpoint) -> Any:
        async def handle(request: Request) -> Response:
            # Google's clients may put the key in the URL; nobody else may
            identity = state.identity(request.headers, request.query_params
                                      if endpoint.api is wire.GEMINI else None)
            if identity is None:
                # logged, not recorded: the usage log holds what the key's holders asked
                whose = state.keys.describe(presented_key(request.headers))
                log.warning("listener: refused %s %s from %s: 401 no valid API key%s",
                            request.method, request.url.path, _peer(request),
                            f" ({whose})" if whose else "")
                return denied(request)
            headers = {k.lower(): v for k, v in request.headers.items()
                       if k.lower() not in hop.LABELS}
            # labels from the proxy are trusted only with the proxy's own secret
            internal = state.is_internal(request.headers)

            def inbound(body: dict[str, Any], size: int | None) -> Inbound:
                return Inbound(
                    fmt=endpoint.fmt, body=body, headers=headers, size=size,
                    front_door=request.headers.get(hop.FRONT_DOOR, "listener") if internal
                    else "listener",
                    route_mode=request.headers.get(hop.ROUTE_MODE, "route") if internal
                    else "route",
                    client=(request.headers.get(hop.CLIENT) if internal else None)
                    or _peer(request),
                    params=request.path_params, identity=identity,
                    flight=request.scope[FLIGHT])

            try:
                body, size = await read_json_object(request, state.policy.max_body)
            except ToknError as exc:
                state.pipeline.reject(inbound({}, None), exc.status, exc.message)
                return error_response(request, exc.status, exc.message)
            # Gemini's streamGenerateContent without ?alt=sse answers one JSON array
            as_array = endpoint is wire.GEMINI_STREAM and request.query_params.get("alt") != "sse"
            shape = wire.GEMINI_GENERATE if as_array else endpoint
            request_in = inbound(shape.body_of(body, request.path_params), size)
            model = request_in.body.get("model")
            refusal = await state.limiter.admit(identity,
                                                model if isinstance(model, str) else None)
            if refusal is not None:
                state.pipeline.reject(request_in, refusal.status, refusal.message)
                return refusal_response(request, refusal)
            try:
                reply = await until_disconnect(request, state.pipeline.handle(request_in))
                if reply is None:  # the client is gone; the pipeline recorded a 499
                    return Response(status_code=499)
                if as_array and reply.status == 200 and reply.stream is None:
                    reply.body = b"[" + reply.body + b"]"
                return to_response(reply)
            except Exception as exc:  # noqa: BLE001 - last resort: the caller's format
                log.exception("unexpected error on %s", request.url.path)
                message = (f"tokn hit an unexpected error ({type(exc).__name__}: {exc}); "
                           "see the log and please report it.")
                state.pipeline.reject(request_in, 500, message)
                return error_response(request, 500, message)

        return handle

    def socket(endpoint: wire.Endpoint) -> Any:
        async def handle(ws: WebSocket) -> None:
            identity = state.identity(ws.headers)
            peer = f"{ws.client.host}:{ws.client.port}" if ws.client else ""
            if identity is None:
                log.warning("listener: refused a WebSocket to %s from %s: 401 no valid API key",
                            ws.url.path, peer)
                await ws.send_denial_response(JSONResponse(wire.OPENAI.error(
                    401, "Invalid or missing API key: send it as `Authorization: Bearer KEY`.",
                    None), 401))
                return
            internal = state.is_internal(ws.headers)
            front_door, route_mode, client = front_labels(ws, internal)
            headers = request_headers(ws.headers.items(), hop.LABELS)

            def inbound(body: dict[str, Any], size: int, flight: InFlight) -> Inbound:
                return Inbound(fmt=endpoint.fmt, body=body, headers=headers, size=size,
                               front_door=front_door, route_mode=route_mode,
                               client=client or peer, params=ws.path_params, identity=identity,
                               flight=flight)

            @contextlib.asynccontextmanager
            async def in_flight() -> AsyncIterator[InFlight]:
                with state.drain.track() as flight:
                    try:
                        yield flight
                    finally:
                        await flight.end()

            async def run(request_in: Inbound) -> Reply:
                # a person's key: still valid (the socket may outlive a revocation),
                # within its limits and model globs, as over HTTP
                if not identity.admin and state.keys.current(identity) is None:
                    message = f"key {identity.name!r} is no longer valid (revoked, rotated " \
                              "or expired)."
                    state.pipeline.reject(request_in, 401, message)
                    return error_reply(wire.OPENAI, 401, message)
                model = request_in.body.get("model")
                refusal = await state.limiter.admit(identity,
                                                    model if isinstance(model, str) else None)
                if refusal is not None:
                    state.pipeline.reject(request_in, refusal.status, refusal.message)
                    return error_reply(wire.OPENAI, refusal.status, refusal.message,
                                       refusal.code, refusal.retry_after)
                try:
                    return await state.pipeline.handle(request_in)
                except Exception as exc:  # noqa: BLE001 - last resort: an error message
                    log.exception("unexpected error on a WebSocket to %s", ws.url.path)
                    message = (f"tokn hit an unexpected error ({type(exc).__name__}: {exc}); "
                               "see the log and please report it.")
                    state.pipeline.reject(request_in, 500, message)
                    return error_reply(wire.OPENAI, 500, message)

            log.info("listener: WebSocket %s from %s (%s, %s)", ws.url.path, client or peer,
                     front_door, route_mode)
            await ws.accept()
            await serve_socket(ws, run, inbound, in_flight)

        return handle

    async def models(request: Request) -> Response:
        caller = wire.caller_api(request.url.path, headers=request.headers)
        identity = state.identity(request.headers, request.query_params
                                  if caller is wire.GEMINI else None)
        if identity is None:
            return denied(request)
        try:
            listing = [m for m in await state.pipeline.models()
                       if model_allowed(m["id"], identity.models)]
            return JSONResponse(caller.listing(listing))
        except ToknError as exc:  # no model listed, and accounts failing: say why
            return error_response(request, exc.status, exc.message, exc.code)

    async def one_model(request: Request) -> Response:
        """Google's ``models.get``; a GET on a method path (``{model}:generateContent``)
        is the wrong method, not an unknown model."""
        name = request.path_params["model"]
        if ":" in name:
            return await bad_method(request, ToknError("method not allowed", status=405))
        identity = state.identity(request.headers, request.query_params)
        if identity is None:
            return denied(request)
        try:
            served = await state.pipeline.models()
        except ToknError as exc:
            return error_response(request, exc.status, exc.message, exc.code)
        found = [m for m in served if m["id"] == name.removeprefix("models/")
                 and model_allowed(m["id"], identity.models)]
        if not found:
            return error_response(request, 404, f"model {name!r} is not served here; "
                                  "see GET /v1beta/models.")
        return JSONResponse(wire.GEMINI.listing(found)["models"][0])

    async def healthz(request: Request) -> Response:
        pool = state.pipeline.pool
        return JSONResponse({"status": "ok", "accounts": len(pool.providers)})

    async def reject(request: Request) -> Response:
        """The proxy's answer for a request it would not buffer (see REJECT_PATH)."""
        if not state.is_internal(request.headers):
            return await not_found(request, ToknError("not found", status=404))
        try:
            status, body, headers = hop.decode_rejection(request.headers.get(hop.REJECT, ""))
        except ValueError:
            return error_response(request, 500, "tokn proxy: malformed internal rejection.")
        # no `connection: close`: uvicorn then reads and discards the rest of the
        # body, where closing with unread input would reset the connection and
        # could destroy this answer before the proxy reads it
        return Response(body, status, headers=headers)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(request, 404,
                              f"Unknown endpoint {request.method} {request.url.path}. "
                              "See GET /v1/models and the README for what tokn serves.")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error_response(request, 405, f"{request.method} is not allowed on "
                              f"{request.url.path}.")

    def handler(ep: wire.Endpoint) -> Any:
        if ep is wire.GEMINI_MODEL:
            return one_model
        return models if ep.method == "GET" else api(ep)

    routes = [Route(path, handler(ep), methods=[ep.method])
              for ep in wire.ENDPOINTS for path in ep.routes]
    routes += [WebSocketRoute(path, socket(ep)) for ep in wire.ENDPOINTS if ep.websocket
               for path in ep.routes]
    routes += [Route("/healthz", healthz), Route(hop.REJECT_PATH, reject, methods=ALL_METHODS),
               *state.extra_routes]
    middleware = [
        Middleware(TrackRequests, drain=state.drain),
        Middleware(FrontGuard, key_set=lambda: bool(state.api_key), internal=state.is_internal,
                   policy=state.policy),
        Middleware(CORSMiddleware, allow_origins=list(state.policy.cors_origins),
                   allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"],
                   expose_headers=["retry-after", *SERVED_HEADERS], max_age=600),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={404: not_found, 405: bad_method})
    app.state.tokn = state
    return app
