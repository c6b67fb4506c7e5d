"""The listener's gate against other websites, and its body limits.

A browser page can make requests to ``127.0.0.1:4141`` (a "simple" POST needs
no CORS preflight), and through DNS rebinding even read the answers under its
own name.  So, before any route runs:

* without an API key, the ``Host`` must be a loopback name or address (or one
  of ``[server].allowed_hosts``): a rebound name is refused;
* a request carrying an ``Origin`` that is not in ``[server].cors_origins``
  (empty by default) is refused; allowed origins get proper CORS answers;
* a POST must declare a JSON content type (what browsers cannot send without
  a preflight);
* a body declared larger than ``[server].max_body_mb`` is refused before it is
  read (413), and :func:`read_json_object` enforces the limit on bodies of
  unknown length and refuses JSON nested deeper than :data:`MAX_JSON_DEPTH`.

Requests carrying the proxy's internal secret (route mode's in-process hop)
were checked by the proxy and pass; the dashboard (``/ui``) has its own gate
(:mod:`tokn.server.ui_auth`: Host, sign-in, CSRF, same-origin forms).  Answers
use the caller's API format (:func:`tokn.wire.caller_api`); each refusal is a
line in the log (not a usage row: those hold what callers tokn accepts asked).
"""

from __future__ import annotations

import functools
import json
import logging
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from tokn import wire
from tokn.errors import ToknError
from tokn.hosts import normalize_host, parse_authority
from tokn.server.guard import is_loopback
from tokn.server.ui_auth import owns as dashboard_owns

log = logging.getLogger("tokn")
MAX_JSON_DEPTH = 128
MAP_BODY = 1 << 20  # a body declared larger is read into an anonymous mapping
TOO_DEEP = f"The request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels."


@dataclass(frozen=True)
class Policy:
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body: int = 32 * 1024 * 1024


def policy_from(server_cfg: Any) -> Policy:
    return Policy(allowed_hosts=tuple(server_cfg.allowed_hosts),
                  cors_origins=tuple(o.rstrip("/").lower() for o in server_cfg.cors_origins),
                  max_body=int(server_cfg.max_body_mb * 1024 * 1024))


@functools.lru_cache(maxsize=256)  # clients send the same few Host values
def host_allowed(value: str, allowed: tuple[str, ...]) -> bool:
    """A loopback ``Host`` (``localhost``, ``*.localhost``, 127.0.0.0/8, ``[::1]``)
    or one of ``allowed``; any port."""
    try:
        host, _ = parse_authority(value, 80)
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost") or is_loopback(host):
        return True
    return host in {normalize_host(a) for a in allowed}


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


def screen(method: str, headers: Headers, policy: Policy, *,
           key_set: bool) -> tuple[int, str] | None:
    """``(status, message)`` when the request must be refused, else ``None`` (pure)."""
    if not key_set:
        values = headers.getlist("host")
        if len(values) != 1 or not host_allowed(values[0], policy.allowed_hosts):
            shown = values[0] if len(values) == 1 else f"{len(values)} Host headers"
            return 403, (f"tokn's listener has no API key, so it answers only to loopback "
                         f"host names (got Host: {shown!r}); use http://127.0.0.1:PORT, add the "
                         f"name to [server].allowed_hosts, or set [server].api_key.")
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() not in policy.cors_origins:
        return 403, (f"requests from the web origin {origin!r} are not allowed; add it to "
                     f"[server].cors_origins to let that site use tokn.")
    if method == "POST" and not is_json_type(headers.get("content-type", "")):
        return 415, ("POST bodies must be JSON: send `Content-Type: application/json` "
                     "(curl: -H 'content-type: application/json').")
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > policy.max_body:
        return 413, _too_large(policy.max_body)
    return None


