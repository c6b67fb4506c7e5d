"""``GET /v1/usage`` (a report, same filters as ``tokn usage``) and
``DELETE /v1/usage?confirm=true`` (empty the store).

Both sit behind the listener's API key when one is set.  A person's key
(team mode) reads its own usage only (``key`` is then its name, whatever was
asked for) and may not delete anything.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokn import usage as usage_mod
from tokn.server.app import admin_only, denied, error_response
from tokn.usage_query import GROUPS, parse_since, query

FILTERS = ("since", "until", "account", "provider", "model", "key", "by")


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "code": None}}, status)


def parse_params(params: Any) -> dict[str, Any]:
    """Query parameters -> keyword arguments of :func:`tokn.usage_query.query`
    (``ValueError`` with a message for the client on a bad value)."""
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown query parameter(s) {', '.join(unknown)}; "
                         f"use: {', '.join(FILTERS)}")
    out: dict[str, Any] = {}
    for name in ("since", "until"):
        value = params.get(name)
        if value:
            try:
                out[name] = parse_since(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    for name in ("account", "provider", "model", "key"):
        if params.get(name):
            out[name] = params[name]
    by = params.get("by")
    if by:
        if by not in GROUPS:
            raise ValueError(f"by: cannot group by {by!r}; use one of: {', '.join(GROUPS)}")
        out["by"] = by
    return out


def _report(connect: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    conn = connect()  # nothing recorded yet: an empty report, same shape
    try:
        return query(conn, **kwargs).to_dict()
    finally:
        conn.close()


def routes(runtime: Any) -> list[Route]:
    def store_path() -> str:
        store = runtime.usage
        return store.where if store is not None else str(usage_mod.default_path())

    def connect() -> Any:
        store = runtime.usage
        if store is not None:
            return store.connect_reader()
        return usage_mod.open_readonly(usage_mod.default_path())

    async def get_usage(request: Request, identity: Any) -> Response:
        try:
            kwargs = parse_params(request.query_params)
        except ValueError as exc:
            return _bad(str(exc))
        if not identity.admin:  # a person sees their own usage only
            if kwargs.get("key", identity.name) != identity.name:
                return error_response(request, 403, f"key {identity.name!r} may read its own "
                                      "usage only; drop `key=` or use the admin key.",
                                      "admin_only")
            kwargs["key"] = identity.name
        store = runtime.usage
        if store is not None:
            await asyncio.to_thread(store.flush, 5.0)  # include rows still queued
        try:
            data = await asyncio.to_thread(_report, connect, kwargs)
        except Exception as exc:  # noqa: BLE001 - sqlite3 or PostgreSQL: said to the client
            return _bad(f"the usage store could not be read: {exc}", 500)
        data["recording"] = store is not None
        data["store"] = str(store_path())
        return JSONResponse(data)

    async def delete_usage(request: Request) -> Response:
        if request.query_params.get("confirm", "").lower() not in ("true", "1", "yes"):
            return _bad("DELETE /v1/usage erases every recorded usage row and cannot be "
                        "undone; repeat it as DELETE /v1/usage?confirm=true to proceed.")
        store = runtime.usage
        try:
            if store is not None:
                deleted = await asyncio.to_thread(store.reset)  # ordered after queued rows
            elif usage_mod.default_path().is_file():
                deleted = await asyncio.to_thread(_reset_file, usage_mod.default_path())
            else:
                deleted = 0
        except Exception as exc:  # noqa: BLE001 - sqlite3 or PostgreSQL: said to the client
            return _bad(f"the usage store could not be reset: {exc}", 500)
        return JSONResponse({"deleted": deleted, "store": str(store_path())})

    async def usage_endpoint(request: Request) -> Response:
        identity = runtime.state.identity(request.headers)
        if identity is None:
            return denied(request)
        if request.method == "DELETE":
            if not identity.admin:
                return admin_only(request)
            return await delete_usage(request)
        return await get_usage(request, identity)

    return [Route("/v1/usage", usage_endpoint, methods=["GET", "DELETE"])]


def _reset_file(path: Any) -> int:
    conn = usage_mod.connect(path)
    try:
        with conn:
            return conn.execute("DELETE FROM requests").rowcount
    finally:
        conn.close()
