"""tokn's proxy addons with mitmproxy's own test helpers: no sockets, no Runtime.

Each flow goes through the whole list (:func:`tokn.mitm.addons.proxy_addons`)
the way mitmproxy runs it (hook by hook, addon by addon), built from plain
parts: a pool over a mock transport, a real usage store, a drain.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.layers.http import (
    HttpConnectHook,
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import taddons, tflow, tutils

from tests.helpers import stored_rows
from tokn import hop
from tokn.config import AccountConfig, Config
from tokn.connlimits import ConnectionCaps
from tokn.drain import Drain
from tokn.keys import KeyRing
from tokn.limits import Limiter, LocalCounters
from tokn.mitm.addons import proxy_addons
from tokn.mitm.router import Router
from tokn.mitm.services import ProxyServices
from tokn.pool import Pool
from tokn.recorder import Recorder
from tokn.standalone import StandaloneAddon
from tokn.usage import UsageStore

LISTENER = ("127.0.0.1", 5555)
KEY = "k3y"


def services(accounts=(), *, key: str = "", store: UsageStore | None = None,
             **proxy_mode) -> ProxyServices:
    cfg = Config()
    cfg.accounts = list(accounts)
    for k, v in proxy_mode.items():
        setattr(cfg.proxy_mode, k, v)
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return ProxyServices(config=lambda: cfg, pool=Pool(lambda: cfg, client),
                         recorder=Recorder(store, lambda: cfg), drain=Drain(),
                         internal_secret="s3cret", api_key=key, keys=KeyRing(None),
                         limiter=Limiter(LocalCounters()), listener=LISTENER,
                         caps=ConnectionCaps(total=10, per_client=10))


def tunnel_flow(host="api.openai.com", path="/v1/chat/completions", headers=(),
                method=b"POST", body=b'{"model":"gpt-4o"}'):
    """A request inside a CONNECT tunnel to ``host:443`` (TLS, SNI = host)."""
    f = tflow.tflow()
    f.client_conn.timestamp_tls_setup = 1.0
    f.client_conn.sni = host
    f.client_conn.sockname = ("127.0.0.1", 4142)
    f.server_conn.address = (host, 443)
    f.request = tutils.treq(host=host, port=443, path=path.encode(), method=method,
                            content=body)
    f.request.scheme = "https"
    f.request.headers["host"] = host
    for k, v in headers:
        f.request.headers[k] = v
    return f


def through(svc: ProxyServices, flow, *, options: dict | None = None,
            response: Callable | None = None):
    """Run ``flow`` through tokn's addons the way mitmproxy does: request
    hooks, then (unless an addon answered) the upstream's ``response``."""

    async def run():
        with taddons.context(*proxy_addons(svc)) as tctx:
            if options:
                tctx.options.update(**options)
            addons = tctx.master.addons
            await addons.handle_lifecycle(HttpRequestHeadersHook(flow))
            await addons.handle_lifecycle(HttpRequestHook(flow))
            if flow.response is None and response is not None:
                flow.response = response()
                await addons.handle_lifecycle(HttpResponseHeadersHook(flow))
            if flow.response is not None:
                await addons.handle_lifecycle(HttpResponseHook(flow))
        return flow

    return asyncio.run(run())


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- route --------------------------------------------------------------------------
def test_route_hands_the_flow_to_the_listener_with_the_hop_labels():
    svc = services(key=KEY)
    flow = through(svc, tunnel_flow(headers=[("x-tokn-route-mode", "route"),
                                             ("x-tokn-extra", "1"),
                                             ("proxy-authorization", basic("tokn", KEY))]))
    req = flow.request
    assert flow.response is None
    assert (req.scheme, req.host, req.port) == ("http", *LISTENER)
    assert req.path == "/v1/chat/completions"
    assert req.headers[hop.INTERNAL] == "s3cret"
    assert req.headers[hop.IDENTITY] == "admin"  # who proxy authentication admitted
    assert "x-tokn-extra" not in req.headers and "proxy-authorization" not in req.headers


