"""CopilotProvider against FakeGitHub (token exchange) and FakeLLM (Copilot API)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from typing import Any

import httpx
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeLLM
from tokn import paths, state
from tokn.config import AccountConfig
from tokn.errors import ToknError
from tokn.providers import provider_class
from tokn.providers.copilot import DEFAULT_API_BASE, CopilotProvider

GH_TOKEN = "ghu_testtoken0123456789"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.fixture
def github():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def llm(github):
    with FakeLLM(copilot_style=True, enforce_copilot_headers=True,
                 token_validator=github.is_valid_copilot_token) as fake:
        github.copilot_api_url = fake.url
        yield fake


def account(github: FakeGitHub, **kw: Any) -> AccountConfig:
    fields = {"github_token": GH_TOKEN, "github_api_url": github.url, **kw.pop("fields", {})}
    return AccountConfig(id=kw.pop("id", "cop"), provider="github-copilot", fields=fields, **kw)


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def run(coro_fn, acc: AccountConfig, *, clock=None, transport=None):
    """Run ``coro_fn(provider)`` with a fresh client (asyncio only at the test edge)."""
    async def main():
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            provider = CopilotProvider(acc, client, **({"clock": clock} if clock else {}))
            return await coro_fn(provider)

    return asyncio.run(main())


def chat(messages, **extra) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": messages, **extra}


async def send_json(provider, fmt, body, inbound=None):
    resp = await provider.send(fmt, body, inbound or {}, stream=False)
    raw = await resp.read()
    await resp.aclose()
    return resp.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()


# --- registry --------------------------------------------------------------------------

def test_registered_under_both_ids():
    assert provider_class("github-copilot") is CopilotProvider
    assert provider_class("copilot") is CopilotProvider
    assert CopilotProvider.env_vars == ("GH_TOKEN", "GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN")


# --- token exchange, cache, refresh margin ------------------------------------------------

def test_exchange_request_and_state_cache(github):
    acc = account(github)

    async def go(p):
        first = await p.credentials()
        second = await p.credentials()
        return first, second

    first, second = run(go, acc)
    assert first == second
    assert first["authorization"] == f"Bearer {github.last_copilot_token}"
    assert github.exchange_count == 1
    req = github.requests_to("/copilot_internal/v2/token")[0]
    assert req.headers["authorization"] == f"token {GH_TOKEN}"
    assert req.headers["editor-version"].startswith("vscode/")
    assert req.headers["editor-plugin-version"].startswith("copilot-chat/")
    # 0600 state file, token bound to the GitHub token
    path = paths.state_dir() / "copilot-tokens.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cached = state.read("copilot-tokens")["cop"]
    assert cached["token"] == github.last_copilot_token
    assert GH_TOKEN not in path.read_text()
    # a new provider instance (new process) reuses the cached token
    run(lambda p: p.credentials(), acc)
    assert github.exchange_count == 1
    # ... unless the GitHub token changed
    other = account(github, fields={"github_token": "ghu_another_token_999"})
    run(lambda p: p.credentials(), other)
    assert github.exchange_count == 2


def test_refresh_ahead_of_expiry_with_five_minute_margin(github):
    github.token_ttl = 1800
    github.refresh_in = 1700          # later than the margin allows: the margin wins
    clock = Clock()

    async def go(p):
        await p.credentials()
        clock.offset = 1490           # expires in 310 s: still fresh
        await p.credentials()
        n_before = github.exchange_count
        clock.offset = 1510           # inside the 5-minute margin: refresh
        await p.credentials()
        return n_before

    assert run(go, account(github), clock=clock) == 1
    assert github.exchange_count == 2


def test_refresh_in_earlier_than_margin_is_honoured(github):
    github.token_ttl = 1800
    github.refresh_in = 600
    clock = Clock()

    async def go(p):
        await p.credentials()
        clock.offset = 590
        await p.credentials()
        assert github.exchange_count == 1
        clock.offset = 610
        await p.credentials()

    run(go, account(github), clock=clock)
    assert github.exchange_count == 2


def test_short_lived_token_refreshes_at_half_life_not_every_call(github):
    github.token_ttl = 120            # shorter than the margin
    clock = Clock()

    async def go(p):
        for _ in range(5):
            await p.credentials()
        assert github.exchange_count == 1
        clock.offset = 70
        await p.credentials()

    run(go, account(github), clock=clock)
    assert github.exchange_count == 2


def test_single_flight_50_concurrent_callers_one_exchange(github):
    github.mode = "slow"
    github.slow_delay = 0.2           # the exchange is in flight while everyone waits
    clock = Clock()

    async def go(p):
        tokens = await asyncio.gather(*(p.credentials() for _ in range(50)))
        assert github.exchange_count == 1
        clock.offset = 1790           # expired (well past the refresh point)
        again = await asyncio.gather(*(p.credentials() for _ in range(50)))
        return tokens, again

    tokens, again = run(go, account(github), clock=clock)
    assert github.exchange_count == 2
    assert len({t["authorization"] for t in tokens}) == 1
    assert len({t["authorization"] for t in again}) == 1
    assert again[0] != tokens[0]


def test_forced_refresh_exchanges_but_concurrent_forced_refreshes_collapse(github):
    github.mode = "slow"
    github.slow_delay = 0.1

    async def go(p):
        await p.credentials()
        await p.credentials(refresh=True)          # forced: a new exchange
        assert github.exchange_count == 2
        await asyncio.gather(*(p.credentials(refresh=True) for _ in range(20)))

    run(go, account(github))
    assert github.exchange_count == 3


@pytest.mark.parametrize(("status", "needle", "code"), [
    (401, "GitHub token for account cop was rejected; run `tokn login --id cop`",
     "github_token_rejected"),
    (403, "no Copilot subscription", "copilot_not_enabled"),
    (404, "not enabled", "copilot_not_enabled"),
    (500, "Copilot token exchange for account cop failed", "token_exchange_failed"),
])
def test_exchange_errors_are_clear(github, status, needle, code):
    github.fail_next(status, endpoint="/copilot_internal/v2/token")
    with pytest.raises(ToknError) as info:
        run(lambda p: p.credentials(), account(github))
    assert needle in info.value.message
    assert info.value.code == code


def test_rejected_github_token(github):
    github.valid_github_tokens = {"ghu_only_this_one"}
    with pytest.raises(ToknError, match="was rejected; run `tokn login --id cop`"):
        run(lambda p: p.credentials(), account(github))


def test_missing_github_token_and_unreachable():
    acc = AccountConfig(id="x", provider="github-copilot")
    with pytest.raises(ToknError, match="no github_token"):
        run(lambda p: p.credentials(), acc)

    def refuse(request):
        raise httpx.ConnectError("refused")

    acc = AccountConfig(id="x", provider="github-copilot", fields={"github_token": GH_TOKEN})
    with pytest.raises(ToknError, match="cannot reach https://api.github.com/copilot_internal"):
        run(lambda p: p.credentials(), acc, transport=httpx.MockTransport(refuse))


# --- API base selection -----------------------------------------------------------------

def _token_transport(endpoints: dict | None, seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = {"token": "tid=1;exp=9", "expires_at": int(time.time()) + 1800,
                "refresh_in": 1500}
        if endpoints is not None:
            body["endpoints"] = endpoints
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def test_api_base_selection():
    seen: list[str] = []
    acc = AccountConfig(id="a", provider="github-copilot", fields={"github_token": GH_TOKEN})
    # default when the token has no endpoints.api
    assert run(lambda p: p.base_url(), acc,
               transport=_token_transport(None, seen)) == DEFAULT_API_BASE
    assert seen == ["https://api.github.com/copilot_internal/v2/token"]
    # endpoints.api from the token response (a new exchange: the cached token,
    # in this process's memory and the state file, dropped)
    CopilotProvider.forget_tokens("a")
    api = "https://api.business.githubcopilot.com"
    assert run(lambda p: p.base_url(), acc,
               transport=_token_transport({"api": api + "/"}, seen)) == api
    # the account override wins (and needs no exchange)
    acc.base_url = "https://copilot.proxy.example/"
    seen.clear()
    assert run(lambda p: p.base_url(), acc,
               transport=_token_transport({"api": api}, seen)) == "https://copilot.proxy.example"
    assert seen == []


def test_url_overrides():
    acc = AccountConfig(id="a", provider="github-copilot", fields={"github_token": GH_TOKEN})
    p = CopilotProvider(acc, None)  # type: ignore[arg-type]
    assert p.token_url == "https://api.github.com/copilot_internal/v2/token"
    acc.fields["github_base_url"] = "https://ghe.corp.example"
    assert p.token_url == "https://ghe.corp.example/api/v3/copilot_internal/v2/token"
    acc.settings["github_api_url"] = "http://127.0.0.1:9/"
    assert p.token_url == "http://127.0.0.1:9/copilot_internal/v2/token"
    acc.refresh_url = "http://127.0.0.1:8/tok"
    assert p.token_url == "http://127.0.0.1:8/tok"


def test_endpoints_api_routes_requests_to_fake(github, llm):
    status, body = run(lambda p: send_json(p, "chat", chat([{"role": "user", "content": "hi"}])),
                       account(github))
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi"
    assert llm.requests_to("/chat/completions")


# --- 401 -> one refresh, retry -------------------------------------------------------------

def test_upstream_401_refreshes_once_and_retries(github, llm):
    llm.fail_next(401, endpoint="/chat/completions")

    status, _ = run(lambda p: send_json(p, "chat", chat([{"role": "user", "content": "x"}])),
                    account(github))
    assert status == 200
    assert github.exchange_count == 2
    reqs = llm.requests_to("/chat/completions")
    assert len(reqs) == 2
    assert reqs[0].bearer() != reqs[1].bearer() == github.last_copilot_token


def test_persistent_401_is_retried_only_once(github, llm):
    llm.fail_next(401, count=5, endpoint="/chat/completions")
    status, _ = run(lambda p: send_json(p, "chat", chat([{"role": "user", "content": "x"}])),
                    account(github))
    assert status == 401
    assert github.exchange_count == 2
    assert len(llm.requests_to("/chat/completions")) == 2


def test_revoked_token_concurrent_401s_collapse_into_one_refresh(github, llm):
    async def go(p):
        await send_json(p, "chat", chat([{"role": "user", "content": "warm"}]))
        github.revoke_copilot_tokens()       # every request now gets a 401
        github.mode = "slow"
        github.slow_delay = 0.2
        return await asyncio.gather(*(
            send_json(p, "chat", chat([{"role": "user", "content": f"n{i}"}]))
            for i in range(10)))

    results = run(go, account(github))
    assert [s for s, _ in results] == [200] * 10
    assert github.exchange_count == 2


# --- identity headers ------------------------------------------------------------------------

def test_identity_headers_reach_upstream(github, llm):
    acc = account(github, settings={"editor_version": "vscode/9.9.9",
                                    "copilot-integration-id": "custom-chat",
                                    "headers": {"X-Extra": "1"}})

    async def go(p):
        await send_json(p, "chat", chat([{"role": "user", "content": "hello"}]))
        await send_json(p, "chat", chat([{"role": "user", "content": "hello"}]))

    run(go, acc)
    first, second = llm.requests_to("/chat/completions")
    h = first.headers
    assert h["editor-version"] == "vscode/9.9.9"
    assert h["copilot-integration-id"] == "custom-chat"
    assert h["editor-plugin-version"].startswith("copilot-chat/0.3")
    assert h["user-agent"].startswith("GitHubCopilotChat/0.3")
    assert h["openai-intent"] == "conversation-panel"
    assert h["x-github-api-version"] == "2025-05-01"
    assert h["x-extra"] == "1"
    assert h["x-initiator"] == "user"
    assert "copilot-vision-request" not in h
    assert h["x-request-id"] != second.headers["x-request-id"]


def test_vision_and_initiator_per_format(github, llm):
    tool_turns = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]

    async def go(p):
        out = []
        out.append(await send_json(p, "chat", chat([{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, IMAGE]}])))
        out.append(await send_json(p, "chat", chat(tool_turns)))
        out.append(await send_json(p, "chat", chat([{"role": "user", "content": "x"}]),
                                   {"X-Initiator": "agent"}))
        out.append(await send_json(p, "messages", {
            "model": "claude-sonnet-4", "max_tokens": 50, "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}},
                    {"type": "text", "text": "describe"}]}]}))
        out.append(await send_json(p, "responses", {"model": "gpt-5-codex", "input": [
            {"role": "user", "content": "run it"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "done"}]}))
        out.append(await send_json(p, "embeddings",
                                   {"model": "text-embedding-3-small", "input": "x"}))
        return out

    results = run(go, account(github))
    assert [s for s, _ in results] == [200] * 6, results
    chats = llm.requests_to("/chat/completions")
    assert chats[0].headers["copilot-vision-request"] == "true"
    assert chats[0].headers["x-initiator"] == "user"
    assert chats[1].headers["x-initiator"] == "agent"
    assert "copilot-vision-request" not in chats[1].headers
    assert chats[2].headers["x-initiator"] == "agent"           # inbound header wins
    msg = llm.requests_to("/v1/messages")[0]
    assert msg.headers["copilot-vision-request"] == "true"
    assert msg.headers["x-initiator"] == "user"
    assert llm.requests_to("/responses")[0].headers["x-initiator"] == "agent"
    emb = llm.requests_to("/embeddings")[0]
    assert "x-initiator" not in emb.headers and emb.headers["editor-version"]


def test_count_tokens_goes_to_v1_messages_without_initiator(github, llm):
    body = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}
    status, data = run(lambda p: send_json(p, "count_tokens", body), account(github))
    assert status == 200 and data["input_tokens"] > 0
    req = llm.requests_to("/v1/messages/count_tokens")[0]
    assert "x-initiator" not in req.headers and req.headers["editor-version"]


def test_initiator_mode_setting(github, llm):
    acc = account(github, settings={"initiator_mode": "always_agent"})
    run(lambda p: send_json(p, "chat", chat([{"role": "user", "content": "x"}])), acc)
    assert llm.requests_to("/chat/completions")[0].headers["x-initiator"] == "agent"


def test_missing_vision_header_would_fail(github, llm):
    """Sanity check of the fake: without our header an image request is refused."""
    async def go(p):
        headers = {**p.static_headers(), **await p.credentials(),
                   "content-type": "application/json"}
        return await p.client.post(f"{llm.url}/chat/completions", headers=headers,
                                   json=chat([{"role": "user", "content": [IMAGE]}]))

    resp = run(go, account(github))
    assert resp.status_code == 400 and "Copilot-Vision-Request" in resp.text


# --- prepare, models, describe, resolved headers ---------------------------------------------

@pytest.mark.parametrize(("model", "swapped"), [
    ("gpt-5", True), ("gpt-5-mini", True), ("o3-mini", True), ("o4-mini", True),
    ("gpt-4o", False), ("claude-sonnet-4", False),
])
def test_max_completion_tokens(model, swapped):
    p = CopilotProvider(AccountConfig(id="a", provider="github-copilot"), None)  # type: ignore
    body = {"model": model, "max_tokens": 100, "messages": []}
    out, _ = p.prepare("chat", body, {})
    assert body["max_tokens"] == 100                      # input not mutated
    if swapped:
        assert "max_tokens" not in out and out["max_completion_tokens"] == 100
    else:
        assert out == body
    untouched, _ = p.prepare("messages", dict(body), {})
    assert untouched["max_tokens"] == 100


def test_model_listing(github, llm):
    models = run(lambda p: p.list_models(), account(github))
    by_id = {m.id: m for m in models}
    assert by_id["gpt-5-codex"].formats == {"responses"}
    assert by_id["claude-sonnet-4"].formats == {"chat", "messages"}
    assert by_id["gpt-4o"].formats == {"chat", "responses"}
    assert by_id["text-embedding-3-small"].formats == {"embeddings"}
    assert by_id["gpt-4o"].context_window == 128000
    assert by_id["gpt-4o"].capabilities["vision"] is True
    assert by_id["gpt-4o"].raw["model_picker_enabled"] is True
    models_req = llm.requests_to("/models")[0]
    assert models_req.headers["editor-version"] and models_req.bearer()


def test_describe_plan_and_quota(github):
    github.set_quota("premium_interactions", remaining=120)
    info = run(lambda p: p.describe(), account(github))
    assert info["plan"] == "individual" and info["login"] == "octocat"
    assert info["quotas"]["premium_interactions"]["remaining"] == 120
    assert info["quotas"]["chat"]["unlimited"] is True
    assert "quota_reset_date" in info
    assert state.read("account-info")["cop"]["plan"] == "individual"


def test_resolved_headers_masked(github):
    async def go(p):
        return await p.resolved_headers(masked=True), await p.resolved_headers(masked=False)

    masked, clear = run(go, account(github))
    token = github.last_copilot_token
    assert clear["authorization"] == f"Bearer {token}"
    assert token not in masked["authorization"] and "…" in masked["authorization"]
    for name in ("editor-version", "editor-plugin-version", "user-agent",
                 "copilot-integration-id", "openai-intent", "x-github-api-version",
                 "x-request-id", "x-initiator"):
        assert name in masked
