"""Route mode's side calls (tokn.mitm.sidecalls, tokn.mitm.fallback) and
WebSocket upgrades in each mode, through tokn's addon list with mitmproxy's
test helpers: passed to the host with the client's own credentials when it
can be asked, else answered at once with the table's answer, never a 5xx."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons, tutils

from tests.helpers import free_port
from tests.mitm.test_addons import LISTENER, services, through, tunnel_flow
from tokn import hop
from tokn.config import AccountConfig
from tokn.mitm import sidecalls
from tokn.mitm.addons import proxy_addons

# Every request Claude Code 2.1.197 and Codex 0.171 sent to an intercepted host
# besides their model calls, run through the proxy (tests/agents/), and what
# route mode answers when the host cannot be asked.
OBSERVED = [
    ("claude-code", "POST", "api.anthropic.com", "/api/eval/sdk-zAZezfDKGoZuXXKe", 404),
    ("claude-code", "GET", "api.anthropic.com", "/api/claude_code/policy_limits", 404),
    ("claude-code", "GET", "api.anthropic.com", "/api/claude_code/settings", 404),
    ("claude-code", "GET", "api.anthropic.com",
     "/api/claude_cli/bootstrap?entrypoint=sdk-cli&model=claude-opus-4-8", 404),
    ("claude-code", "GET", "api.anthropic.com", "/api/claude_code_penguin_mode", 404),
    ("claude-code", "GET", "api.anthropic.com",
     "/mcp-registry/v0/servers?version=latest&limit=100", 200),
    ("claude-code", "GET", "api.anthropic.com",
     "/api/claude_code/organizations/metrics_enabled", 404),
    ("claude-code", "POST", "api.anthropic.com", "/api/event_logging/v2/batch", 200),
]


@pytest.fixture
def closed_port():
    return free_port()  # bound, then closed: connections are refused


@pytest.fixture
def listening_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("who,method,host,path,status", OBSERVED)
def test_every_observed_side_call_is_in_the_table(who, method, host, path, status):
    row = sidecalls.side_call(host, method, path)
    assert row is not sidecalls.DEFAULT and row.who == who
    assert row.offline == status and row.offline < 500


@pytest.mark.parametrize("who,method,host,path,status", OBSERVED)
def test_each_is_answered_at_once_when_the_host_is_unreachable(who, method, host, path, status,
                                                               closed_port, caplog):
    caplog.set_level(logging.INFO, "tokn")
    svc = services(upstream_overrides={host: f"127.0.0.1:{closed_port}"})
    flow = through(svc, tunnel_flow(host=host, path=path, method=method.encode(),
                                    headers=[("x-api-key", "sk-ant-own")]))
    assert flow.response is not None and flow.response.status_code == status
    assert flow.response.headers["content-type"] == "application/json"
    body = flow.response.json()
    if status == 404:
        assert body["type"] == "error" and "api.anthropic.com is unreachable" in \
            body["error"]["message"]
    assert any("answered" in r.getMessage() and path.split("?")[0] in r.getMessage()
               for r in caplog.records)


def test_a_side_call_is_passed_to_the_host_as_the_client_sent_it(listening_port):
    pooled = AccountConfig(id="pooled", provider="anthropic", fields={"api_key": "sk-pooled"})
    svc = services([pooled],
                   upstream_overrides={"api.anthropic.com": f"127.0.0.1:{listening_port}"})
    flow = through(svc, tunnel_flow(host="api.anthropic.com", method=b"GET",
                                    path="/api/claude_code/settings",
                                    headers=[("x-api-key", "sk-ant-own"),
                                             ("x-tokn-route-mode", "route")]))
    req = flow.request
    assert flow.response is None  # mitmproxy forwards it
    assert (req.host, req.port, req.scheme) == ("api.anthropic.com", 443, "https")
    assert req.headers["x-api-key"] == "sk-ant-own"  # the client's own, never the pool's
    assert "x-tokn-route-mode" not in req.headers and hop.INTERNAL not in req.headers


def test_a_side_call_without_credentials_is_not_passed_on(listening_port):
    svc = services(upstream_overrides={"api.anthropic.com": f"127.0.0.1:{listening_port}"})
    flow = through(svc, tunnel_flow(host="api.anthropic.com", method=b"GET",
                                    path="/api/claude_code/policy_limits"))
    assert flow.response.status_code == 404
    assert "no credentials" in flow.response.json()["error"]["message"]


def test_a_public_side_call_is_passed_on_without_credentials(listening_port):
    svc = services(upstream_overrides={"api.anthropic.com": f"127.0.0.1:{listening_port}"})
    flow = through(svc, tunnel_flow(host="api.anthropic.com", method=b"GET",
                                    path="/mcp-registry/v0/servers"))
    assert flow.response is None and flow.request.host == "api.anthropic.com"


def test_a_5xx_from_the_host_becomes_the_tables_answer(listening_port, caplog):
    svc = services(upstream_overrides={"api.anthropic.com": f"127.0.0.1:{listening_port}"})
    caplog.set_level(logging.INFO, "tokn")
    flow = through(svc, tunnel_flow(host="api.anthropic.com", method=b"GET",
                                    path="/api/claude_code/settings",
                                    headers=[("x-api-key", "sk-ant-own")]),
                   response=lambda: tutils.tresp(status_code=503))
    assert flow.response.status_code == 404  # Claude Code retries a 5xx 4 times
    assert any("the host answered 503" in r.getMessage() for r in caplog.records)


def test_a_host_answer_below_500_reaches_the_client(listening_port):
    svc = services(upstream_overrides={"api.anthropic.com": f"127.0.0.1:{listening_port}"})
    flow = through(svc, tunnel_flow(host="api.anthropic.com", method=b"GET",
                                    path="/api/claude_code/settings",
                                    headers=[("x-api-key", "sk-ant-own")]),
                   response=lambda: tutils.tresp(status_code=401))
    assert flow.response.status_code == 401


def test_unknown_paths_get_the_default_answer_in_the_callers_format(closed_port):
    svc = services(upstream_overrides={"api.openai.com": f"127.0.0.1:{closed_port}"})
    flow = through(svc, tunnel_flow(path="/v1/files", method=b"GET",
                                    headers=[("authorization", "Bearer sk-own")]))
    assert flow.response.status_code == 404
    error = flow.response.json()["error"]  # OpenAI's shape: the host's API
    assert error["type"] == "not_found_error"
    assert error["message"].startswith("tokn route mode does not serve /v1/files")


# --- WebSocket upgrades -------------------------------------------------------------
UPGRADE = [("upgrade", "websocket"), ("connection", "Upgrade"),
           ("sec-websocket-version", "13"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]


def _upgrade(mode: str, path: str = "/v1/responses"):
    return tunnel_flow(path=path, method=b"GET", body=b"",
                       headers=[*UPGRADE, ("authorization", "Bearer sk-own"),
                                ("x-tokn-route-mode", mode)])


def test_route_mode_hands_a_responses_websocket_to_the_listener():
    flow = through(services(), _upgrade("route"))
    req = flow.request
    assert flow.response is None
    assert (req.scheme, req.host, req.port, req.path) == ("http", *LISTENER, "/v1/responses")
    assert req.headers["upgrade"] == "websocket" and req.headers[hop.INTERNAL] == "s3cret"


def test_switch_mode_refuses_a_websocket_with_426():
    svc = services([AccountConfig(id="k", provider="openai", fields={"api_key": "sk-pooled"})])
    flow = through(svc, _upgrade("switch"))
    assert flow.response.status_code == 426  # Codex falls back to HTTPS at once
    assert flow.request.headers["authorization"] == "Bearer sk-own"  # no pooled key went


def test_passthrough_websocket_to_an_unreachable_host_is_426(closed_port):
    svc = services(upstream_overrides={"api.openai.com": f"127.0.0.1:{closed_port}"})
    flow = through(svc, _upgrade("passthrough"))
    assert flow.response.status_code == 426


def test_passthrough_websocket_to_a_reachable_host_is_relayed(listening_port):
    svc = services(upstream_overrides={"api.openai.com": f"127.0.0.1:{listening_port}"})
    flow = through(svc, _upgrade("passthrough"))
    assert flow.response is None and flow.request.host == "api.openai.com"
    assert flow.request.headers["authorization"] == "Bearer sk-own"


def test_route_mode_websocket_to_another_path_is_426_when_the_host_is_away(closed_port):
    svc = services(upstream_overrides={"api.openai.com": f"127.0.0.1:{closed_port}"})
    flow = through(svc, _upgrade("route", "/v1/realtime"))
    assert flow.response.status_code == 426


def test_what_was_found_of_a_host_is_remembered_for_a_while(closed_port):
    """A blackholed host would cost CONNECT_SECS on every side call: the first
    finding holds (here: the port listens by the second call, yet the answer
    is still the offline one, without a second connection attempt)."""
    svc = services(upstream_overrides={"api.anthropic.com": f"127.0.0.1:{closed_port}"})

    def side_call():
        return tunnel_flow(host="api.anthropic.com", method=b"GET",
                           path="/api/claude_code/settings",
                           headers=[("x-api-key", "sk-ant-own")])

    async def run():
        with taddons.context(*proxy_addons(svc)) as tctx:
            flows = []
            for step in range(2):
                if step == 1:
                    late.bind(("127.0.0.1", closed_port))
                    late.listen(1)
                flow = side_call()
                await tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
                await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))
                flows.append(flow)
            return flows

    with socket.socket() as late:
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        first, second = asyncio.run(run())
    assert first.response.status_code == second.response.status_code == 404
    assert "unreachable" in second.response.json()["error"]["message"]
