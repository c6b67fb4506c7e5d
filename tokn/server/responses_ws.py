"""The Responses API over a WebSocket (``GET /v1/responses`` + Upgrade), as
Codex and the OpenAI SDKs' WebSocket transport speak it.

The client sends text messages, each a JSON object:

* ``{"type": "response.create", ...}`` -- the rest is a Responses request body
  (``model``, ``input``, ``tools``, ...).  It runs through the pipeline like a
  streamed ``POST /v1/responses`` (any account, converted as needed, one usage
  row per attempt) and every event of the stream goes back as one text
  message, the event's JSON (``response.created`` ... ``response.completed``).
  ``previous_response_id`` may name an earlier response on the same
  connection: its input and output are put in front of this ``input`` (Codex
  sends only the new items on a reused connection).  ``generate: false``
  (a warm-up) is answered with an empty completed response, no model call.
* ``{"type": "response.processed", ...}`` -- an acknowledgement; ignored.

A message is at most ``[server].max_body_mb`` (larger ones close the
connection with 1009, as uvicorn does) and nests at most as deep as an HTTP
body may.  An error the pipeline answers with a status (no account, unknown model, a bad
body) goes back as ``{"type": "error", "status": N, "error": {...}}``, the
wrapped error Codex maps to the same HTTP error; the connection stays open.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tokn import hop, wire
from tokn.pipeline import Inbound, Reply
from tokn.server.httpguard import TOO_DEEP, too_deep
from tokn.sse import SSEParser

log = logging.getLogger("tokn")

REMEMBERED = 4  # earlier responses of a connection previous_response_id may name


def error_event(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    body = wire.OPENAI.error(status, message, code)
    return {"type": "error", "status": status, "error": body["error"]}


def _reply_error(reply: Reply) -> dict[str, Any]:
    try:
        err = json.loads(reply.body).get("error")
    except (ValueError, AttributeError):
        err = None
    if not isinstance(err, dict):
        err = wire.OPENAI.error(reply.status, reply.body.decode("utf-8", "replace")[:500],
                                None)["error"]
    return {"type": "error", "status": reply.status, "error": err}


def warmup_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``generate: false``: an empty response, created and completed."""
    response = {"id": "resp_" + secrets.token_hex(12), "object": "response",
                "created_at": int(time.time()), "status": "in_progress",
                "model": body.get("model"), "output": [], "usage": None}
    done = {**response, "status": "completed",
            "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}
    return [{"type": "response.created", "sequence_number": 0, "response": response},
            {"type": "response.completed", "sequence_number": 1, "response": done}]


class Conversation:
    """The responses of one connection that ``previous_response_id`` may name:
    id -> every item of it (input, then output)."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, list[Any]] = OrderedDict()

    def expand(self, body: dict[str, Any]) -> str | None:
        """Put the named response's items in front of ``input``; a message
        when the id is unknown."""
        previous = body.pop("previous_response_id", None)
        if previous is None:
            return None
        if previous not in self.items:
            return (f"previous_response_id {previous!r} is not a response of this "
                    "connection; send the whole input.")
        new = body.get("input", [])
        if isinstance(new, str):
            new = [{"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": new}]}]
        body["input"] = [*self.items[previous], *new]
        return None

    def remember(self, response_id: str, items: list[Any]) -> None:
        self.items[response_id] = items
        while len(self.items) > REMEMBERED:
            self.items.popitem(last=False)


async def serve_socket(ws: WebSocket, handle: Any, make_inbound: Any, in_flight: Any) -> None:
    """Serve one accepted connection until the client closes it.
    ``handle(inbound) -> Reply`` runs a request, ``make_inbound(body, size,
    flight)`` builds its :class:`~tokn.pipeline.Inbound`, ``in_flight()`` (an
    async context manager) keeps each request in flight until its stream ends."""
    talk = Conversation()
    while True:
        try:
            text = await ws.receive_text()
        except (WebSocketDisconnect, KeyError):  # KeyError: a binary message
            return
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            message = None
        if isinstance(message, dict) and too_deep(message):
            await ws.send_json(error_event(400, TOO_DEEP, "too_deep"))
            continue
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "response.processed":
            continue
        if kind != "response.create":
            await ws.send_json(error_event(400, "each message must be a JSON object with "
                                           "type response.create (or response.processed)."))
            continue
        body = {k: v for k, v in message.items() if k != "type"}
        if body.pop("generate", None) is False:
            for event in warmup_events(body):
                await ws.send_json(event)
            continue
        problem = talk.expand(body)
        if problem:
            await ws.send_json(error_event(400, problem, "previous_response_not_found"))
            continue
        async with in_flight() as flight:
            inbound: Inbound = make_inbound({**body, "stream": True}, len(text), flight)
            reply: Reply = await handle(inbound)
            if reply.stream is None:
                await ws.send_json(_reply_error(reply))
                continue
            await _relay(ws, reply, talk, list(inbound.body.get("input") or []))


async def _relay(ws: WebSocket, reply: Reply, talk: Conversation, items: list[Any]) -> None:
    parser = SSEParser()
    output: list[Any] = []
    assert reply.stream is not None
    try:
        async for chunk in reply.stream:
            for event in parser.feed(chunk):
                try:
                    data = event.json()
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                kind = data.get("type")
                if kind == "response.output_item.done":
                    output.append(data.get("item"))
                elif kind == "response.completed":
                    response_id = (data.get("response") or {}).get("id")
                    if response_id:
                        talk.remember(response_id, [*items, *output])
                await ws.send_text(json.dumps(data))
    finally:  # the pipeline's streams are async generators: closing one records its end
        await reply.stream.aclose()  # type: ignore[attr-defined]


HOP_BY_HOP = ("connection", "upgrade", "host")


def request_headers(headers: Iterable[tuple[str, str]], drop: Iterable[str]) -> dict[str, str]:
    """The headers a connection's requests carry into the pipeline: not the
    upgrade's own (``sec-websocket-*``, hop-by-hop) nor ``drop``, and
    ``openai-beta`` without its WebSocket flag (the upstream call is HTTP)."""
    skip = {*HOP_BY_HOP, *drop}
    out: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low in skip or low.startswith("sec-websocket-"):
            continue
        if low == "openai-beta":
            value = ",".join(v for v in (p.strip() for p in value.split(","))
                             if v and not v.startswith("responses_websockets"))
            if not value:
                continue
        out[low] = value
    return out


def front_labels(ws: WebSocket, internal: bool) -> tuple[str, str, str | None]:
    """(front door, route mode, client) of a connection, as the HTTP routes read them."""
    headers = ws.headers
    if not internal:
        return "listener", "route", None
    return (headers.get(hop.FRONT_DOOR, "listener"), headers.get(hop.ROUTE_MODE, "route"),
            headers.get(hop.CLIENT))
