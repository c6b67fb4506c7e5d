"""Z.ai / Zhipu provider: bases per id, thinking injection, Anthropic endpoint, quota."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.providers.test_keys import SSE_CHUNKS, Upstream, chat_ok, send_and_read, sse_answer
from tokn.config import AccountConfig
from tokn.errors import ToknError
from tokn.providers import provider_class
from tokn.providers.base import ModelInfo, UpstreamResponse
from tokn.providers.zai import (
    THINKING,
    ZaiProvider,
    add_thinking,
    parse_quota,
    reasoning_from_listing,
)

IDS = {
    "zai-coding-plan": "https://api.z.ai/api/coding/paas/v4",
    "zai": "https://api.z.ai/api/paas/v4",
    "zhipuai-coding-plan": "https://open.bigmodel.cn/api/coding/paas/v4",
    "zhipuai": "https://open.bigmodel.cn/api/paas/v4",
}


def make(upstream: Upstream, provider: str = "zai-coding-plan", *, base_url: str = "",
         key: str | None = "zai-key", settings: dict[str, Any] | None = None):
    account = AccountConfig(id="z", provider=provider, base_url=base_url,
                            fields={"api_key": key} if key else {}, settings=settings or {})
    return provider_class(provider)(account, upstream.client())


def sent_json(upstream: Upstream) -> dict[str, Any]:
    return json.loads(upstream.last.content)


# --- ids, bases, auth --------------------------------------------------------------
@pytest.mark.parametrize("pid, base", IDS.items())
def test_each_id_has_its_default_base(pid, base):
    cls = provider_class(pid)
    assert issubclass(cls, ZaiProvider)
    assert cls.display_name
    assert cls.formats == {"chat"}
    up = Upstream({("POST", httpx.URL(base).path + "/chat/completions"): chat_ok})
    provider = make(up, pid)
    assert asyncio.run(provider.base_url()) == base
    resp, _ = asyncio.run(send_and_read(provider, "chat", {"model": "glm-4.6", "messages": []}))
    assert resp.status == 200
    assert str(up.last.url) == base + "/chat/completions"
    assert up.last.headers["authorization"] == "Bearer zai-key"


@pytest.mark.parametrize("pid, host, env", [
    ("zai-coding-plan", "api.z.ai", "ZAI_API_KEY"),
    ("zai", "api.z.ai", "ZAI_API_KEY"),
    ("zhipuai-coding-plan", "open.bigmodel.cn", "ZHIPUAI_API_KEY"),
    ("zhipuai", "open.bigmodel.cn", "ZHIPUAI_API_KEY"),
])
def test_hosts_and_env_vars(pid, host, env):
    cls = provider_class(pid)
    assert cls.hosts == (host,)
    assert cls.env_vars == (env,)


def test_base_override_is_honoured():
    up = Upstream({("POST", "/fake/v4/chat/completions"): chat_ok})
    provider = make(up, base_url="http://127.0.0.1:5555/fake/v4/")
    asyncio.run(send_and_read(provider, "chat", {"model": "x"}))
    assert str(up.last.url) == "http://127.0.0.1:5555/fake/v4/chat/completions"


def test_missing_key_is_a_clear_401():
    with pytest.raises(ToknError) as err:
        asyncio.run(make(Upstream(), key=None).credentials())
    assert err.value.status == 401 and "tokn login" in err.value.message


def test_switch_headers_cover_bearer_and_x_api_key():
    assert asyncio.run(make(Upstream()).switch_headers()) == {
        "authorization": "Bearer zai-key", "x-api-key": "zai-key"}


# --- thinking: the pure function -----------------------------------------------------
REASONING = ModelInfo("glm-4.6", reasoning=True)
PLAIN = ModelInfo("glm-4-plus", reasoning=False)
UNSAID = ModelInfo("glm-4.5-air")           # listed, but the listing says nothing


@pytest.mark.parametrize("body, model, expected_thinking", [
    # listed as reasoning -> added
    ({"model": "glm-4.6"}, REASONING, THINKING),
    # listed as reasoning, id not glm-* -> the listing wins
    ({"model": "custom-think"}, ModelInfo("custom-think", reasoning=True), THINKING),
    # listed as NOT reasoning -> untouched, even with a glm- id
    ({"model": "glm-4-plus"}, PLAIN, None),
    # unknown glm-* -> added
    ({"model": "glm-4.5"}, None, THINKING),
    ({"model": "GLM-4.7"}, None, THINKING),
    ({"model": "glm-4.5-air"}, UNSAID, THINKING),
    # unknown non-glm -> untouched
    ({"model": "embedding-3"}, None, None),
    ({"model": "charglm-4"}, None, None),
    # the client's own thinking is never overwritten, whatever it says
    ({"model": "glm-4.6", "thinking": {"type": "disabled"}}, REASONING, {"type": "disabled"}),
    ({"model": "glm-4.5", "thinking": {"type": "enabled"}}, None, {"type": "enabled"}),
    ({"model": "glm-4.6", "thinking": None}, REASONING, None),
    # no model in the body: the ModelInfo's id decides
    ({"messages": []}, UNSAID, THINKING),
])
def test_add_thinking_table(body, model, expected_thinking):
    original = json.loads(json.dumps(body))
    out = add_thinking(body, model)
    assert out.get("thinking") == expected_thinking
    assert body == original                         # input never mutated
    assert {k: v for k, v in out.items() if k != "thinking"} == \
        {k: v for k, v in original.items() if k != "thinking"}


def test_add_thinking_returns_a_fresh_thinking_dict():
    out = add_thinking({"model": "glm-4.6"}, None)
    out["thinking"]["type"] = "disabled"
    assert THINKING["type"] == "enabled"


@pytest.mark.parametrize("item, expected", [
    ({"id": "glm-4.6", "reasoning": True}, True),
    ({"id": "glm-4-plus", "thinking": False}, False),
    ({"id": "a", "capabilities": {"reasoning": True}}, True),
    ({"id": "b", "capabilities": {"thinking": False}}, False),
    ({"id": "c", "supported_parameters": ["tools", "thinking"]}, True),
    ({"id": "d", "supported_parameters": ["tools"]}, False),
    ({"id": "glm-4.5", "object": "model", "owned_by": "z-ai"}, None),
])
def test_reasoning_from_listing(item, expected):
    assert reasoning_from_listing(item) is expected


# --- thinking: through send() with a models listing ---------------------------------
LISTING = {"object": "list", "data": [
    {"id": "glm-4.6", "object": "model", "owned_by": "z-ai", "reasoning": True},
    {"id": "glm-4-plus", "object": "model", "owned_by": "z-ai", "reasoning": False},
    {"id": "glm-4.5", "object": "model", "owned_by": "z-ai"},
]}


def listed_upstream() -> Upstream:
    return Upstream({
        ("GET", "/api/coding/paas/v4/models"): httpx.Response(200, json=LISTING),
        ("POST", "/api/coding/paas/v4/chat/completions"): chat_ok,
    })


def test_models_listing_parse():
    up = listed_upstream()
    models = asyncio.run(make(up).models())
    assert [(m.id, m.reasoning, m.formats) for m in models] == [
        ("glm-4.6", True, {"chat"}), ("glm-4-plus", False, {"chat"}), ("glm-4.5", None, {"chat"})]
    assert str(up.last.url) == "https://api.z.ai/api/coding/paas/v4/models"
    assert up.last.headers["authorization"] == "Bearer zai-key"


@pytest.mark.parametrize("body, expected", [
    ({"model": "glm-4.6", "messages": []}, THINKING),                 # listed reasoning
    ({"model": "glm-4-plus", "messages": []}, None),                  # listed non-reasoning
    ({"model": "glm-4.5", "messages": []}, THINKING),                 # listed, unsaid, glm-
    ({"model": "glm-9-unlisted", "messages": []}, THINKING),          # unknown glm-*
    ({"model": "glm-4.6", "thinking": {"type": "disabled"}}, {"type": "disabled"}),
])
def test_send_injects_thinking_from_listing(body, expected):
    up = listed_upstream()
    provider = make(up)

    async def run():
        await provider.models()
        return await send_and_read(provider, "chat", body)

    asyncio.run(run())
    assert sent_json(up).get("thinking") == expected


def test_thinking_setting_false_and_true():
    up = listed_upstream()
    asyncio.run(send_and_read(make(up, settings={"thinking": False}), "chat",
                              {"model": "glm-4.6"}))
    assert "thinking" not in sent_json(up)
    asyncio.run(send_and_read(make(up, settings={"thinking": True}), "chat",
                              {"model": "other-model"}))
    assert sent_json(up)["thinking"] == THINKING
    asyncio.run(send_and_read(make(up, settings={"thinking": True}), "chat",
                              {"model": "other-model", "thinking": {"type": "disabled"}}))
    assert sent_json(up)["thinking"] == {"type": "disabled"}


def test_streaming_chat_passes_upstream_bytes():
    up = Upstream({("POST", "/api/coding/paas/v4/chat/completions"): sse_answer})
    provider = make(up)

    async def run():
        resp = await provider.send("chat", {"model": "glm-4.6", "stream": True}, {}, stream=True)
        chunks = [c async for c in resp.chunks()]
        await resp.aclose()
        return resp, chunks

    resp, chunks = asyncio.run(run())
    assert isinstance(resp, UpstreamResponse) and resp.is_sse and resp.stream
    assert b"".join(chunks) == b"".join(SSE_CHUNKS)
    assert sent_json(up)["thinking"] == THINKING


# --- Anthropic-compatible endpoint ----------------------------------------------------
def messages_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "msg_1", "type": "message", "content": []})


@pytest.mark.parametrize("pid, setting, url", [
    ("zai-coding-plan", "https://api.z.ai/api/anthropic", "https://api.z.ai/api/anthropic/v1/messages"),
    ("zai-coding-plan", "auto", "https://api.z.ai/api/anthropic/v1/messages"),
    ("zhipuai-coding-plan", "auto", "https://open.bigmodel.cn/api/anthropic/v1/messages"),
])
def test_messages_through_anthropic_endpoint(pid, setting, url):
    up = Upstream({("POST", httpx.URL(url).path): messages_ok})
    provider = make(up, pid, settings={"anthropic_base_url": setting})
    assert provider.formats == {"chat", "messages"}
    assert provider_class(pid).formats == {"chat"}        # the class stays as it was
    body = {"model": "glm-4.6", "max_tokens": 10, "messages": []}
    resp, _ = asyncio.run(send_and_read(provider, "messages", body,
                                        {"anthropic-beta": "fine-grained-tool-streaming"}))
    assert resp.status == 200
    assert str(up.last.url) == url
    assert up.last.headers["authorization"] == "Bearer zai-key"
    assert up.last.headers["anthropic-version"] == "2023-06-01"
    assert up.last.headers["anthropic-beta"] == "fine-grained-tool-streaming"
    assert sent_json(up) == body                           # no thinking added to messages


def test_messages_auto_follows_base_override():
    up = Upstream({("POST", "/api/anthropic/v1/messages"): messages_ok})
    provider = make(up, base_url="http://127.0.0.1:5555/api/coding/paas/v4",
                    settings={"anthropic_base_url": "auto"})
    asyncio.run(send_and_read(provider, "messages", {"model": "glm-4.6"}))
    assert str(up.last.url) == "http://127.0.0.1:5555/api/anthropic/v1/messages"


def test_messages_without_anthropic_base_is_a_clear_error():
    provider = make(Upstream())
    assert "messages" not in provider.formats
    with pytest.raises(ToknError) as err:
        asyncio.run(provider.url_for("messages"))
    assert err.value.status == 501 and "anthropic_base_url" in err.value.message
    with pytest.raises(ToknError):
        asyncio.run(provider.url_for("count_tokens"))


# --- plan quota ------------------------------------------------------------------------
QUOTA = {
    "code": 200, "msg": "Operation successful", "success": True,
    "data": {"level": "pro", "limits": [
        {"type": "TOKENS_LIMIT", "unit": 3, "number": 5, "percentage": 12,
         "nextResetTime": 1767225600000},
        {"type": "TIME_LIMIT", "unit": 5, "number": 1, "usage": 1000, "currentValue": 28,
         "remaining": 972, "percentage": 2, "nextResetTime": 1769904000000,
         "usageDetails": [{"modelCode": "search-prime", "usage": 20}]},
    ]},
}
PARSED = {"plan": "pro", "quota": [
    {"kind": "tokens", "window": "5h", "used_percent": 12, "used": None, "limit": None,
     "remaining": None, "resets_at": "2026-01-01T00:00:00+00:00"},
    {"kind": "mcp_calls", "window": "1mo", "used_percent": 2, "used": 28, "limit": 1000,
     "remaining": 972, "resets_at": "2026-02-01T00:00:00+00:00"},
]}


def test_parse_quota():
    assert parse_quota(QUOTA) == PARSED


def test_parse_quota_computes_percent_and_tolerates_gaps():
    data = {"success": True, "data": {"limits": [
        {"type": "TOKENS_LIMIT", "usage": 200, "currentValue": 50},
        "junk", {"type": "NEW_KIND", "unit": 99, "number": 2}]}}
    out = parse_quota(data)
    assert out["plan"] is None
    assert out["quota"][0]["used_percent"] == 25.0 and out["quota"][0]["window"] is None
    assert out["quota"][1]["kind"] == "new_kind" and out["quota"][1]["window"] is None


@pytest.mark.parametrize("data", [
    {"code": 1001, "msg": "Authorization Failure", "success": False},
    {"code": 500, "msg": "boom"},
    ["not", "an", "object"],
])
def test_parse_quota_rejects_error_answers(data):
    with pytest.raises(ValueError):
        parse_quota(data)


@pytest.mark.parametrize("pid, origin", [
    ("zai-coding-plan", "https://api.z.ai"),
    ("zhipuai-coding-plan", "https://open.bigmodel.cn"),
])
def test_describe_reads_quota_from_origin(pid, origin):
    up = Upstream({("GET", "/api/monitor/usage/quota/limit"): httpx.Response(200, json=QUOTA)})
    assert asyncio.run(make(up, pid).describe()) == PARSED
    assert str(up.last.url) == origin + "/api/monitor/usage/quota/limit"
    assert up.last.headers["authorization"] == "Bearer zai-key"


def test_describe_follows_base_override_and_falls_back_to_bare_key():
    def quota(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"].startswith("Bearer "):
            return httpx.Response(401, json={"code": 1001, "success": False})
        return httpx.Response(200, json=QUOTA)

    up = Upstream({("GET", "/api/monitor/usage/quota/limit"): quota})
    provider = make(up, base_url="http://127.0.0.1:5555/api/coding/paas/v4")
    assert asyncio.run(provider.describe()) == PARSED
    assert [r.headers["authorization"] for r in up.requests] == ["Bearer zai-key", "zai-key"]
    assert str(up.last.url) == "http://127.0.0.1:5555/api/monitor/usage/quota/limit"


@pytest.mark.parametrize("answer", [
    httpx.Response(500, text="oops"),
    httpx.Response(200, json={"code": 1001, "msg": "Authorization Failure", "success": False}),
    httpx.Response(200, text="<html>not json</html>"),
])
def test_describe_fails_soft(answer):
    up = Upstream({("GET", "/api/monitor/usage/quota/limit"): answer})
    out = asyncio.run(make(up).describe())
    assert set(out) == {"quota_error"} and out["quota_error"]


def test_describe_fails_soft_on_network_error():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    up = Upstream({("GET", "/api/monitor/usage/quota/limit"): down})
    out = asyncio.run(make(up).describe())
    assert "connection refused" in out["quota_error"]


def test_describe_quota_is_for_coding_plans_unless_asked():
    up = Upstream({("GET", "/api/monitor/usage/quota/limit"): httpx.Response(200, json=QUOTA)})
    assert asyncio.run(make(up, "zai").describe()) == {}
    assert asyncio.run(make(up, "zhipuai").describe()) == {}
    assert up.requests == []
    assert asyncio.run(make(up, "zai", settings={"quota": True}).describe()) == PARSED
    assert asyncio.run(make(up, settings={"quota": False}).describe()) == {}
