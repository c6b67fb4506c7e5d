"""Addon: flows forwarded as the client sent them, with an answer at once when
the host cannot be asked (:class:`~tokn.mitm.services.Fallback`).

Route mode's side calls (:mod:`tokn.mitm.sidecalls`) and WebSocket upgrades
passed through go to the original host with the client's own credentials.
When the client sent none, or the host does not accept a connection within
:data:`CONNECT_SECS`, the flow is answered at once with the fallback's status
(a 404 / 200 the agents accept, 426 for an upgrade) instead of mitmproxy's
502, which agents retry for seconds; a 5xx from the host is replaced the same
way.  Whether a host accepts connections is known for :data:`REMEMBER_SECS`
(a host that goes away meanwhile still gets mitmproxy's 502 for that long).
Each such flow gets one log line saying what it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mitmproxy import http

from tokn import hosts
from tokn.mitm.services import FALLBACK, Fallback, ProxyServices, answer
from tokn.mitm.upstream import overrides_of

log = logging.getLogger("tokn")

CONNECT_SECS = 3.0  # how long a side call's host may take to accept a connection
REMEMBER_SECS = 10.0  # how long a host's reachability is taken as known
CREDENTIALS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def _took(flow: http.HTTPFlow) -> str:
    return f"{(time.time() - flow.request.timestamp_start) * 1000:.0f} ms"


class Fallbacks:
    name = "tokn_fallback"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services
        # (host, port) -> (until, problem): a host found unreachable is answered
        # for at once (a blackholed one would cost CONNECT_SECS each time), a
        # reachable one is not asked again for a while
        self._known: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def request(self, flow: http.HTTPFlow) -> None:
        fallback: Fallback | None = flow.metadata.get(FALLBACK)
        if fallback is None or flow.response is not None:
            return
        if fallback.needs_credentials and not any(h in flow.request.headers
                                                  for h in CREDENTIALS):
            self._answer(flow, fallback, "the client sent no credentials")
            return
        problem = await self._unreachable(flow.request.host, flow.request.port)
        if problem:
            self._answer(flow, fallback, problem)

    def response(self, flow: http.HTTPFlow) -> None:
        fallback: Fallback | None = flow.metadata.get(FALLBACK)
        if fallback is None or flow.response is None or flow.metadata.get(self.name):
            return
        status = flow.response.status_code
        if fallback.replace_5xx and status >= 500:
            self._answer(flow, fallback, f"the host answered {status}")
            return
        log.info("proxy: %s: passed to the host, which answered %d (%s)", fallback.label, status,
                 _took(flow))

    def error(self, flow: http.HTTPFlow) -> None:
        fallback: Fallback | None = flow.metadata.get(FALLBACK)
        if fallback is not None and flow.error is not None:
            log.info("proxy: %s: passed to the host, which failed: %s", fallback.label,
                     flow.error.msg)

    async def _unreachable(self, host: str, port: int) -> str | None:
        now = time.monotonic()
        known = self._known.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        problem = await self._probe(host, port)
        if len(self._known) > 256:
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
        self._known[(host, port)] = (time.monotonic() + REMEMBER_SECS, problem)
        return problem

    async def _probe(self, host: str, port: int) -> str | None:
        override = overrides_of(self.services.config()).get(hosts.normalize_host(host))
        address = (host, port)
        if override:
            o_host, _, o_port = override.rpartition(":")
            address = (o_host or override, int(o_port) if o_port else port)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*address), CONNECT_SECS)
        except TimeoutError:
            return f"{host} did not accept a connection within {CONNECT_SECS:g} s"
        except OSError as exc:
            return f"{host} is unreachable ({exc.strerror or exc})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    def _answer(self, flow: http.HTTPFlow, fallback: Fallback, why: str) -> None:
        flow.metadata[self.name] = True
        log.info("proxy: %s: answered %d at once (%s): %s", fallback.label, fallback.status,
                 _took(flow), why)
        if flow.response is not None:  # replacing the host's 5xx
            flow.response = http.Response.make(fallback.status, fallback.body(why),
                                               {"content-type": "application/json"})
            return
        answer(flow, self.services, fallback.status, fallback.body(why),
               {"content-type": "application/json"})
