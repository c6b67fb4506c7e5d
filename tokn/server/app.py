"""The OpenAI- and Anthropic-compatible listener (Starlette ASGI app)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tokn.drain import Drain
from tokn.errors import ToknError, error_body
from tokn.pipeline import Inbound, Pipeline, Reply
from tokn.server.auth import key_matches, presented_key
from tokn.server.httpguard import FrontGuard, Policy, read_json_object

# POST paths -> inbound format.  Un-prefixed forms are what Copilot-style
# clients (and the proxy's route mode for api.githubcopilot.com) send.
POST_ROUTES: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/responses": "responses",
    "/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
}
log = logging.getLogger("tokn")
INTERNAL_HEADER = "x-tokn-internal"
TOKN_HEADERS = ("x-tokn-internal", "x-tokn-front-door", "x-tokn-route-mode", "x-tokn-client")
# The proxy's answers for requests whose body it must not buffer: streamed here,
# answered at once from the (base64 JSON) description in REJECT_HEADER.
REJECT_PATH = "/-/tokn/reject"
REJECT_HEADER = "x-tokn-reject"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class AppState:
    pipeline: Pipeline
    api_key: str = ""
    internal_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    extra_routes: list[Route] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    drain: Drain = field(default_factory=Drain)

    def is_internal(self, headers: Mapping[str, str]) -> bool:
        """Whether a request carries the proxy's secret (its route-mode hop)."""
        value = headers.get(INTERNAL_HEADER)
        return bool(value) and key_matches(self.internal_secret, value)


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


def _err_fmt(path: str) -> str:
    return "messages" if path.startswith("/v1/messages") else "chat"


def to_response(reply: Reply) -> Response:
    if reply.stream is not None:
        return StreamingResponse(reply.stream, status_code=reply.status, headers=reply.headers,
                                 media_type=reply.media_type)
    headers = dict(reply.headers)
    media = headers.pop("content-type", reply.media_type)
    return Response(reply.body, status_code=reply.status, headers=headers, media_type=media)


def _error(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(_err_fmt(path), status, message), status, headers=headers)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else ""


def inbound_of(request: Request, internal: bool, body: dict[str, Any],
               size: int | None) -> Inbound:
    """An API request as the pipeline takes it; labels from the proxy (front
    door, mode, client) are trusted only with the proxy's own secret
    (``internal``)."""
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in TOKN_HEADERS}
    return Inbound(
        fmt=POST_ROUTES[request.url.path], body=body, headers=headers, size=size,
        front_door=request.headers.get("x-tokn-front-door", "listener") if internal
        else "listener",
        route_mode=request.headers.get("x-tokn-route-mode", "route") if internal else "route",
        client=(request.headers.get("x-tokn-client") if internal else None) or _peer(request),
        flight=request.scope[FLIGHT],
    )


def is_authorized(state: AppState, request: Request) -> bool:
    """The proxy's internal secret, or the API key when one is set (constant time)."""
    return state.is_internal(request.headers) or key_matches(state.api_key,
                                                             presented_key(request.headers))


def denied(request: Request) -> Response:
    """401 in the caller's format, saying how to authenticate."""
    return _error(request.url.path, 401,
                  "Invalid or missing API key: send it as `Authorization: Bearer KEY` or "
                  "`x-api-key: KEY` (the key is [server].api_key / --api-key).")


def create_app(state: AppState) -> Starlette:
    def authorized(request: Request) -> bool:
        return is_authorized(state, request)

    async def api(request: Request) -> Response:
        path = request.url.path
        if not authorized(request):
            # logged, not recorded: the usage log holds what the key's holders asked
            log.warning("listener: refused %s %s from %s: 401 no valid API key",
                        request.method, path, _peer(request))
            return denied(request)
        internal = state.is_internal(request.headers)
        try:
            body, size = await read_json_object(request, state.policy.max_body)
        except ToknError as exc:
            state.pipeline.reject(inbound_of(request, internal, {}, None), exc.status,
                                  exc.message)
            return _error(path, exc.status, exc.message)
        inbound = inbound_of(request, internal, body, size)
        try:
            reply = await until_disconnect(request, state.pipeline.handle(inbound))
            if reply is None:  # the client is gone; the pipeline recorded a 499
                return Response(status_code=499)
            return to_response(reply)
        except Exception as exc:  # noqa: BLE001 - last resort: the caller's format, no traceback
            log.exception("unexpected error on %s", path)
            message = (f"tokn hit an unexpected error ({type(exc).__name__}: {exc}); see the "
                       "log and please report it.")
            state.pipeline.reject(inbound, 500, message)
            return _error(path, 500, message)

    async def models(request: Request) -> Response:
        if not authorized(request):
            return denied(request)
        anthropic = "anthropic-version" in request.headers
        try:
            return JSONResponse(await state.pipeline.models(anthropic_shape=anthropic))
        except ToknError as exc:  # no model listed, and accounts failing: say why
            return JSONResponse(error_body("messages" if anthropic else "chat", exc.status,
                                           exc.message, exc.code), exc.status)

    async def healthz(request: Request) -> Response:
        pool = state.pipeline.pool
        return JSONResponse({"status": "ok", "accounts": len(pool.providers)})

    async def reject(request: Request) -> Response:
        """The proxy's answer for a request it would not buffer (see REJECT_PATH)."""
        if not state.is_internal(request.headers):
            return await not_found(request, ToknError("not found", status=404))
        try:
            spec = json.loads(base64.b64decode(request.headers[REJECT_HEADER]))
            status, body, headers = int(spec["status"]), str(spec["body"]), dict(spec["headers"])
        except (KeyError, ValueError, TypeError):
            return _error(request.url.path, 500, "tokn proxy: malformed internal rejection.")
        # no `connection: close`: uvicorn then reads and discards the rest of the
        # body, where closing with unread input would reset the connection and
        # could destroy this answer before the proxy reads it
        return Response(body.encode(), status, headers=headers)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(request.url.path, 404,
                      f"Unknown endpoint {request.method} {request.url.path}. "
                      "See GET /v1/models and the README for what tokn serves.")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return _error(request.url.path, 405, f"{request.method} is not allowed on "
                      f"{request.url.path}.")

    routes = [Route(p, api, methods=["POST"]) for p in POST_ROUTES]
    routes += [Route("/v1/models", models), Route("/models", models),
               Route("/healthz", healthz), Route(REJECT_PATH, reject, methods=ALL_METHODS),
               *state.extra_routes]
    middleware = [
        Middleware(TrackRequests, drain=state.drain),
        Middleware(FrontGuard, key_set=lambda: bool(state.api_key), internal=state.is_internal,
                   policy=state.policy, error_format=_err_fmt),
        Middleware(CORSMiddleware, allow_origins=list(state.policy.cors_origins),
                   allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"],
                   expose_headers=["retry-after"], max_age=600),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={404: not_found, 405: bad_method})
    app.state.tokn = state
    return app
