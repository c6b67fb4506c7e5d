"""``GET /ui/events``: the live tail as server-sent events.

Each recorded usage row (see :mod:`tokn.usage_feed`) matching the request's
filters (:class:`tokn.usage_query.RowFilter`) is one ``data:`` event whose id
is the feed's sequence number, so a reconnecting ``EventSource`` (its
``Last-Event-ID``) or a page that just rendered the store (``after=``) gets
what it missed from the feed's backlog and nothing twice.  A comment line
every :data:`PING_SECS` keeps proxies and the browser from timing out; the
stream ends when the server starts draining, so shutdown never waits on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tokn.drain import Drain
from tokn.server.ui_auth import Session
from tokn.ui.web import Web
from tokn.usage_feed import Feed
from tokn.usage_query import RowFilter

PING_SECS = 15.0
POLL_SECS = 0.5  # how soon a drain is noticed


def event(seq: int, row: dict[str, Any]) -> bytes:
    return f"id: {seq}\ndata: {json.dumps(row, default=str)}\n\n".encode()


async def tail(feed: Feed, where: RowFilter, after: int, drain: Drain) -> AsyncIterator[bytes]:
    with feed.subscribe() as sub:
        yield b"retry: 3000\n\n"
        # an id from before a restart (the sequence began again): send the backlog
        last = after if after <= feed.last_seq else 0
        for seq, row in feed.recent(last):
            last = seq
            if where.matches(row):
                yield event(seq, row)
        quiet = 0.0
        while not drain.draining:
            item = await sub.get(POLL_SECS)
            if item is None:
                quiet += POLL_SECS
                if quiet >= PING_SECS:
                    quiet = 0.0
                    yield b": ping\n\n"
                continue
            seq, row = item
            if seq <= last:
                continue
            last = seq
            if where.matches(row):
                quiet = 0.0
                yield event(seq, row)


def _after(request: Request) -> int:
    for value in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if value and value.isdigit():
            return int(value)
    return 0


class Live:
    def __init__(self, web: Web, runtime: Any) -> None:
        self.web = web
        self.runtime = runtime

    async def events(self, request: Request, session: Session) -> Response:
        store = self.runtime.usage
        if store is None:  # 204 tells EventSource to stop reconnecting
            return self.web.secured(Response(status_code=204))
        try:
            where = RowFilter.parse(request.query_params)
        except ValueError as exc:
            return self.web.secured(Response(f"{exc}\n", 400, media_type="text/plain"))
        response = StreamingResponse(
            tail(store.feed, where, _after(request), self.runtime.state.drain),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"})
        return self.web.secured(response)
