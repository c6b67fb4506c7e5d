"""The Responses API over a WebSocket (``/v1/responses``), as Codex speaks it
(openai/codex, codex-rs responses_websocket): a real ``websockets`` client
against the listener and through the proxy in route mode."""

from __future__ import annotations

import json
import ssl
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, proxy_env, running_tokn, usage_rows, write_config
from tokn.ca import ensure_ca
from tokn.config import load_config


def _config(fake: FakeLLM, **server) -> None:
    write_config({"server": server, "accounts": [
        account("pool", "openai-compatible", base_url=fake.url + "/v1", api_key="sk-pool",
                settings={"formats": ["chat"]})]})  # the account speaks chat: converted


def _ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/v1/responses"


def _turn(ws, **body) -> list[dict]:
    """Send one response.create; the events until response.completed (or an error)."""
    ws.send(json.dumps({"type": "response.create", **body}))
    events = []
    while True:
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error"):
            return events


def _text(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _user(text: str) -> list[dict]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                              "text": text}]}]


def _rows(tokn, n: int) -> list[dict]:
    """The usage rows once there are ``n`` (a request's row is recorded as its
    stream closes, just after its last event went out), or after 15 s."""
    deadline = time.monotonic() + 15
    while True:
        tokn.runtime.usage.flush()
        rows = usage_rows(tokn.runtime.usage.path)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture
def fake():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-5"]) as llm:
        yield llm


def test_listener_serves_response_create_as_websocket_messages(fake):
    _config(fake)
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        events = _turn(ws, model="gpt-5", input=_user("hello there"), stream=True)
        again = _turn(ws, model="gpt-5", input=_user("second"))  # the same connection
        rows = _rows(tokn, 2)  # a row is recorded as its stream closes, after its last event
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_item.done" in kinds
    assert _text(events) == "echo: hello there" and _text(again) == "echo: second"
    assert events[-1]["response"]["usage"]["output_tokens"] > 0
    assert [(r["front_door"], r["route_mode"], r["inbound_format"], r["upstream_format"],
             r["status"]) for r in rows] == [("listener", "route", "responses", "chat", 200)] * 2


