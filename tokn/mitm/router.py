"""Addon: what happens to an intercepted request, decided from its head.

:func:`tokn.mitm.modes.decide` takes the decision (pure); this addon acts on
it: ``route`` rewrites the flow to the in-process listener, whose pipeline
picks the account and converts formats (so both front doors share one pool);
``switch`` replaces the client's credentials with a pooled account's (only
over TLS, only to that account's own hosts); ``passthrough`` forwards as is.
Flows forwarded by mitmproxy itself (switch, passthrough) get a usage row
(:mod:`tokn.mitm.observer`).

Options: ``tokn_route_mode``, the default mode (else ``[proxy_mode].route_mode``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mitmproxy import ctx, exceptions, http

from tokn import hop, wire
from tokn.config import Config
from tokn.errors import ToknError
from tokn.identity import Identity
from tokn.mitm import inprocess, modes
from tokn.mitm.services import (
    FALLBACK,
    IDENTITY,
    INFO,
    PROXY_USER,
    Fallback,
    FlowInfo,
    ProxyServices,
    answer_error,
    declared_body,
    handled,
    in_tunnel,
    peer,
)
from tokn.mitm.sidecalls import offline_body
from tokn.mitm.target import Target, credential_may_go
from tokn.usage import UsageRow, new_request_id

log = logging.getLogger("tokn")
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
# A routed request body larger than this (or of unknown size) is streamed to
# the listener as it arrives rather than buffered in the proxy first.
STREAM_TO_LISTENER = 1 << 20
IN_PROCESS = "tokn.in_process"  # flow.metadata: (endpoint, params) of a route flow

# (name, type, default, help): also declared by the mitmdump entry, so that
# `--set tokn_route_mode=...` is known before tokn has started
ROUTE_MODE_OPTION: tuple[str, Any, Any, str] = (
    "tokn_route_mode", str | None, None,
    "Default route mode for intercepted flows: route, switch or passthrough "
    "(default: [proxy_mode].route_mode).")


def head_of(flow: http.HTTPFlow, connect_user: str | None) -> modes.Head:
    req = flow.request
    return modes.Head(method=req.method, path=req.path, scheme=req.scheme, host=req.host,
                      port=req.port, headers=req.headers,
                      host_headers=tuple(req.headers.get_all("host")), authority=req.authority,
                      tunnel_sni=flow.client_conn.sni if in_tunnel(flow) else None,
                      connect_user=connect_user)


def upgrade_refusal(flow: http.HTTPFlow, decision: modes.Decision, what: str) -> Fallback:
    """426 for a WebSocket upgrade that cannot reach its host: clients fall back
    to HTTPS at once (Codex retries a 5xx five times first)."""
    req = flow.request

    def body(why: str) -> bytes:
        message = f"tokn {what}: no WebSocket to {req.pretty_host} ({why}); use HTTPS."
        return json.dumps(decision.api.error(426, message, None)).encode()

    return Fallback(f"WebSocket {req.pretty_host}{req.path.split('?', 1)[0]}", 426, body,
                    needs_credentials=False, replace_5xx=True)


def side_fallback(flow: http.HTTPFlow, decision: modes.Decision) -> Fallback:
    req = flow.request
    if decision.websocket:
        return upgrade_refusal(flow, decision, "route mode")
    assert decision.side is not None
    row = decision.side
    host, path = req.pretty_host, req.path
    return Fallback(f"{req.method} {host}{path.split('?', 1)[0]} ({row.what})", row.offline,
                    lambda why: offline_body(row, decision.api, host, path, why),
                    needs_credentials=not row.public, replace_5xx=True)


class Router:
    name = "tokn_router"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services
        self._settings: tuple[Config, str | None, modes.Settings] | None = None
        # client connection id -> (set when it closes, in-process calls waiting on it)
        self._clients: dict[str, tuple[asyncio.Event, int]] = {}

    def load(self, loader: Any) -> None:
        loader.add_option(*ROUTE_MODE_OPTION)

    def configure(self, updated: set[str]) -> None:
        if "tokn_route_mode" in updated and ctx.options.tokn_route_mode:
            try:
                modes.check_mode(ctx.options.tokn_route_mode, "tokn_route_mode")
            except ValueError as exc:
                raise exceptions.OptionsError(str(exc)) from None

    def settings(self) -> modes.Settings:
        """The decision's settings, rebuilt when the config or the option changed."""
        cfg, mode = self.services.config(), ctx.options.tokn_route_mode
        if self._settings is None or self._settings[0] is not cfg or self._settings[1] != mode:
            self._settings = (cfg, mode, modes.Settings.of(cfg, mode))
        return self._settings[2]

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        decision = modes.decide(self.settings(), head_of(flow, flow.metadata.get(PROXY_USER)))
        if decision.action == modes.FORWARD:
            return
        if decision.action == modes.REFUSE:
            log.info("proxy: refused %s %s%s: %d %s", flow.request.method,
                     flow.request.pretty_host, flow.request.path.split("?", 1)[0],
                     decision.status, decision.message)
            answer_error(flow, self.services, decision.api, decision.status, decision.message)
            return
        req = flow.request
        for name in list(req.headers):
            if name.lower().startswith("x-tokn-"):
                req.headers.pop(name)
        if decision.action == modes.SIDE:
            # not a model call: no usage row; forwarded as sent (the client's own
            # credentials, never a pooled one), else answered at once
            flow.metadata[FALLBACK] = side_fallback(flow, decision)
            return
        fmt = decision.endpoint.fmt if decision.endpoint else None
        identity: Identity | None = flow.metadata.get(IDENTITY)
        if decision.action == modes.SWITCH and identity is not None and not identity.admin:
            # its limits and model globs are applied where the body is read: route mode
            answer_error(flow, self.services, decision.api, 403,
                         f"key {identity.name!r} may use pooled accounts in route mode only "
                         "(switch mode would bypass its limits); drop the switch mode "
                         "(x-tokn-route-mode / [proxy_mode]) for this client.", "admin_only")
            return
        if decision.action == modes.ROUTE:
            flow.metadata[INFO] = FlowInfo(decision.action, fmt)
            self._route(flow, decision)
            return
        flow.metadata[INFO] = info = FlowInfo(decision.action, fmt, self.services.recorder.begin(
            UsageRow(request_id=new_request_id(), front_door="proxy", route_mode=decision.mode,
                     client=peer(flow), key_name=identity.name if identity else None,
                     inbound_format=fmt, upstream_format=fmt,
                     provider=decision.provider, stream=0)))
        if decision.status:
            answer_error(flow, self.services, decision.api, decision.status, decision.message)
        elif decision.websocket:  # passthrough: relayed as is, 426 when the host is away
            flow.metadata[FALLBACK] = upgrade_refusal(flow, decision, "passthrough")
        elif decision.action == modes.SWITCH:
            assert decision.target is not None and decision.provider is not None
            await self._switch(flow, info, decision)

    async def request(self, flow: http.HTTPFlow) -> None:
        """A route flow that needs no stream: answered by the listener's app in
        process.  A switched flow's body, once read, with the account's facts
        in place of the client's (Code Assist's envelope names the pooled
        account's project)."""
        info = flow.metadata.get(INFO)
        if flow.response is not None or not isinstance(info, FlowInfo):
            return
        target = flow.metadata.pop(IN_PROCESS, None)
        if target is not None and inprocess.suits(flow.request, *target):
            await self._in_process(flow)
            return
        if info.mode != modes.SWITCH or info.provider is None or not flow.request.content:
            return
        try:
            path, body = await info.provider.switch_target(flow.request.path,
                                                           flow.request.content)
        except ToknError as exc:
            api = wire.caller_api(flow.request.path, host=flow.request.host,
                                  headers=flow.request.headers)
            answer_error(flow, self.services, api, exc.status, exc.message, exc.code)
            return
        flow.request.path = path
        if body is not flow.request.content:
            flow.request.content = body

    def client_disconnected(self, client: Any) -> None:
        waiting = self._clients.pop(client.id, None)
        if waiting is not None:
            waiting[0].set()

    async def _in_process(self, flow: http.HTTPFlow) -> None:
        assert self.services.app is not None  # (_route marks flows only then)
        client = flow.client_conn.id
        event, count = self._clients.get(client, (asyncio.Event(), 0))
        if flow.client_conn.timestamp_end is not None:
            event.set()  # gone already: the app sees it at once (its row: 499)
        self._clients[client] = (event, count + 1)
        try:
            flow.response = await inprocess.call(self.services.app, flow.request,
                                                 self.services.listener, event)
        finally:
            event, count = self._clients.get(client, (event, 1))
            if count <= 1:
                self._clients.pop(client, None)
            else:
                self._clients[client] = (event, count - 1)

    def _route(self, flow: http.HTTPFlow, decision: modes.Decision) -> None:
        req = flow.request
        assert decision.endpoint is not None
        identity: Identity | None = flow.metadata.get(IDENTITY)
        req.headers[hop.INTERNAL] = self.services.internal_secret
        req.headers[hop.FRONT_DOOR] = "proxy"
        req.headers[hop.ROUTE_MODE] = "route"
        if identity is not None:
            req.headers[hop.IDENTITY] = identity.name
        if flow.client_conn.peername:
            req.headers[hop.CLIENT] = peer(flow)
        _, sep, query = req.path.partition("?")
        req.scheme, (req.host, req.port) = "http", self.services.listener
        req.path = decision.endpoint.listener_path(decision.params) + sep + query
        size = declared_body(req)
        if size is None or size > STREAM_TO_LISTENER:
            # the listener reads it (and enforces the limits): the proxy holds no copy
            req.stream = True
        elif self.services.app is not None:
            flow.metadata[IN_PROCESS] = (decision.endpoint, decision.params)

    async def _switch(self, flow: http.HTTPFlow, info: FlowInfo,
                      decision: modes.Decision) -> None:
        pool = self.services.pool
        target: Target = decision.target  # type: ignore[assignment]
        try:
            await pool.sync()  # other replicas' view of health ([state] url)
            chosen = pool.switch_account(decision.provider, accept=lambda p: credential_may_go(
                target, base_url=p.account.base_url, provider_hosts=type(p).hosts))
            headers = await chosen.switch_headers()
            path, body = await chosen.switch_target(flow.request.path, flow.request.content)
        except ToknError as exc:
            answer_error(flow, self.services, decision.api, exc.status, exc.message, exc.code)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client in its format
            pool.mark_failure(chosen.account_id, str(exc))
            answer_error(flow, self.services, decision.api, 502,
                         f"account {chosen.account_id} could not supply credentials: {exc}")
            return
        for name in CREDENTIAL_HEADERS:
            flow.request.headers.pop(name, None)
        for name, value in headers.items():
            flow.request.headers[name] = value
        flow.request.path = path
        if body is not flow.request.content:
            flow.request.content = body
        info.provider = chosen
        assert info.attempt is not None
        info.attempt.row.account = chosen.account_id
