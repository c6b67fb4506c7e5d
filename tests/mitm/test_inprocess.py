"""Route mode's in-process hop (tokn.mitm.inprocess): a routed flow that needs
no stream is answered by the listener's app without a loopback connection;
streams keep the socket hop.  Unit tests against a recording ASGI app, then the
real proxy and listener."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

import httpx
import pytest
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons

from tests.fakes.llm import FakeLLM
from tests.helpers import account, proxied_client, running_tokn, wait_for_rows, write_config
from tests.mitm.test_addons import LISTENER, services, tunnel_flow
from tokn import hop, wire
from tokn.mitm import inprocess
from tokn.mitm.addons import proxy_addons
from tokn.mitm.router import Router

CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'


class Recorder:
    """An ASGI app answering 200 with a JSON body, keeping what it was given."""

    def __init__(self, *, wait_for_disconnect: bool = False, fail: bool = False) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.received: list[str] = []
        self.wait_for_disconnect = wait_for_disconnect
        self.fail = fail
        self.started = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        message = await receive()
        self.bodies.append(message["body"])
        self.started.set()
        if self.fail:
            raise RuntimeError("boom")
        if self.wait_for_disconnect:
            self.received.append((await receive())["type"])
            return
        body = b'{"ok":true}'
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-served", b"yes")]})
        await send({"type": "http.response.body", "body": body[:4], "more_body": True})
        await send({"type": "http.response.body", "body": body[4:]})


def live(flow: Any) -> Any:
    flow.client_conn.timestamp_end = None  # mitmproxy's test flows are closed ones
    return flow


def run(app: Recorder, flow: Any) -> Any:
    live(flow)
    svc = services()
    svc.app = app

    async def go() -> Any:
        with taddons.context(*proxy_addons(svc)) as tctx:
            await tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
            await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))
        return flow

    return asyncio.run(go())


def test_a_non_stream_route_flow_is_answered_by_the_app_with_the_hop_labels():
    app = Recorder()
    flow = run(app, tunnel_flow(path="/chat/completions?x=%41", body=CHAT,
                                headers=[("authorization", "Bearer sk-client")]))
    assert flow.response is not None and flow.response.status_code == 201
    assert flow.response.content == b'{"ok":true}'
    assert flow.response.headers["content-length"] == "11"  # framed once, whole
    assert flow.response.headers["x-served"] == "yes"
    [scope] = app.scopes
    headers = dict(scope["headers"])
    assert (scope["method"], scope["path"], scope["query_string"]) == \
        ("POST", "/v1/chat/completions", b"x=%41")
    assert scope["server"] == LISTENER
    assert headers[hop.INTERNAL.encode()] == b"s3cret"
    assert headers[hop.FRONT_DOOR.encode()] == b"proxy"
    assert headers[hop.ROUTE_MODE.encode()] == b"route"
    assert headers[hop.CLIENT.encode()] == b"127.0.0.1:22"  # the proxy's client
    assert headers[b"authorization"] == b"Bearer sk-client"
    assert all(name == name.lower() for name in headers)
    assert app.bodies == [CHAT]


@pytest.mark.parametrize("path,body,headers", [
    ("/v1/chat/completions", b'{"model":"gpt-4o","stream": true}', []),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", b"{}", []),
    ("/v1/chat/completions", gzip.compress(CHAT), [("content-encoding", "gzip")]),
])
def test_what_may_stream_keeps_the_socket_hop(path, body, headers):
    host = "generativelanguage.googleapis.com" if "gemini" in path else "api.openai.com"
    app = Recorder()
    flow = run(app, tunnel_flow(host=host, path=path, body=body, headers=headers))
    assert flow.response is None and app.scopes == []
    assert (flow.request.host, flow.request.port) == LISTENER


@pytest.mark.parametrize("body,in_process", [
    (b'{"stream":false}', True),
    (b'{"stream" : null\n}', True),
    (b'{"stream": 0, "model": "m"}', True),
    (b'{"messages":[{"content":"say \\"stream\\": true"}]}', True),  # inside a string
    (b'{"stream":true}', False),
    (b'{"stream" :\n true}', False),
    (b'{"stream": 1}', False),  # truthy: the pipeline streams it
    (b'{"model":"m","stream":"yes"}', False),
])
def test_a_body_that_may_ask_for_a_stream_is_never_answered_in_process(body, in_process):
    req = tunnel_flow(body=body).request
    assert inprocess.suits(req, wire.CHAT, {}) is in_process


def test_a_client_hanging_up_reaches_the_app_as_a_disconnect():
    app = Recorder(wait_for_disconnect=True)
    svc = services()
    svc.app = app
    flow = live(tunnel_flow(body=CHAT))

    async def go() -> None:
        with taddons.context(*proxy_addons(svc)) as tctx:
            addons = tctx.master.addons
            await addons.handle_lifecycle(HttpRequestHeadersHook(flow))
            pending = asyncio.create_task(addons.handle_lifecycle(HttpRequestHook(flow)))
            await asyncio.wait_for(app.started.wait(), 5)
            assert not pending.done()
            router = next(a for a in addons.chain if isinstance(a, Router))
            router.client_disconnected(flow.client_conn)
            await asyncio.wait_for(pending, 5)
            assert router._clients == {}

    asyncio.run(go())
    assert app.received == ["http.disconnect"]


def test_an_app_failure_is_a_500_in_the_callers_format():
    flow = run(Recorder(fail=True), tunnel_flow(host="api.anthropic.com", path="/v1/messages",
                                                body=b'{"model":"claude"}'))
    assert flow.response.status_code == 500
    body = json.loads(flow.response.content)
    assert body["type"] == "error" and "unexpected error" in body["error"]["message"]


# --- the real proxy and listener -----------------------------------------------------

def test_route_mode_answers_without_the_loopback_listener_and_records_the_row():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        write_config({"accounts": [account("a", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        with running_tokn(with_proxy=True, listener_public=False) as tokn:
            services = tokn.runtime.proxy.services
            services.listener = ("127.0.0.1", 9)  # nothing listens: only a socket hop needs it
            with proxied_client(tokn.proxy_url, timeout=30) as client:
                url = "https://api.openai.com/v1/chat/completions"
                body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
                resp = client.post(url, json=body)
                assert resp.status_code == 200, resp.text
                assert resp.json()["choices"][0]["message"]["content"] == "echo: hi"
                # a stream still goes over the socket (here: to nothing, hence the 502)
                assert client.post(url, json={**body, "stream": True}).status_code == 502
            rows = wait_for_rows(1)
    [row] = rows
    assert (row["front_door"], row["route_mode"], row["status"]) == ("proxy", "route", 200)
    assert row["client"].startswith("127.0.0.1:") and not row["client"].endswith(":0")


def test_a_client_giving_up_in_route_mode_cancels_the_work_and_gets_a_499_row():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        write_config({"accounts": [account("a", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        fake.mode, fake.slow_delay = "slow", 3.0
        with running_tokn(with_proxy=True, listener_public=False) as tokn:
            tokn.runtime.proxy.services.listener = ("127.0.0.1", 9)  # in process only
            with proxied_client(tokn.proxy_url, timeout=0.5) as client, \
                    pytest.raises(httpx.ReadTimeout):
                client.post("https://api.openai.com/v1/chat/completions",
                            json={"model": "gpt-4o",
                                  "messages": [{"role": "user", "content": "slow"}]})
            started = time.monotonic()
            rows = wait_for_rows(1)
    [row] = rows
    assert row["status"] == 499, row
    assert row["error"] == "client closed the connection before the answer was complete"
    assert row["latency_ms"] < 2500  # not the upstream's 3 s: the work was cancelled
    assert time.monotonic() - started < 2.5


def test_an_http2_client_gets_the_in_process_answer():
    """curl offers h2 first in ALPN (httpx offers HTTP/1.1 first), and mitmproxy follows."""
    import subprocess

    from tokn.ca import ensure_ca

    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        write_config({"accounts": [account("a", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        with running_tokn(with_proxy=True, listener_public=False) as tokn:
            tokn.runtime.proxy.services.listener = ("127.0.0.1", 9)  # in process only
            out = subprocess.run(
                ["curl", "-sS", "--http2", "-x", tokn.proxy_url, "--cacert",
                 str(ensure_ca().cert_path), "-w", "\n%{http_version} %{http_code}",
                 "-H", "content-type: application/json", "--data",
                 '{"model":"gpt-4o","messages":[{"role":"user","content":"h2"}]}',
                 "https://api.openai.com/v1/chat/completions"],
                capture_output=True, text=True, timeout=60)
    body, _, status = out.stdout.rpartition("\n")
    assert status == "2 200", out
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: h2"