def test_previous_response_id_continues_the_connections_conversation(fake):
    _config(fake)
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        first = _turn(ws, model="gpt-5", input=_user("one"))
        rid = first[-1]["response"]["id"]
        # Codex sends only the new items on a reused connection
        second = _turn(ws, model="gpt-5", previous_response_id=rid, input=_user("two"))
        unknown = _turn(ws, model="gpt-5", previous_response_id="resp_nope", input=_user("x"))
        after = _turn(ws, model="gpt-5", input=_user("three"))  # still open
    assert _text(second) == "echo: two"
    sent = fake.requests_to("/chat/completions", "POST")[1].json["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "one"), ("assistant", "echo: one"), ("user", "two")]
    assert unknown == [{"type": "error", "status": 400, "error": unknown[0]["error"]}]
    assert unknown[0]["error"]["code"] == "previous_response_not_found"
    assert _text(after) == "echo: three"


def test_warmup_and_acknowledgements_call_no_model(fake):
    _config(fake)
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        warm = _turn(ws, model="gpt-5", input=[], generate=False)
        ws.send(json.dumps({"type": "response.processed", "response_id": "resp_x"}))
        events = _turn(ws, model="gpt-5", input=_user("now"))
    assert [e["type"] for e in warm] == ["response.created", "response.completed"]
    assert _text(events) == "echo: now"
    assert len(fake.requests_to("/chat/completions", "POST")) == 1


def test_errors_are_wrapped_error_events_and_the_connection_stays(fake):
    _config(fake)
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        ws.send("not json")
        bad = json.loads(ws.recv(timeout=10))
        no_model = _turn(ws, input=_user("x"))
        fine = _turn(ws, model="gpt-5", input=_user("ok"))
    assert bad["type"] == "error" and bad["status"] == 400
    # the shape Codex maps to an HTTP error of that status
    assert no_model[-1]["type"] == "error" and no_model[-1]["status"] == 400
    assert "model" in no_model[-1]["error"]["message"]
    assert _text(fine) == "echo: ok"


def test_the_upgrade_needs_the_api_key_and_refuses_web_origins(fake):
    _config(fake, api_key="sk-tokn-key")
    with running_tokn(api_key="sk-tokn-key") as tokn:
        with pytest.raises(InvalidStatus) as no_key:
            connect(_ws_url(tokn.api_url), proxy=None)
        with pytest.raises(InvalidStatus) as web:
            connect(_ws_url(tokn.api_url), proxy=None, origin="https://evil.example",
                    additional_headers={"authorization": "Bearer sk-tokn-key"})
        with connect(_ws_url(tokn.api_url), proxy=None,
                     additional_headers={"authorization": "Bearer sk-tokn-key"}) as ws:
            assert _text(_turn(ws, model="gpt-5", input=_user("hi"))) == "echo: hi"
    assert no_key.value.response.status_code == 401
    assert web.value.response.status_code == 403  # a web page may not open one
    assert not [r for r in fake.requests if r.method == "POST"][1:]


def test_route_mode_serves_the_websocket_through_the_proxy(fake):
    port = free_port()
    write_config({"proxy_mode": {"port": port}, "accounts": [
        account("pool", "openai-compatible", base_url=fake.url + "/v1", api_key="sk-pool",
                settings={"formats": ["chat"]})]})
    env = proxy_env()
    ca = ssl.create_default_context(cafile=str(ensure_ca(load_config()).cert_path))
    with running_tokn(with_proxy=True, proxy_port=port) as tokn, \
            connect("wss://api.openai.com/v1/responses", proxy=env["HTTPS_PROXY"], ssl=ca,
                    additional_headers={"authorization": "Bearer sk-client"}) as ws:
        events = _turn(ws, model="gpt-5", input=_user("via the proxy"))
        rows = _rows(tokn, 1)
    assert _text(events) == "echo: via the proxy"
    assert [(r["front_door"], r["route_mode"], r["status"]) for r in rows] == [
        ("proxy", "route", 200)]
    assert fake.requests_to("/chat/completions", "POST")[0].bearer() == "sk-pool"


def test_a_message_larger_than_the_body_limit_closes_the_connection(fake):
    write_config({"server": {"max_body_mb": 0.01}, "accounts": [
        account("pool", "openai-compatible", base_url=fake.url + "/v1", api_key="sk-pool",
                settings={"formats": ["chat"]})]})
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5",
                            "input": _user("x" * 20000)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert not fake.requests_to("/chat/completions", "POST")


def test_a_message_nested_too_deep_is_refused(fake):
    _config(fake)
    nested: dict = {}
    for _ in range(200):
        nested = {"a": nested}
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5", "metadata": nested}))
        refused = json.loads(ws.recv(timeout=10))
    assert refused["type"] == "error" and refused["error"]["code"] == "too_deep"


def test_an_unexpected_error_is_an_error_message_a_log_line_and_a_row(fake, monkeypatch,
                                                                      caplog):
    from tokn.pipeline import Pipeline

    async def broken(self, inbound):
        raise RuntimeError("kaput")

    _config(fake)
    with running_tokn() as tokn, connect(_ws_url(tokn.api_url), proxy=None) as ws:
        monkeypatch.setattr(Pipeline, "handle", broken)
        failed = _turn(ws, model="gpt-5", input=_user("x"))
        monkeypatch.undo()
        fine = _turn(ws, model="gpt-5", input=_user("after"))
        rows = _rows(tokn, 2)
    assert failed[-1]["type"] == "error" and failed[-1]["status"] == 500
    assert "RuntimeError: kaput" in failed[-1]["error"]["message"]
    assert _text(fine) == "echo: after"
    assert [r["status"] for r in rows] == [500, 200]
    assert "kaput" in rows[0]["error"]
    assert any("unexpected error on a WebSocket" in r.getMessage() for r in caplog.records)


def test_the_upgrades_own_headers_stay_behind():
    from tokn.server.responses_ws import request_headers

    headers = [("Host", "api.openai.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Extensions", "permessage-deflate"),
               ("OpenAI-Beta", "responses_websockets=2026-02-06"),
               ("x-tokn-internal", "secret"), ("Authorization", "Bearer sk"),
               ("session_id", "s1")]
    assert request_headers(headers, ("x-tokn-internal",)) == {
        "authorization": "Bearer sk", "session_id": "s1"}
    both = request_headers([("openai-beta", "assistants=v2, responses_websockets=2026-02-06")],
                           ())
    assert both == {"openai-beta": "assistants=v2"}
