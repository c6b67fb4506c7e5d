"""API-key providers: OpenAI, DeepSeek, OpenRouter, OpenAI-compatible, Anthropic.

Upstreams are ``httpx.MockTransport`` handlers that record every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tracemalloc
from typing import Any

import httpx
import pytest

from tokn.config import AccountConfig
from tokn.errors import ToknError
from tokn.providers import provider_class, provider_ids
from tokn.providers.anthropic import AnthropicProvider
from tokn.providers.base import UpstreamResponse, outbound_headers
from tokn.providers.openai import (
    DeepSeekProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    OpenRouterProvider,
)


def as_stream(response: httpx.Response) -> httpx.Response:
    """A fresh, unread copy of ``response`` whose body arrives as a stream.

    ``httpx.Response(json=...)`` is born already read, and providers stream
    upstream bodies with ``aiter_raw()`` as a real network answer allows; so a
    canned answer is re-wrapped as an async byte stream, like a socket gives.
    """
    try:
        body = response.content
    except httpx.ResponseNotRead:
        return response

    async def chunks():
        yield body

    headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
    return httpx.Response(response.status_code, headers=headers, content=chunks())


class Upstream:
    """A scripted upstream: ``routes[(method, path)] -> httpx.Response``."""

    def __init__(self, routes: dict[tuple[str, str], Any] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            answer = httpx.Response(404, json={"error": {"message": "no route"}})
        return as_stream(answer(request) if callable(answer) else answer)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make(cls, upstream: Upstream, *, provider: str | None = None, base_url: str = "",
         key: str | None = "sk-test", settings: dict[str, Any] | None = None):
    fields = {"api_key": key} if key is not None else {}
    account = AccountConfig(id="acct", provider=provider or cls.id, base_url=base_url,
                            fields=fields, settings=settings or {})
    return cls(account, upstream.client())


def chat_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "c1", "object": "chat.completion", "choices": []})


async def send_and_read(provider, fmt: str, body: dict, inbound=None, *, stream=False):
    resp = await provider.send(fmt, body, inbound or {}, stream=stream)
    data = await resp.read()
    await resp.aclose()
    return resp, data


# --- registry ----------------------------------------------------------------------
def test_registry_knows_every_key_provider():
    ids = provider_ids()
    for pid, cls in [("openai", OpenAIProvider), ("deepseek", DeepSeekProvider),
                     ("openrouter", OpenRouterProvider),
                     ("openai-compatible", OpenAICompatibleProvider),
                     ("anthropic", AnthropicProvider)]:
        assert pid in ids
        assert provider_class(pid) is cls
        assert cls.display_name


@pytest.mark.parametrize("cls, host, env", [
    (OpenAIProvider, "api.openai.com", "OPENAI_API_KEY"),
    (DeepSeekProvider, "api.deepseek.com", "DEEPSEEK_API_KEY"),
    (OpenRouterProvider, "openrouter.ai", "OPENROUTER_API_KEY"),
    (AnthropicProvider, "api.anthropic.com", "ANTHROPIC_API_KEY"),
])
def test_hosts_and_env_vars(cls, host, env):
    assert host in cls.hosts
    assert env in cls.env_vars


# --- URLs, paths, auth -------------------------------------------------------------
@pytest.mark.parametrize("cls, fmt, url", [
    (OpenAIProvider, "chat", "https://api.openai.com/v1/chat/completions"),
    (OpenAIProvider, "responses", "https://api.openai.com/v1/responses"),
    (OpenAIProvider, "embeddings", "https://api.openai.com/v1/embeddings"),
    (DeepSeekProvider, "chat", "https://api.deepseek.com/chat/completions"),
    (OpenRouterProvider, "chat", "https://openrouter.ai/api/v1/chat/completions"),
    (OpenRouterProvider, "responses", "https://openrouter.ai/api/v1/responses"),
])
def test_openai_style_url_and_bearer(cls, fmt, url):
    up = Upstream({("POST", httpx.URL(url).path): chat_ok})
    provider = make(cls, up)
    assert fmt in provider.formats
    resp, _ = asyncio.run(send_and_read(provider, fmt, {"model": "m", "messages": []}))
    assert resp.status == 200
    assert str(up.last.url) == url
    assert up.last.headers["authorization"] == "Bearer sk-test"
    assert "x-api-key" not in up.last.headers
    assert json.loads(up.last.content) == {"model": "m", "messages": []}


def test_formats_per_provider():
    assert OpenAIProvider.formats == {"chat", "responses", "embeddings"}
    assert DeepSeekProvider.formats == {"chat"}
    assert OpenRouterProvider.formats == {"chat", "responses"}
    assert OpenAICompatibleProvider.formats == {"chat", "embeddings"}
    assert AnthropicProvider.formats >= {"messages"}


@pytest.mark.parametrize("cls", [OpenAIProvider, DeepSeekProvider, OpenRouterProvider,
                                 OpenAICompatibleProvider])
def test_base_url_override(cls):
    up = Upstream({("POST", "/custom/v9/chat/completions"): chat_ok})
    provider = make(cls, up, base_url="http://127.0.0.1:9999/custom/v9/")
    asyncio.run(send_and_read(provider, "chat", {"model": "m"}))
    assert str(up.last.url) == "http://127.0.0.1:9999/custom/v9/chat/completions"


def test_missing_key_is_a_clear_401():
    provider = make(OpenAIProvider, Upstream(), key=None)
    with pytest.raises(ToknError) as err:
        asyncio.run(provider.credentials())
    assert err.value.status == 401
    assert "api_key" in err.value.message and "tokn login" in err.value.message


def test_openai_org_and_project_headers():
    up = Upstream({("POST", "/v1/chat/completions"): chat_ok})
    provider = make(OpenAIProvider, up, settings={"organization": "org-1", "project": "proj-2"})
    asyncio.run(send_and_read(provider, "chat", {"model": "m"}))
    assert up.last.headers["openai-organization"] == "org-1"
    assert up.last.headers["openai-project"] == "proj-2"


def test_client_credentials_are_never_forwarded():
    up = Upstream({("POST", "/v1/chat/completions"): chat_ok})
    provider = make(OpenAIProvider, up)
    inbound = {"Authorization": "Bearer client-key", "x-api-key": "client",
               "OpenAI-Beta": "assistants=v2", "cookie": "a=b"}
    asyncio.run(send_and_read(provider, "chat", {"model": "m"}, inbound))
    assert up.last.headers["authorization"] == "Bearer sk-test"
    assert "x-api-key" not in up.last.headers and "cookie" not in up.last.headers
    assert up.last.headers["openai-beta"] == "assistants=v2"


# --- openai-compatible -------------------------------------------------------------
def test_openai_compatible_without_key_sends_no_authorization():
    up = Upstream({("POST", "/v1/chat/completions"): chat_ok})
    provider = make(OpenAICompatibleProvider, up, key=None, base_url="http://127.0.0.1:8080/v1")
    resp, _ = asyncio.run(send_and_read(provider, "chat", {"model": "local"},
                                        {"authorization": "Bearer from-client"}))
    assert resp.status == 200
    assert "authorization" not in up.last.headers
    assert asyncio.run(provider.switch_headers()) == {}


def test_openai_compatible_with_key_sends_bearer():
    up = Upstream({("POST", "/v1/embeddings"): chat_ok})
    provider = make(OpenAICompatibleProvider, up, key="local-key",
                    base_url="http://127.0.0.1:8080/v1")
    asyncio.run(send_and_read(provider, "embeddings", {"model": "e", "input": "x"}))
    assert up.last.headers["authorization"] == "Bearer local-key"


def test_openai_compatible_without_base_url_is_a_clear_error():
    up = Upstream()
    provider = make(OpenAICompatibleProvider, up)
    with pytest.raises(ToknError) as err:
        asyncio.run(provider.send("chat", {"model": "m"}, {}, stream=False))
    assert err.value.code == "missing_base_url"
    assert "base_url" in err.value.message and "acct" in err.value.message
    assert "tokn config set --account acct base_url" in err.value.message
    assert up.requests == []


def test_openai_compatible_formats_and_headers_from_settings():
    up = Upstream({("POST", "/v1/responses"): chat_ok})
    provider = make(OpenAICompatibleProvider, up, base_url="http://h/v1",
                    settings={"formats": ["chat", "responses"], "headers": {"X-Team": "a"}})
    assert provider.formats == {"chat", "responses"}
    assert OpenAICompatibleProvider.formats == {"chat", "embeddings"}  # class untouched
    assert provider.model_formats(None) == {"chat", "responses"}
    asyncio.run(send_and_read(provider, "responses", {"model": "m"}))
    assert up.last.headers["x-team"] == "a"


def test_openai_compatible_rejects_unknown_formats():
    with pytest.raises(ToknError, match="settings.formats"):
        make(OpenAICompatibleProvider, Upstream(), base_url="http://h/v1",
             settings={"formats": ["chat", "completions"]})


# --- model listings ----------------------------------------------------------------
def test_openai_models_listing():
    listing = {"object": "list", "data": [
        {"id": "gpt-4.1", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "text-embedding-3-small", "object": "model", "created": 2, "owned_by": "openai"},
    ]}
    up = Upstream({("GET", "/v1/models"): httpx.Response(200, json=listing)})
    provider = make(OpenAIProvider, up)
    models = asyncio.run(provider.models())
    assert [m.id for m in models] == ["gpt-4.1", "text-embedding-3-small"]
    assert models[0].formats == {"chat", "responses"}
    assert models[1].formats == {"embeddings"}
    assert up.last.headers["authorization"] == "Bearer sk-test"


def test_deepseek_models_listing():
    listing = {"object": "list", "data": [{"id": "deepseek-chat", "object": "model",
                                           "owned_by": "deepseek"}]}
    up = Upstream({("GET", "/models"): httpx.Response(200, json=listing)})
    models = asyncio.run(make(DeepSeekProvider, up).models())
    assert [(m.id, m.formats) for m in models] == [("deepseek-chat", {"chat"})]
    assert str(up.last.url) == "https://api.deepseek.com/models"


def test_openrouter_models_listing_reads_context_and_reasoning():
    listing = {"data": [
        {"id": "openai/o3", "name": "o3", "context_length": 200000,
         "supported_parameters": ["tools", "reasoning", "include_reasoning"]},
        {"id": "meta/llama", "context_length": 8192, "supported_parameters": ["tools"]},
    ]}
    up = Upstream({("GET", "/api/v1/models"): httpx.Response(200, json=listing)})
    o3, llama = asyncio.run(make(OpenRouterProvider, up).models())
    assert (o3.id, o3.reasoning, o3.context_window) == ("openai/o3", True, 200000)
    assert (llama.reasoning, llama.context_window) == (False, 8192)


def test_openrouter_attribution_headers():
    up = Upstream({("POST", "/api/v1/chat/completions"): chat_ok})
    provider = make(OpenRouterProvider, up, settings={"referer": "https://x.dev", "title": "tk"})
    asyncio.run(send_and_read(provider, "chat", {"model": "m"}))
    assert up.last.headers["http-referer"] == "https://x.dev"
    assert up.last.headers["x-title"] == "tk"


def test_configured_models_come_first_and_listing_failure_is_soft():
    up = Upstream({("GET", "/v1/models"): httpx.Response(500, text="boom")})
    account = AccountConfig(id="a", provider="openai", fields={"api_key": "k"},
                            models=["gpt-x"])
    provider = OpenAIProvider(account, up.client())
    models = asyncio.run(provider.models())
    assert [m.id for m in models] == ["gpt-x"]


# --- DeepSeek balance --------------------------------------------------------------
def test_deepseek_describe_balance():
    balance = {"is_available": True, "balance_infos": [
        {"currency": "CNY", "total_balance": "110.00", "granted_balance": "10.00",
         "topped_up_balance": "100.00"}]}
    up = Upstream({("GET", "/user/balance"): httpx.Response(200, json=balance)})
    assert asyncio.run(make(DeepSeekProvider, up).describe()) == {
        "available": True, "balance": "110.00 CNY"}


def test_deepseek_describe_fails_soft():
    up = Upstream({("GET", "/user/balance"): httpx.Response(401, json={})})
    out = asyncio.run(make(DeepSeekProvider, up).describe())
    assert "401" in out["balance_error"]


# --- streaming ---------------------------------------------------------------------
SSE_CHUNKS = [
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"id":"c1","choices":[{"delta":{"content":"lo"}}]}\n\n',
    b"data: [DONE]\n\n",
]


def sse_answer(request: httpx.Request) -> httpx.Response:
    async def body():
        for chunk in SSE_CHUNKS:
            yield chunk
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


@pytest.mark.parametrize("cls, fmt, path", [
    (OpenAIProvider, "chat", "/v1/chat/completions"),
    (OpenRouterProvider, "responses", "/api/v1/responses"),
    (AnthropicProvider, "messages", "/v1/messages"),
])
def test_send_stream_returns_upstream_bytes(cls, fmt, path):
    up = Upstream({("POST", path): sse_answer})
    provider = make(cls, up)

    async def run():
        resp = await provider.send(fmt, {"model": "m", "stream": True}, {}, stream=True)
        chunks = [c async for c in resp.chunks()]
        await resp.aclose()
        return resp, chunks

    resp, chunks = asyncio.run(run())
    assert isinstance(resp, UpstreamResponse)
    assert resp.status == 200 and resp.stream and resp.fmt == fmt and resp.is_sse
    assert b"".join(chunks) == b"".join(SSE_CHUNKS)
    assert up.last.headers["accept"] == "text/event-stream"


def test_upstream_error_status_is_passed_back():
    err = {"error": {"message": "rate limited", "type": "rate_limit_error"}}
    up = Upstream({("POST", "/v1/chat/completions"): httpx.Response(429, json=err)})
    resp, data = asyncio.run(send_and_read(make(OpenAIProvider, up), "chat", {"model": "m"}))
    assert resp.status == 429 and json.loads(data) == err


# --- Anthropic ---------------------------------------------------------------------
def messages_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "msg_1", "type": "message", "content": []})


def test_anthropic_messages_url_and_x_api_key():
    up = Upstream({("POST", "/v1/messages"): messages_ok})
    provider = make(AnthropicProvider, up, key="sk-ant-api03-x")
    resp, _ = asyncio.run(send_and_read(provider, "messages", {"model": "claude", "messages": []}))
    assert resp.status == 200
    assert str(up.last.url) == "https://api.anthropic.com/v1/messages"
    assert up.last.headers["x-api-key"] == "sk-ant-api03-x"
    assert up.last.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in up.last.headers


def test_anthropic_credentials_are_x_api_key_not_bearer():
    provider = make(AnthropicProvider, Upstream(), key="sk-ant-k")
    assert asyncio.run(provider.credentials()) == {"x-api-key": "sk-ant-k"}


def test_anthropic_keeps_client_version_and_beta():
    up = Upstream({("POST", "/v1/messages"): messages_ok})
    inbound = {"Anthropic-Version": "2023-01-01",
               "anthropic-beta": "interleaved-thinking-2025-05-14",
               "x-api-key": "client-own-key"}
    asyncio.run(send_and_read(make(AnthropicProvider, up), "messages", {"model": "c"}, inbound))
    assert up.last.headers["anthropic-version"] == "2023-01-01"
    assert up.last.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert up.last.headers["x-api-key"] == "sk-test"


def test_anthropic_count_tokens_path():
    up = Upstream({("POST", "/v1/messages/count_tokens"):
                   httpx.Response(200, json={"input_tokens": 12})})
    provider = make(AnthropicProvider, up)
    _, data = asyncio.run(send_and_read(provider, "count_tokens", {"model": "c", "messages": []}))
    assert json.loads(data) == {"input_tokens": 12}
    assert str(up.last.url) == "https://api.anthropic.com/v1/messages/count_tokens"


@pytest.mark.parametrize("base", ["http://127.0.0.1:7000/ant", "http://127.0.0.1:7000/ant/v1/"])
def test_anthropic_base_override(base):
    up = Upstream({("POST", "/ant/v1/messages"): messages_ok})
    asyncio.run(send_and_read(make(AnthropicProvider, up, base_url=base), "messages", {}))
    assert str(up.last.url) == "http://127.0.0.1:7000/ant/v1/messages"


def test_anthropic_rejects_chat_format():
    with pytest.raises(ToknError) as err:
        asyncio.run(make(AnthropicProvider, Upstream()).url_for("chat"))
    assert err.value.status == 501


def test_anthropic_models_listing_paginates():
    pages = {
        None: {"data": [{"type": "model", "id": "claude-opus-4-1",
                         "display_name": "Claude Opus 4.1",
                         "created_at": "2025-08-05T00:00:00Z"}],
               "has_more": True, "first_id": "claude-opus-4-1", "last_id": "claude-opus-4-1"},
        "claude-opus-4-1": {"data": [{"type": "model", "id": "claude-3-5-haiku-20241022",
                                      "display_name": "Claude Haiku 3.5",
                                      "created_at": "2024-10-22T00:00:00Z"}],
                            "has_more": False, "first_id": "claude-3-5-haiku-20241022",
                            "last_id": "claude-3-5-haiku-20241022"},
    }

    def listing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("after_id")])

    up = Upstream({("GET", "/v1/models"): listing})
    models = asyncio.run(make(AnthropicProvider, up).models())
    assert [m.id for m in models] == ["claude-opus-4-1", "claude-3-5-haiku-20241022"]
    assert models[0].raw["display_name"] == "Claude Opus 4.1"
    assert "messages" in models[0].formats
    first, second = up.requests
    assert first.headers["x-api-key"] == "sk-test"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert second.url.params["after_id"] == "claude-opus-4-1"


def test_anthropic_switch_headers_carry_only_the_key():
    provider = make(AnthropicProvider, Upstream(), key="sk-ant-pool")
    assert asyncio.run(provider.switch_headers()) == {"x-api-key": "sk-ant-pool"}


def test_openai_switch_headers_are_bearer():
    provider = make(OpenAIProvider, Upstream(), key="sk-pool")
    assert asyncio.run(provider.switch_headers()) == {"authorization": "Bearer sk-pool"}


@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024 + 17])
def test_request_bodies_big_and_small_arrive_whole_with_a_content_length(size):
    # a body over base.SLICE goes out a slice at a time: same bytes, not chunked
    upstream = Upstream({("POST", "/v1/chat/completions"): chat_ok})
    provider = make(OpenAIProvider, upstream)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "é" + "x" * size}]}
    resp, _ = asyncio.run(send_and_read(provider, "chat", body))
    assert resp.status == 200
    sent = upstream.last
    assert json.loads(sent.content) == body
    assert sent.headers["content-length"] == str(len(sent.content))
    assert "transfer-encoding" not in sent.headers
    assert sent.headers["content-type"] == "application/json"


class Sink(httpx.AsyncBaseTransport):
    """An upstream that reads a request body as it streams in and keeps only
    its length and a digest (``httpx.MockTransport`` would read it whole first)."""

    def __init__(self) -> None:
        self.size = 0
        self.digest = hashlib.sha256()
        self.length = ""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.length = request.headers["content-length"]
        async for chunk in request.stream:
            self.size += len(chunk)
            self.digest.update(chunk)
        return httpx.Response(200, json={"id": "c1", "object": "chat.completion",
                                         "choices": []})


@pytest.mark.parametrize("head", ["x", "é", "\U0001f600"])
def test_a_big_request_body_is_encoded_without_a_second_whole_copy(head):
    # sending holds about a slice of the big string (an astral character makes
    # a str 4 bytes a character: sizes are Python's), not an escaped copy of it
    # (as it did: ~1.05 body sizes), nor the whole JSON encoded (~3)
    content = head + "x" * 16 * 1024 * 1024
    size = sys.getsizeof(content)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    sink = Sink()
    provider = OpenAIProvider(AccountConfig(id="acct", provider="openai",
                                            fields={"api_key": "sk-test"}),
                              httpx.AsyncClient(transport=sink))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        resp, _ = asyncio.run(send_and_read(provider, "chat", body))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert resp.status == 200
    wire = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert (sink.size, sink.length) == (len(wire), str(len(wire)))
    assert sink.digest.digest() == hashlib.sha256(wire).digest()
    assert peak < 0.5 * size, f"sending held {peak / size:.2f} body sizes at once"


def test_outbound_headers_merge_case_insensitively_later_layers_winning():
    client = httpx.AsyncClient(headers={"User-Agent": "client/1", "X-Default": "d"})
    out = outbound_headers(client.headers, {"Authorization": "Bearer inbound",
                                            "user-agent": "caller/2", "X-Extra": "e"},
                           {"authorization": "Bearer pooled"})
    assert out["authorization"] == "Bearer pooled"
    assert out["user-agent"] == "caller/2"
    assert out["x-default"] == "d" and out["x-extra"] == "e"
    assert all(name == name.lower() for name in out)
    assert list(out).count("authorization") == 1


def test_an_upstream_call_carries_one_credential_header_and_the_client_defaults():
    # the pooled credential replaces a client's Authorization whatever its case;
    # the client's default headers (accept-encoding...) still go out
    upstream = Upstream({("POST", "/v1/chat/completions"): chat_ok})
    provider = make(OpenAIProvider, upstream, key="sk-pool")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    resp = asyncio.run(provider.post("https://api.openai.com/v1/chat/completions",
                                     {"Authorization": "Bearer sk-client", "X-Trace": "t"},
                                     json=body))
    asyncio.run(resp.aclose())
    sent = upstream.requests[-1]
    assert sent.headers.get_list("authorization") == ["Bearer sk-pool"]
    assert sent.headers["x-trace"] == "t"
    assert sent.headers["content-type"] == "application/json"
    assert "accept-encoding" in sent.headers and sent.headers["host"] == "api.openai.com"
    assert json.loads(sent.content) == body
    assert resp.request.extensions["timeout"]["connect"] == provider.http_timeout().connect