def _too_large(limit: int) -> str:
    return (f"The request body is larger than {limit / 1048576:g} MB ([server].max_body_mb); "
            f"send less, or raise the limit.")


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``value`` nests more than ``limit`` arrays/objects
    (iterative, one level at a time, containers only)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, dict | list):
                    below.append(child)
        level = below
    return False


async def _read_body(request: Request, limit: int) -> tuple[bytes | mmap.mmap, int]:
    """The raw body and its size.  A big declared length is mapped at once, its
    pages resident only as the body fills them; else the chunks are kept as they
    come and joined once (one chunk: no copy).  (A growing buffer is copied as
    it grows; a big body's chunks kept on the heap leave as much heap behind.)"""
    declared = request.headers.get("content-length", "")
    buffer = mmap.mmap(-1, int(declared)) \
        if declared.isdigit() and MAP_BODY < int(declared) <= limit else None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            end = size + len(chunk)
            if end > limit:
                raise ToknError(_too_large(limit), status=413, code="request_too_large")
            if buffer is None:
                chunks.append(chunk)
            elif end > len(buffer):
                raise ToknError("The request body is longer than its Content-Length.",
                                status=400, code="invalid_request")
            else:
                buffer[size:end] = chunk
            size = end
    except BaseException:
        if buffer is not None:
            buffer.close()
        raise
    return (b"".join(chunks) if buffer is None else buffer), size


def _text(raw: bytes | mmap.mmap, size: int) -> str:
    """The first ``size`` bytes of ``raw`` as JSON text (RFC 8259's encodings)."""
    if not size:
        return ""
    with memoryview(raw) as whole, whole[:size] as view:
        return str(view, json.detect_encoding(bytes(view[:4])), "surrogatepass")


async def read_json_object(request: Request, limit: int) -> tuple[dict[str, Any], int]:
    """The body as a JSON object and its size; :class:`ToknError` (413 / 400)
    when it is too large, not JSON, not an object or nested too deep."""
    raw, size = await _read_body(request, limit)
    try:
        # decoded, then the bytes let go before parsing: two body sizes at a time, not three
        try:
            text = _text(raw, size)
        finally:
            if isinstance(raw, mmap.mmap):
                raw.close()
            del raw
        body = json.loads(text) if text else None
    except RecursionError:
        raise ToknError(TOO_DEEP, status=400, code="too_deep") from None
    except ValueError as exc:
        raise ToknError(f"The request body is not valid JSON: {exc}.", status=400,
                        code="invalid_json") from None
    if not isinstance(body, dict):
        raise ToknError("The request body must be a JSON object.", status=400,
                        code="invalid_json")
    if too_deep(body):
        raise ToknError(TOO_DEEP, status=400, code="too_deep")
    return body, size


class FrontGuard:
    """ASGI middleware applying :func:`screen` (see the module doc)."""

    def __init__(self, app: Any, *, key_set: Callable[[], bool],
                 internal: Callable[[Headers], bool], policy: Policy) -> None:
        self.app = app
        self.key_set = key_set
        self.internal = internal
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # the dashboard's pages and forms pass its own gate (tokn.server.ui_auth)
        # a WebSocket upgrade is screened as the GET it is (Host, Origin: a web page
        # may open a WebSocket to loopback with no CORS check at all)
        if scope["type"] in ("http", "websocket") and not dashboard_owns(scope["path"]):
            headers = Headers(scope=scope)
            problem = None if self.internal(headers) else screen(
                scope.get("method", "GET"), headers, self.policy, key_set=self.key_set())
            if problem is not None:
                status, message = problem
                api = wire.caller_api(scope["path"], headers=headers)
                client = scope.get("client")
                log.warning("listener: refused %s %s from %s: %d %s", scope.get("method", "GET"),
                            scope["path"], f"{client[0]}:{client[1]}" if client else "?",
                            status, message)
                # answered before the body is read; uvicorn discards what still comes
                # (closing instead would reset the connection under the answer)
                response = JSONResponse(api.error(status, message, None), status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
