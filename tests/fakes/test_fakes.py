"""Self-tests of the fake upstreams, driven by httpx and the official SDKs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time

import anthropic
import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes import THINKING_SIGNATURE, FakeGitHub, FakeLLM, FakeServer
from tests.fakes.github import DEVICE_GRANT_TYPE

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


_CLIENTS: list = []


@pytest.fixture(autouse=True)
def _close_sdk_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


@pytest.fixture
def llm():
    with FakeLLM(path_prefix="/v1") as fake:
        yield fake
        assert not fake.handler_errors


def oai(fake: FakeLLM, key: str = "sk-test", **kw) -> openai.OpenAI:
    c = openai.OpenAI(base_url=fake.url + fake.path_prefix, api_key=key, max_retries=0, **kw)
    _CLIENTS.append(c)
    return c


def sse_data(lines: list[str]) -> list[object]:
    out = []
    for line in lines:
        if line.startswith("data: "):
            d = line[6:]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


# ---------------------------------------------------------------------------
# base
# ---------------------------------------------------------------------------
def test_base_capture_keepalive_reset_and_404():
    with FakeLLM() as fake, httpx.Client() as client:
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        for _ in range(2):
            r = client.post(
                fake.url + "/chat/completions?x=1",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                headers={"X-Initiator": "agent"},
            )
            assert r.status_code == 200
            assert r.headers["content-length"] == str(len(r.content))
        reqs = fake.requests
        assert len(reqs) == 2
        assert reqs[0].client == reqs[1].client  # same keep-alive connection
        req = reqs[-1]
        assert req.method == "POST" and req.path == "/chat/completions"
        assert req.query == {"x": ["1"]} and req.target == "/chat/completions?x=1"
        assert req.headers["x-initiator"] == "agent" == req.headers["X-INITIATOR"]
        assert ("X-Initiator", "agent") in req.headers.items()
        assert req.json["model"] == "m" and json.loads(req.body) == req.json
        assert req.meta["api"] == "chat" and req.meta["had_image"] is False
        assert fake.request_count["/chat/completions"] == 2
        assert fake.requests_to("/completions", "post") == reqs
        r = client.get(fake.url + "/nope")
        assert r.status_code == 404 and "error" in r.json()
        fake.reset()
        assert fake.requests == [] and not fake.request_count
        assert fake.reported_usage["count"] == 0


def _make_cert(tmp_path):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokn test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.openai.com")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("api.openai.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file, ca_file = tmp_path / "leaf.pem", tmp_path / "leaf.key", tmp_path / "ca.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    return server_ctx, ca_file


def test_https_with_test_ca(tmp_path):
    server_ctx, ca_file = _make_cert(tmp_path)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    with FakeLLM(path_prefix="/v1", ssl_context=server_ctx) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        r = httpx.get(fake.url + "/v1/models", verify=client_ctx)
        assert r.status_code == 200 and r.json()["object"] == "list"
        # as a MITM client would see it: SNI api.openai.com on the fake's port
        with (
            socket.create_connection(("127.0.0.1", fake.port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname="api.openai.com") as tls,
        ):
            cn = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
            assert cn == "api.openai.com"
        # a client not trusting the test CA fails the handshake, server survives
        with pytest.raises(httpx.ConnectError):
            httpx.get(fake.url + "/v1/models")
        r = httpx.get(fake.url + "/v1/models", verify=client_ctx)
        assert r.status_code == 200


def test_close_is_idempotent_and_start_lazily():
    fake = FakeServer()
    url = fake.url  # starts lazily
    assert httpx.get(url + "/x").status_code == 404
    fake.close()
    fake.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/x")


# ---------------------------------------------------------------------------
# GitHub
# ---------------------------------------------------------------------------
def test_device_flow_script():
    with FakeGitHub(
        client_id="Iv1.b507a08c87ecfe98",
        poll_script=["authorization_pending", "slow_down", "success"],
        interval=1,
    ) as gh:
        h = {"accept": "application/json"}
        r = httpx.post(
            gh.url + "/login/device/code",
            json={"client_id": "Iv1.b507a08c87ecfe98", "scope": "read:user"},
            headers=h,
        )
        dc = r.json()
        assert set(dc) >= {"device_code", "user_code", "verification_uri", "expires_in", "interval"}
        assert dc["interval"] == 1 and dc["verification_uri"] == "https://github.com/login/device"
        poll = {
            "client_id": "Iv1.b507a08c87ecfe98",
            "device_code": dc["device_code"],
            "grant_type": DEVICE_GRANT_TYPE,
        }
        answers = [
            httpx.post(gh.url + "/login/oauth/access_token", json=poll, headers=h) for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [200] * 4
        a0, a1, a2, a3 = (a.json() for a in answers)
        assert (
            a0["error"] == "authorization_pending" and a0["error_uri"] and a0["error_description"]
        )
        assert a1["error"] == "slow_down" and a1["interval"] == 6
        assert a2["access_token"].startswith("ghu_") and a2["token_type"] == "bearer"
        assert a2["scope"] == "read:user"
        assert a3["access_token"].startswith("ghu_")  # last entry repeats
        assert len(gh.poll_times) == 4 and gh.poll_times == sorted(gh.poll_times)
        assert gh.poll_answers == ["authorization_pending", "slow_down", "success", "success"]
        # form-encoded body and answer without Accept: application/json
        r = httpx.post(gh.url + "/login/oauth/access_token", data={**poll, "device_code": "bad"})
        assert r.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert "error=incorrect_device_code" in r.text


@pytest.mark.parametrize("outcome", ["expired_token", "access_denied"])
def test_device_flow_terminal_errors(outcome):
    with FakeGitHub(poll_script=[outcome]) as gh:
        h = {"accept": "application/json"}
        dc = httpx.post(gh.url + "/login/device/code", data={"client_id": "x"}, headers=h).json()
        r = httpx.post(
            gh.url + "/login/oauth/access_token",
            data={
                "client_id": "x",
                "device_code": dc["device_code"],
                "grant_type": DEVICE_GRANT_TYPE,
            },
            headers=h,
        )
        assert r.status_code == 200 and r.json()["error"] == outcome


def test_device_flow_enforce_interval():
    with FakeGitHub(
        poll_script=["authorization_pending", "success"], interval=1, enforce_interval=True
    ) as gh:
        h = {"accept": "application/json"}
        dc = httpx.post(gh.url + "/login/device/code", json={"client_id": "x"}, headers=h).json()
        poll = {"client_id": "x", "device_code": dc["device_code"], "grant_type": DEVICE_GRANT_TYPE}
        url = gh.url + "/login/oauth/access_token"
        assert httpx.post(url, json=poll, headers=h).json()["error"] == "authorization_pending"
        too_soon = httpx.post(url, json=poll, headers=h).json()
        assert too_soon["error"] == "slow_down" and too_soon["interval"] == 6


def test_copilot_token_exchange_user_and_quota():
    with FakeGitHub(token_ttl=120, copilot_api_url="http://127.0.0.1:9/") as gh:
        h = {"authorization": "token gho_abc", "accept": "application/json"}
        t1 = httpx.get(gh.url + "/copilot_internal/v2/token", headers=h).json()
        t2 = httpx.get(gh.url + "/copilot_internal/v2/token", headers=h).json()
        assert gh.exchange_count == 2 and t1["token"] != t2["token"]
        assert t1["token"].startswith("tid=") and f"exp={t1['expires_at']}" in t1["token"]
        assert abs(t1["expires_at"] - (time.time() + 120)) < 5 and t1["refresh_in"] == 60
        assert t1["endpoints"]["api"] == "http://127.0.0.1:9/" and t1["chat_enabled"] is True
        assert gh.is_valid_copilot_token(t1["token"]) and not gh.is_valid_copilot_token("nope")
        gh.revoke_copilot_tokens()
        assert not gh.is_valid_copilot_token(t2["token"])
        bad = httpx.get(gh.url + "/copilot_internal/v2/token", headers={"authorization": "token x"})
        assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
        assert gh.exchange_count == 2

        gh.set_quota("premium_interactions", entitlement=300, remaining=75)
        u = httpx.get(gh.url + "/copilot_internal/user", headers=h).json()
        assert u["copilot_plan"] == "individual" and u["quota_reset_date"]
        prem = u["quota_snapshots"]["premium_interactions"]
        assert prem["remaining"] == 75 and prem["percent_remaining"] == 25.0
        assert prem["unlimited"] is False and prem["overage_permitted"] is False
        assert u["quota_snapshots"]["chat"]["unlimited"] is True
        assert httpx.get(gh.url + "/user", headers=h).json()["login"] == "octocat"

    with FakeGitHub(valid_github_tokens={"gho_good"}) as gh:
        ok = httpx.get(gh.url + "/user", headers={"authorization": "token gho_good"})
        assert ok.status_code == 200
        assert (
            httpx.get(gh.url + "/user", headers={"authorization": "token gho_x"}).status_code == 401
        )


def test_github_and_copilot_fakes_together():
    with FakeLLM(copilot_style=True) as cop, FakeGitHub(token_ttl=60) as gh:
        cop.token_validator = gh.is_valid_copilot_token
        gh.copilot_api_url = cop.url
        tok = httpx.get(
            gh.url + "/copilot_internal/v2/token", headers={"authorization": "token ghu_1"}
        ).json()
        client = openai.OpenAI(
            base_url=tok["endpoints"]["api"], api_key=tok["token"], max_retries=0
        )
        _CLIENTS.append(client)
        assert (
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
            .choices[0]
            .message.content
            == "echo: x"
        )
        gh.revoke_copilot_tokens()
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )


# ---------------------------------------------------------------------------
# chat completions
# ---------------------------------------------------------------------------
def test_chat_sdk_nonstream_and_usage(llm):
    llm.cached_tokens = 2
    llm.reasoning_tokens = 1
    c = oai(llm)
    r = c.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"},
        ],
    )
    assert r.choices[0].message.content == "echo: hello world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len("be briefhello world") // 4 + 1
    assert r.usage.prompt_tokens_details.cached_tokens == 2
    assert r.usage.completion_tokens_details.reasoning_tokens == 1
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    u = llm.reported_usage
    assert u["count"] == 2
    assert u["input_tokens"] == r.usage.prompt_tokens + len("again") // 4 + 1
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert u["cached_tokens"] == 4 and u["reasoning_tokens"] == 2
    assert llm.requests[-1].headers["authorization"] == "Bearer sk-test"


def test_chat_stream_sdk_usage_only_when_asked(llm):
    c = oai(llm)
    msgs = [{"role": "user", "content": "one two three"}]
    chunks = list(c.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
        "echo: one two three"
    )
    assert all(ch.usage is None for ch in chunks) and all(ch.choices for ch in chunks)
    assert llm.reported_usage["count"] == 0  # nothing reported to the client
    chunks = list(
        c.chat.completions.create(
            model="gpt-4o", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert llm.reported_usage["count"] == 1


def test_chat_tools_stream_and_tool_result(llm):
    c = oai(llm)
    msgs = [{"role": "user", "content": "What's the Weather in Paris?"}]
    r = c.chat.completions.create(model="gpt-4o", messages=msgs, tools=[WEATHER_TOOL])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}

    with c.chat.completions.stream(model="gpt-4o", messages=msgs, tools=[WEATHER_TOOL]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert (
        json.loads(final.choices[0].message.tool_calls[0].function.arguments)["location"] == "Paris"
    )
    frags = [
        d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for d in _raw_chat_stream(
            llm, {"model": "gpt-4o", "messages": msgs, "tools": [WEATHER_TOOL]}
        )
        if isinstance(d, dict) and d["choices"] and "tool_calls" in d["choices"][0]["delta"]
    ]
    assert len([f for f in frags if f]) == 3

    follow = msgs + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r = c.chat.completions.create(model="gpt-4o", messages=follow, tools=[WEATHER_TOOL])
    assert r.choices[0].message.content == "tool said: sunny, 21C"


def _raw_chat_stream(fake: FakeLLM, body: dict, path: str | None = None) -> list[object]:
    path = path or fake.path_prefix + "/chat/completions"
    with httpx.stream("POST", fake.url + path, json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_data(list(r.iter_lines()))


def test_copilot_quirks_usage_chunk_and_tool_choice_index():
    with FakeLLM(copilot_style=True, copilot_quirks=True) as cop:
        body = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}
        events = _raw_chat_stream(cop, body)
        assert events[-1] == "[DONE]"
        assert events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] > 0
        body = {
            "model": "claude-sonnet-4",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [WEATHER_TOOL],
        }
        events = _raw_chat_stream(cop, body)
        tc = [
            (e["choices"][0]["index"], tcall["index"])
            for e in events
            if isinstance(e, dict) and e["choices"]
            for tcall in e["choices"][0]["delta"].get("tool_calls", [])
        ]
        assert tc and all(x == (1, 1) for x in tc)
        fin = [e for e in events if isinstance(e, dict) and e["choices"]][-1]["choices"][0]
        assert fin["finish_reason"] == "tool_calls" and fin["index"] == 1
        r = httpx.post(cop.url + "/chat/completions", json=body).json()
        assert [c["index"] for c in r["choices"]] == [0, 1]
        assert r["choices"][1]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_copilot_models_and_unsupported_api():
    with FakeLLM(copilot_style=True) as cop:
        models = httpx.get(cop.url + "/models").json()
        assert models["object"] == "list"
        by_id = {m["id"]: m for m in models["data"]}
        assert by_id["gpt-5-codex"]["supported_endpoints"] == ["/responses"]
        caps = by_id["gpt-4o"]["capabilities"]
        assert caps["limits"]["max_prompt_tokens"] and caps["supports"]["tool_calls"] is True
        r = httpx.post(
            cop.url + "/chat/completions",
            json={"model": "gpt-5-codex", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "unsupported_api_for_model"
        assert "/chat/completions" in r.json()["error"]["message"]
        r = httpx.post(cop.url + "/responses", json={"model": "gpt-5-codex", "input": "x"})
        assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "echo: x"


def test_copilot_header_enforcement_and_image_detection():
    with FakeLLM(copilot_style=True, enforce_copilot_headers=True) as cop:
        img = {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
        url = cop.url + "/chat/completions"
        r = httpx.post(url, json={"model": "gpt-4o", "messages": [img]})
        assert r.status_code == 400 and "Editor-Version" in r.text
        h = {"editor-version": "vscode/1.99.0"}
        r = httpx.post(url, json={"model": "gpt-4o", "messages": [img]}, headers=h)
        assert r.status_code == 400 and "Copilot-Vision-Request" in r.text
        h["copilot-vision-request"] = "true"
        r = httpx.post(url, json={"model": "gpt-4o", "messages": [img]}, headers=h)
        assert r.json()["choices"][0]["message"]["content"] == "echo: what is it"
        assert cop.requests[-1].meta["had_image"] is True and cop.image_request_count == 3


def test_chat_stream_arrival_timing():
    with FakeLLM(chunk_delay=0.15) as fake:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c d"}]}
        times = []
        t0 = time.monotonic()
        with httpx.stream("POST", fake.url + "/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    times.append(time.monotonic())
        total = time.monotonic() - t0
        assert len(times) == 5  # "echo:", " a", " b", " c", " d"
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(0.1 <= g <= 0.4 for g in gaps), gaps
        assert times[0] - t0 < 0.12  # the first delta is not held back
        assert total >= 0.6


# ---------------------------------------------------------------------------
# responses
# ---------------------------------------------------------------------------
def test_responses_sdk_nonstream_stream_and_tools(llm):
    c = oai(llm)
    r = c.responses.create(model="gpt-4o", input="hello there", instructions="sys")
    assert r.output_text == "echo: hello there" and r.status == "completed"
    assert r.usage.input_tokens == len("syshello there") // 4 + 1

    with c.responses.stream(model="gpt-4o", input="stream me") as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert final.output_text == "echo: stream me"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3

    with httpx.stream(
        "POST", llm.url + "/v1/responses", json={"model": "gpt-4o", "input": "a b", "stream": True}
    ) as raw:
        lines = list(raw.iter_lines())
    events = [e for e in sse_data(lines) if isinstance(e, dict)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [ln[7:] for ln in lines if ln.startswith("event: ")] == [e["type"] for e in events]

    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    r = c.responses.create(model="gpt-4o", input="weather in Paris?", tools=[tool])
    fc = [o for o in r.output if o.type == "function_call"][0]
    assert fc.name == "get_weather" and json.loads(fc.arguments)["location"] == "Paris"
    with c.responses.stream(model="gpt-4o", input="weather?", tools=[tool]) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["function_call"]
    r = c.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "weather?"},
            {
                "type": "function_call",
                "call_id": fc.call_id,
                "name": "get_weather",
                "arguments": fc.arguments,
            },
            {"type": "function_call_output", "call_id": fc.call_id, "output": "rainy"},
        ],
        tools=[tool],
    )
    assert r.output_text == "tool said: rainy"


# ---------------------------------------------------------------------------
# anthropic messages
# ---------------------------------------------------------------------------
@pytest.fixture
def claude():
    with FakeLLM(formats={"messages"}, path_prefix="/v1", auth={"sk-ant-test"}) as fake:
        yield fake
        assert not fake.handler_errors


def ant(fake: FakeLLM, key: str = "sk-ant-test") -> anthropic.Anthropic:
    c = anthropic.Anthropic(base_url=fake.url, api_key=key, max_retries=0)
    _CLIENTS.append(c)
    return c


def test_messages_nonstream_stream_thinking(claude):
    c = ant(claude)
    claude.cached_tokens = 1
    m = c.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system="sys",
        messages=[{"role": "user", "content": "hi claude"}],
    )
    assert m.content[0].text == "echo: hi claude" and m.stop_reason == "end_turn"
    assert m.usage.input_tokens == len("syshi claude") // 4 + 1 - 1
    assert m.usage.cache_read_input_tokens == 1
    assert claude.requests[-1].headers["x-api-key"] == "sk-ant-test"

    with c.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think hard"}],
    ) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == THINKING_SIGNATURE
    assert final.content[1].text == "echo: think hard"
    assert final.usage.output_tokens == len("echo: think hard") // 4 + 1

    with httpx.stream(
        "POST",
        claude.url + "/v1/messages",
        headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
        json={
            "model": "c",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ) as raw:
        names = [ln[7:] for ln in raw.iter_lines() if ln.startswith("event: ")]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]

    # the signature comes back in the next turn untouched
    c.messages.create(
        model="c",
        max_tokens=5,
        messages=[
            {"role": "user", "content": "think hard"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": "more"},
        ],
    )
    assert claude.requests[-1].meta["thinking_signatures"] == [THINKING_SIGNATURE]


def test_messages_tools_count_tokens_models_and_errors(claude):
    c = ant(claude)
    tool = {"name": "get_weather", "input_schema": {"type": "object"}}
    with c.messages.stream(
        model="c",
        max_tokens=50,
        tools=[tool],
        messages=[{"role": "user", "content": "weather in Paris"}],
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = final.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input["location"] == "Paris"
    m = c.messages.create(
        model="c",
        max_tokens=50,
        tools=[tool],
        messages=[
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "cloudy"}],
            },
        ],
    )
    assert m.content[0].text == "tool said: cloudy"

    n = c.messages.count_tokens(model="c", messages=[{"role": "user", "content": "12345678"}])
    assert n.input_tokens == 3

    page = c.models.list()
    assert [x.id for x in page.data] == ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]
    raw = httpx.get(claude.url + "/v1/models", headers={"x-api-key": "sk-ant-test"}).json()
    assert raw["has_more"] is False and raw["first_id"] == "claude-sonnet-4-20250514"

    with pytest.raises(anthropic.AuthenticationError) as err:
        ant(claude, "wrong").messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.body["error"]["type"] == "authentication_error"

    claude.fail_next(529)
    with pytest.raises(anthropic.APIStatusError) as err:
        c.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 529
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "overloaded_error"


def test_copilot_serves_v1_messages_without_prefix():
    with FakeLLM(copilot_style=True) as cop:
        m = ant(cop, "tok").messages.create(
            model="claude-sonnet-4", max_tokens=5, messages=[{"role": "user", "content": "yo"}]
        )
        assert m.content[0].text == "echo: yo"
        assert cop.request_count["/v1/messages"] == 1


# ---------------------------------------------------------------------------
# embeddings, models, auth
# ---------------------------------------------------------------------------
def test_embeddings_deterministic(llm):
    c = oai(llm)
    r = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # base64 by default
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == pytest.approx(llm.vector_for("a"))
    r2 = c.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert r2.data[0].embedding == llm.vector_for("a")
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens == 2


def test_openai_models_and_auth():
    with FakeLLM(path_prefix="/api/paas/v4", auth={"good"}, formats={"chat"}) as z:
        c = oai(z, "good")
        assert [m.id for m in c.models.list()] == [
            "gpt-4o",
            "gpt-4o-mini",
            "text-embedding-3-small",
        ]
        with pytest.raises(openai.AuthenticationError) as err:
            oai(z, "bad").chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        assert err.value.body["code"] == "invalid_api_key"
        # a format that is not served is a 404
        assert (
            httpx.post(
                z.url + "/api/paas/v4/responses", json={}, headers={"authorization": "Bearer good"}
            ).status_code
            == 404
        )
    with FakeLLM(token_validator=lambda tok, req: tok == "v") as f:
        assert (
            httpx.get(f.url + "/models", headers={"authorization": "Bearer v"}).status_code == 200
        )
        assert httpx.get(f.url + "/models").status_code == 401


# ---------------------------------------------------------------------------
# failure modes
# ---------------------------------------------------------------------------
def test_fail_next_shapes_retry_after_and_count(llm):
    c = oai(llm)
    llm.fail_next(429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.body["code"] == "rate_limit_exceeded"
    llm.fail_next(500, count=2)
    assert c.models.list().data  # GET /models is not hit by default
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    llm.fail_next(403, body="<html>forbidden</html>", endpoint="/responses")
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    r = httpx.post(llm.url + "/v1/responses", json={"model": "m", "input": "x"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert llm.pending_failures() == 0


def test_slow_mode(llm):
    llm.mode = "slow"
    llm.slow_delay = 0.3
    t0 = time.monotonic()
    r = httpx.post(
        llm.url + "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            llm.url + "/v1/chat/completions",
            timeout=0.1,
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )


def test_drop_mid_stream(llm):
    llm.mode = "drop_mid_stream"
    llm.drop_after = 2
    got = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            llm.url + "/v1/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "a b c d e"}],
            },
        ) as r,
    ):
        for line in r.iter_lines():
            got.append(line)
    assert len([g for g in got if g.startswith("data: ")]) == 2
    with pytest.raises(openai.APIConnectionError):
        oai(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    # the SDK lets a mid-stream transport error through unwrapped
    with (
        pytest.raises((anthropic.APIConnectionError, httpx.RemoteProtocolError)),
        ant(llm, "k").messages.stream(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as s,
    ):
        s.get_final_message()
    assert llm.reported_usage["count"] == 0
    llm.mode = None
    assert oai(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_concurrent_streams_are_independent():
    with FakeLLM(chunk_delay=0.1) as fake:
        results: list[str] = []

        def run(i: int) -> None:
            body = {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": f"n{i} x y"}],
            }
            events = _raw_chat_stream(fake, body, "/chat/completions")
            results.append(
                "".join(
                    e["choices"][0]["delta"].get("content") or ""
                    for e in events
                    if isinstance(e, dict) and e["choices"]
                )
            )

        t0 = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == [f"echo: n{i} x y" for i in range(5)]
        assert time.monotonic() - t0 < 1.5  # ran in parallel (each takes ~0.3 s)


def test_chunked_request_body_is_read():
    with FakeLLM() as fake:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "chunky"}]})

        def gen():
            yield body[:10].encode()
            yield body[10:].encode()

        r = httpx.post(
            fake.url + "/chat/completions",
            content=gen(),
            headers={"content-type": "application/json"},
        )
        assert r.json()["choices"][0]["message"]["content"] == "echo: chunky"
        assert fake.last_request.headers["transfer-encoding"] == "chunked"