def test_route_keeps_the_query_and_maps_unprefixed_paths():
    flow = through(services(), tunnel_flow(host="api.githubcopilot.com",
                                           path="/chat/completions?x=1"))
    assert flow.request.path == "/v1/chat/completions?x=1"


def test_route_mode_option_sets_the_default_and_refuses_a_bad_value():
    flow = through(services(), tunnel_flow(headers=[("authorization", "Bearer mine")]),
                   options={"tokn_route_mode": "passthrough"})
    assert flow.request.host == "api.openai.com" and flow.request.port == 443
    assert flow.request.headers["authorization"] == "Bearer mine"
    with taddons.context(Router(services())) as tctx, \
            pytest.raises(exceptions.OptionsError, match="route, switch, passthrough"):
        tctx.options.update(tokn_route_mode="teleport")


def test_provider_modes_apply_per_host():
    flow = through(services(provider_modes={"anthropic": "passthrough"}),
                   tunnel_flow(host="api.anthropic.com", path="/v1/messages"))
    assert flow.request.host == "api.anthropic.com"


def test_unmapped_route_path_without_credentials_is_answered_in_the_hosts_format():
    """Not a model endpoint, and nothing to pass on: the side-call answer at once
    (tests/mitm/test_sidecalls.py has the rest), never a 501."""
    flow = through(services(), tunnel_flow(host="api.anthropic.com", path="/v1/files"))
    assert flow.response.status_code == 404
    assert flow.response.json()["type"] == "error"


def test_count_tokens_errors_are_anthropic_on_any_host():
    """One rule for the caller's error format: the endpoint's API first (here
    the web-origin refusal of an Anthropic endpoint on OpenAI's host)."""
    flow = through(services(), tunnel_flow(path="/v1/messages/count_tokens",
                                           headers=[("origin", "https://evil.example")]))
    assert flow.response.status_code == 403
    assert flow.response.json()["type"] == "error"  # Anthropic's shape


# --- proxy authentication -----------------------------------------------------------
def test_proxy_auth_per_connection():
    svc = services(key=KEY)

    async def run():
        with taddons.context(*proxy_addons(svc)) as tctx:
            refused = tflow.tflow()
            refused.request = tutils.treq(method=b"CONNECT", host="api.openai.com", port=443,
                                          path=b"")
            await tctx.master.addons.handle_lifecycle(HttpConnectHook(refused))
            ok = tflow.tflow()
            ok.request = tutils.treq(method=b"CONNECT", host="api.openai.com", port=443,
                                     path=b"")
            ok.request.headers["proxy-authorization"] = basic("tokn", KEY)
            await tctx.master.addons.handle_lifecycle(HttpConnectHook(ok))
            # a request inside the admitted tunnel needs nothing more
            inner = tunnel_flow()
            inner.client_conn = ok.client_conn
            inner.client_conn.sni, inner.client_conn.sockname = "api.openai.com", ("::1", 4142)
            await tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(inner))
            return refused, ok, inner

    refused, ok, inner = asyncio.run(run())
    assert refused.response.status_code == 407
    assert ok.response is None
    assert inner.response is None and inner.request.port == LISTENER[1]


def test_a_request_to_the_proxy_itself_needs_no_auth_and_uses_no_pool():
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", 4142)
    flow.server_conn.address = None
    flow.request = tutils.treq(method=b"GET", host="127.0.0.1", port=4142, path=b"/")
    flow = through(services(key=KEY), flow)
    assert flow.response.status_code == 200 and b"tokn proxy" in flow.response.content


# --- switch and passthrough: one row each, health by the provider's rule --------------
def switch_account():
    return AccountConfig(id="w", provider="openai", fields={"api_key": "sk-pool"})


