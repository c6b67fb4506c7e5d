"""The addon's hooks with mitmproxy's own test helpers (no sockets)."""

from __future__ import annotations

import asyncio

import httpx
from mitmproxy.test import taddons, tflow, tutils

from tokn.config import AccountConfig, Config
from tokn.mitm.addon import ToknAddon
from tokn.runtime import Runtime


def _runtime(accounts=(), **proxy_mode) -> Runtime:
    cfg = Config()
    cfg.accounts = list(accounts)
    for k, v in proxy_mode.items():
        setattr(cfg.proxy_mode, k, v)
    return Runtime(cfg, transport=httpx.MockTransport(lambda r: httpx.Response(500)),
                   usage=False)


def _flow(host="api.openai.com", path="/v1/chat/completions", headers=()):
    """A request inside a CONNECT tunnel to ``host:443`` (TLS, SNI = host)."""
    f = tflow.tflow()
    f.client_conn.timestamp_tls_setup = 1.0
    f.client_conn.sni = host
    f.server_conn.address = (host, 443)
    f.request = tutils.treq(host=host, port=443, path=path, method=b"POST",
                            content=b'{"model":"gpt-4o"}')
    f.request.scheme = "https"
    f.request.headers["host"] = host
    for k, v in headers:
        f.request.headers[k] = v
    return f


def _run(addon, flow):
    with taddons.context(addon):
        asyncio.run(addon.requestheaders(flow))
        addon.request(flow)
    return flow


def test_route_rewrites_to_listener_and_strips_tokn_headers():
    rt = _runtime()
    addon = ToknAddon(rt, "http://127.0.0.1:5555")
    flow = _run(addon, _flow(headers=[("x-tokn-route-mode", "route"), ("x-tokn-extra", "1")]))
    assert flow.response is None
    assert (flow.request.scheme, flow.request.host, flow.request.port) == ("http", "127.0.0.1",
                                                                          5555)
    assert flow.request.path == "/v1/chat/completions"
    assert flow.request.headers["x-tokn-internal"] == rt.state.internal_secret
    assert "x-tokn-extra" not in flow.request.headers


def test_copilot_unprefixed_path_maps_to_listener():
    addon = ToknAddon(_runtime(), "http://127.0.0.1:5555")
    flow = _run(addon, _flow(host="api.githubcopilot.com", path="/chat/completions"))
    assert flow.request.path == "/v1/chat/completions"


def test_passthrough_leaves_flow_alone():
    addon = ToknAddon(_runtime(), "http://127.0.0.1:5555", route_mode="passthrough")
    flow = _run(addon, _flow(headers=[("authorization", "Bearer mine")]))
    assert flow.request.host == "api.openai.com" and flow.request.port == 443
    assert flow.request.headers["authorization"] == "Bearer mine"
    assert flow.response is None


def test_switch_replaces_credentials():
    acc = AccountConfig(id="w", provider="openai", fields={"api_key": "sk-pool"})
    addon = ToknAddon(_runtime([acc]), "http://127.0.0.1:5555", route_mode="switch")
    flow = _run(addon, _flow(headers=[("authorization", "Bearer dummy"),
                                      ("x-api-key", "dummy")]))
    assert flow.request.headers["authorization"] == "Bearer sk-pool"
    assert "x-api-key" not in flow.request.headers
    assert flow.request.host == "api.openai.com"


def test_provider_modes_apply_per_host():
    addon = ToknAddon(_runtime(provider_modes={"anthropic": "passthrough"}),
                      "http://127.0.0.1:5555")
    flow = _run(addon, _flow(host="api.anthropic.com", path="/v1/messages"))
    assert flow.request.host == "api.anthropic.com"


def test_unmapped_route_path_is_501_in_anthropic_format():
    addon = ToknAddon(_runtime(), "http://127.0.0.1:5555")
    flow = _run(addon, _flow(host="api.anthropic.com", path="/v1/files"))
    assert flow.response.status_code == 501
    assert flow.response.json()["type"] == "error"


def test_proxy_auth_required_when_key_set():
    addon = ToknAddon(_runtime(), "http://127.0.0.1:5555", proxy_key="k3y")
    flow = tflow.tflow()
    flow.request = tutils.treq(method=b"CONNECT", host="api.openai.com", port=443, path=b"")
    with taddons.context(addon):
        addon.http_connect(flow)
    assert flow.response.status_code == 407
    ok = tflow.tflow()
    ok.request = tutils.treq(method=b"CONNECT", host="api.openai.com", port=443, path=b"")
    ok.request.headers["proxy-authorization"] = "Basic dG9rbjprM3k="  # tokn:k3y
    with taddons.context(addon):
        addon.http_connect(ok)
    assert ok.response is None