def test_switch_replaces_credentials():
    flow = through(services([switch_account()]),
                   tunnel_flow(headers=[("authorization", "Bearer dummy"), ("x-api-key", "d"),
                                        ("x-tokn-route-mode", "switch")]))
    assert flow.request.headers["authorization"] == "Bearer sk-pool"
    assert "x-api-key" not in flow.request.headers
    assert flow.request.host == "api.openai.com"


@pytest.mark.parametrize("status,rests", [(402, True), (408, True), (429, True), (500, True),
                                          (400, False), (404, False)])
def test_switch_health_follows_the_providers_failure_kind(status, rests):
    """402 (quota) and 408 (timeout) rest the account too, as in the pipeline."""
    svc = services([switch_account()])
    through(svc, tunnel_flow(headers=[("x-tokn-route-mode", "switch")]),
            response=lambda: tutils.tresp(status_code=status, content=b'{"error": {}}'))
    health = svc.pool.health["w"]
    assert (health.failures, health.cooldown_until > 0) == ((1, True) if rests else (0, False))


def test_switch_honours_retry_after():
    svc = services([switch_account()])
    through(svc, tunnel_flow(headers=[("x-tokn-route-mode", "switch")]),
            response=lambda: tutils.tresp(status_code=429, content=b"{}",
                                          headers=[(b"retry-after", b"3600")]))
    assert svc.pool.health["w"].cooldown_until - svc.pool.clock() > 3000


def test_passthrough_row_has_every_column_it_should(store):
    svc = services(store=store)
    answer = b'{"model": "gpt-4o-2024", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}'
    through(svc, tunnel_flow(headers=[("x-tokn-route-mode", "passthrough")],
                             body=b'{"model":"gpt-4o","stream":false}'),
            response=lambda: tutils.tresp(status_code=200, content=answer))
    [row] = stored_rows(store)
    assert {k: row[k] for k in ("front_door", "route_mode", "inbound_format", "provider",
                                "model_requested", "model_served", "status", "input_tokens",
                                "output_tokens", "stream", "error")} == {
        "front_door": "proxy", "route_mode": "passthrough", "inbound_format": "chat",
        "provider": "openai", "model_requested": "gpt-4o", "model_served": "gpt-4o-2024",
        "status": 200, "input_tokens": 7, "output_tokens": 3, "stream": 0, "error": None}
    assert len(row["request_id"]) == 16 and row["ttfb_ms"] is not None
    assert row["bytes_out"] == len(answer) and row["latency_ms"] >= row["ttfb_ms"]


def test_a_switch_flow_refused_by_the_router_still_gets_its_row(store):
    flow = through(services(store=store), tunnel_flow(
        host="api.example.test", headers=[("x-tokn-route-mode", "switch")]))
    assert flow.response is None  # not intercepted: forwarded untouched, no row
    flow = through(services(store=store, intercept_hosts=["api.example.test"]),
                   tunnel_flow(host="api.example.test", headers=[("x-tokn-route-mode",
                                                                  "switch")]))
    assert flow.response.status_code == 400
    [row] = stored_rows(store)
    assert row["status"] == 400 and row["route_mode"] == "switch"


# --- the mitmdump entry wires the same list -----------------------------------------
def test_the_mitmdump_entry_gates_then_runs_the_same_addons():
    svc = services(key=KEY)

    async def run():
        gate = StandaloneAddon()
        with taddons.context(gate) as tctx:
            gate._ready = asyncio.Event()
            gate._ready.set()
            early = tunnel_flow()  # tokn not up yet: refused, no addon after sees it
            await tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(early))
            gate._adopt(proxy_addons(svc))
            names = [type(a).__name__ for a in gate.addons]
            flow = tunnel_flow()
            await tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
            return early, names, flow

    early, names, flow = asyncio.run(run())
    assert early.error is not None and early.response is None
    assert names == [type(a).__name__ for a in proxy_addons(svc)]
    assert flow.response.status_code == 407  # the proxy key applies, as in-process
