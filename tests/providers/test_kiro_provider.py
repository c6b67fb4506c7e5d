"""KiroProvider against FakeKiro on loopback: headers, refresh (social + IdC,
rotation persisted, single-flight), error classification, streams, models."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
import tomlkit

from tests.fakes.kiro import FakeKiro
from tests.helpers import account, write_config
from tokn import config, paths, state
from tokn.convert.models import normalize_model
from tokn.providers import provider_class
from tokn.providers.kiro.provider import (
    SUSPENDED_REST,
    TOKEN_STATE,
    KiroProvider,
    KiroStreamError,
    next_month_start,
)

PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"], "additionalProperties": False}}}


@pytest.fixture
def fake():
    with FakeKiro() as f:
        yield f


def kiro_account(fake: FakeKiro, *, idc: bool = False, **fields):
    values = {"base_url": fake.url, "access_token": "aoa-initial",
              "refresh_token": "aor-initial", "expires_at": FUTURE, **fields}
    if idc:
        values.update(auth_method="idc", client_id=fake.client_id,
                      client_secret=fake.client_secret, refresh_url=fake.url + "/token")
    else:
        values.update(auth_method="social", refresh_url=fake.url + "/refreshToken",
                      profile_arn=fake.profile_arn)
    return account("kiro", "kiro", **values)


def provider_for(values: dict, client: httpx.AsyncClient) -> KiroProvider:
    """Write the account to the config file and build the provider from it (as tokn does)."""
    write_config({"accounts": [values]})
    cfg = config.load_config()
    return KiroProvider(cfg.accounts[0], client)


def run(coro):
    return asyncio.run(coro)


def chat(text: str = "hello there", **extra):
    return {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": text}], **extra}


def saved_account() -> dict:
    doc = tomlkit.parse(paths.config_file().read_text())
    return doc["accounts"][0].unwrap()


def sse_chunks(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# --- registry / identity ---------------------------------------------------------------

def test_registered_as_kiro():
    assert provider_class("kiro") is KiroProvider
    assert KiroProvider.formats == frozenset({"chat"})


def test_request_headers_and_body(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("hi there", messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi there"}]), {}, stream=False)
            return up.status, json.loads(await up.read())

    status, data = run(go())
    assert status == 200
    assert data["choices"][0]["message"]["content"] == "echo: Be brief.\n\nhi there"
    req = fake.requests_to("/generateAssistantResponse")[-1]
    h = req.headers
    assert h["authorization"] == "Bearer aoa-initial"
    assert h["content-type"] == "application/json"
    assert h["amz-sdk-request"] == "attempt=1; max=3"
    assert h["x-amzn-codewhisperer-optout"] == "true"
    assert h["x-amzn-kiro-agent-mode"] == "vibe"
    assert "aws-sdk-js" in h["user-agent"] and "KiroIDE-" in h["user-agent"]
    assert "aws-sdk-js" in h["x-amz-user-agent"] and "KiroIDE-" in h["x-amz-user-agent"]
    import uuid
    uuid.UUID(h["amz-sdk-invocation-id"])
    body = req.json
    assert body["profileArn"] == fake.profile_arn
    msg = body["conversationState"]["currentMessage"]["userInputMessage"]
    assert msg["modelId"] == "claude-sonnet-4.5" and msg["origin"] == "AI_EDITOR"
    assert not fake.errors


def test_identity_headers_overridable(fake):
    values = kiro_account(fake, settings={"kiro_version": "9.9.9", "machine_id": "abc123",
                                          "headers": {"x-extra": "1"}})

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(values, client)
            await (await p.send("chat", chat(), {}, stream=False)).read()

    run(go())
    h = fake.requests_to("/generateAssistantResponse")[-1].headers
    assert "KiroIDE-9.9.9-abc123" in h["user-agent"]
    assert h["x-extra"] == "1"


def test_default_base_urls():
    acc = config.AccountConfig(id="k", provider="kiro", fields={"region": "eu-central-1"})
    p = KiroProvider(acc, httpx.AsyncClient())
    assert run(p.base_url()) == "https://q.eu-central-1.amazonaws.com"
    assert p.refresh_url == "https://prod.eu-central-1.auth.desktop.kiro.dev/refreshToken"
    acc.settings["endpoint"] = "runtime"
    assert run(p.base_url()) == "https://runtime.eu-central-1.kiro.dev"
    acc.settings["endpoint"] = "codewhisperer"
    assert run(p.base_url()) == "https://codewhisperer.eu-central-1.amazonaws.com"
    idc = config.AccountConfig(id="k", provider="kiro",
                               fields={"client_id": "a", "client_secret": "b"})
    assert KiroProvider(idc, httpx.AsyncClient()).refresh_url == \
        "https://oidc.us-east-1.amazonaws.com/token"
    idc.settings["oidc_url"] = "https://oidc.example/"
    assert KiroProvider(idc, httpx.AsyncClient()).refresh_url == "https://oidc.example/token"


# --- refresh -----------------------------------------------------------------------------

def test_social_refresh_ahead_of_expiry_rotates_and_persists(fake):
    soon = datetime.fromtimestamp(time.time() + 120, UTC).isoformat()  # inside the 5 min margin

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, expires_at=soon), client)
            up = await p.send("chat", chat(), {}, stream=False)
            await up.read()
            return p

    p = run(go())
    assert fake.refresh_bodies == [{"kind": "social", "refreshToken": "aor-initial"}]
    assert p.refresh_count == 1
    saved = saved_account()
    assert saved["refresh_token"] == "aor-1" and saved["access_token"] == "aoa-1"
    assert saved["expires_at"].endswith("Z")
    assert fake.requests_to("/generateAssistantResponse")[-1].bearer() == "aoa-1"
    cached = state.read(TOKEN_STATE)["kiro"]
    assert cached["refresh_token"] == "aor-1"
    assert cached["previous_refresh_token"] == "aor-initial"
    assert (paths.state_dir() / f"{TOKEN_STATE}.json").stat().st_mode & 0o777 == 0o600
    assert paths.config_file().stat().st_mode & 0o777 == 0o600


def test_idc_refresh_body_and_epoch_expiry(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, idc=True, expires_at=1000), client)
            await (await p.send("chat", chat(), {}, stream=False)).read()

    run(go())
    assert fake.refresh_bodies == [{"kind": "idc", "clientId": "client-1",
                                    "clientSecret": "secret-1", "grantType": "refresh_token",
                                    "refreshToken": "aor-initial"}]
    assert saved_account()["refresh_token"] == "aor-1"
    assert not fake.errors


def test_idc_refresh_without_rotation_keeps_token(fake):
    fake.rotate = False

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, idc=True, expires_at=PAST), client)
            await (await p.send("chat", chat(), {}, stream=False)).read()

    run(go())
    assert saved_account()["refresh_token"] == "aor-initial"
    assert state.read(TOKEN_STATE)["kiro"]["access_token"] == "aoa-1"


def test_refresh_is_single_flight(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, expires_at=PAST), client)
            ups = await asyncio.gather(*(p.send("chat", chat(f"n{i}"), {}, stream=False)
                                         for i in range(6)))
            return [u.status for u in ups], p

    statuses, p = run(go())
    assert statuses == [200] * 6
    assert len(fake.refresh_bodies) == 1 and p.refresh_count == 1


def test_restart_uses_cached_rotated_token(fake):
    """The state cache wins when the config still has the pre-rotation token."""
    async def first():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, expires_at=PAST), client)
            await (await p.send("chat", chat(), {}, stream=False)).read()

    run(first())
    # simulate a config write that was lost: the file still has the old token
    write_config({"accounts": [kiro_account(fake, expires_at=PAST)]})

    async def second():
        async with httpx.AsyncClient() as client:
            p = KiroProvider(config.load_config().accounts[0], client)
            await (await p.send("chat", chat(), {}, stream=False)).read()
            return p

    p = run(second())
    assert p.refresh_count == 0
    assert fake.requests_to("/generateAssistantResponse")[-1].bearer() == "aoa-1"


def test_rejected_refresh_token_is_a_clear_error(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake, refresh_token="aor-stale", expires_at=PAST),
                             client)
            await p.send("chat", chat(), {}, stream=False)

    from tokn.errors import ToknError
    with pytest.raises(ToknError) as info:
        run(go())
    assert info.value.status == 401 and "tokn import --from kiro" in info.value.message


def test_403_token_wording_refreshes_once_and_retries(fake):
    fake.mode = "token_403"

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("again"), {}, stream=True)
            return up.status, b"".join([c async for c in up.chunks()]), p

    status, raw, p = run(go())
    assert status == 200 and p.refresh_count == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(raw)
                   if isinstance(c, dict) and c["choices"])
    assert text == "echo: again"
    bearers = [r.bearer() for r in fake.requests_to("/generateAssistantResponse")]
    assert bearers == ["aoa-initial", "aoa-1"]


def test_persistent_403_does_not_loop(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            fake.revoke_access_tokens()
            fake.access_tokens = set()
            orig = fake._issue

            def issue_invalid(old):  # refresh works, but the new token is refused too
                ans = orig(old)
                fake.access_tokens.discard(ans["accessToken"])
                return ans
            fake._issue = issue_invalid
            up = await p.send("chat", chat(), {}, stream=False)
            return up, p

    up, p = run(go())
    assert up.status == 401 and p.refresh_count == 1
    assert p.failure_kind(up.status, run(up.read())) == "account"
    assert len(fake.requests_to("/generateAssistantResponse")) == 2


# --- errors ----------------------------------------------------------------------------

def _send_mode(fake, mode, stream=False):
    fake.mode = mode

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat(), {}, stream=stream)
            return p, up, await up.read()

    return run(go())


def test_quota_leaves_rotation_until_next_month(fake):
    p, up, raw = _send_mode(fake, "quota")
    assert up.status == 402
    assert json.loads(raw)["error"]["code"] == "kiro_quota_exhausted"
    assert "MONTHLY_REQUEST_COUNT" in json.loads(raw)["error"]["message"]
    assert p.failure_kind(up.status, raw) == "quota"
    reset = p.quota_reset(up.status, raw)
    assert reset == next_month_start(time.time())
    assert datetime.fromtimestamp(reset, UTC).day == 1


def test_suspended_rests_a_day(fake):
    p, up, raw = _send_mode(fake, "suspended")
    assert up.status == 403 and p.failure_kind(up.status, raw) == "quota"
    assert abs(p.quota_reset(up.status, raw) - (time.time() + SUSPENDED_REST)) < 60


def test_context_overflow_is_a_client_error(fake):
    p, up, raw = _send_mode(fake, "context_overflow")
    assert up.status == 400 and p.failure_kind(up.status, raw) == "client"
    assert json.loads(raw)["error"]["code"] == "context_length_exceeded"


def test_rate_limit_is_an_account_failure_with_retry_after(fake):
    p, up, raw = _send_mode(fake, "rate_limit", stream=True)
    assert up.status == 429 and p.failure_kind(up.status, raw) == "account"
    assert up.headers["retry-after"] == "7"


def test_exception_before_content_becomes_a_status(fake):
    p, up, raw = _send_mode(fake, "exception_first", stream=True)
    assert up.status == 429
    assert p.failure_kind(up.status, raw) == "account"


def test_unknown_model_is_client_error(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat() | {"model": "gpt-9"}, {}, stream=False)
            return p, up, await up.read()

    p, up, raw = run(go())
    assert up.status == 400 and p.failure_kind(400, raw) == "client"
    assert json.loads(raw)["error"]["code"] == "model_not_found"


def test_payload_too_large_is_413(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("x" * 700_000), {}, stream=False)
            return p, up, await up.read()

    p, up, raw = run(go())
    assert up.status == 413 and p.failure_kind(413, raw) == "client"
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert not fake.requests_to("/generateAssistantResponse")


def test_mid_stream_exception_raises_value_error(fake):
    fake.mode = "exception_mid_stream"

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("one two three four"), {}, stream=True)
            assert up.status == 200 and up.is_sse
            got = []
            with pytest.raises(KiroStreamError) as info:
                async for c in up.chunks():
                    got.append(c)
            await up.aclose()
            return got, info.value

    got, exc = run(go())
    assert isinstance(exc, ValueError) and "InternalServerException" in str(exc)
    assert got  # the text before the exception reached the client


# --- streams ---------------------------------------------------------------------------

def test_stream_tool_call_and_credits(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("weather in Paris?", tools=[WEATHER_TOOL]), {},
                              stream=True)
            assert up.headers["content-type"] == "text/event-stream"
            raw = b"".join([c async for c in up.chunks()])
            return up, raw

    up, raw = run(go())
    chunks = sse_chunks(raw)
    assert chunks[-1] == "[DONE]"
    calls = [tc for c in chunks[:-1] for ch in c["choices"]
             for tc in ch["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "get_weather"
    args = "".join(tc["function"].get("arguments") or "" for tc in calls)
    assert json.loads(args) == {"location": "Paris", "unit": "celsius"}
    finish = [ch["finish_reason"] for c in chunks[:-1] for ch in c["choices"]
              if ch["finish_reason"]]
    assert finish == ["tool_calls"]
    assert chunks[-2]["usage"]["estimated"] is True
    assert up.extra_usage == {"credits": 0.25, "estimated": 1}
    spec = fake.chat_bodies[-1]["conversationState"]["currentMessage"][
        "userInputMessage"]["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert "additionalProperties" not in spec["inputSchema"]["json"]


def test_non_stream_usage_from_context_percentage(fake):
    fake.context_percentage = 1.0

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            await p.models()
            up = await p.send("chat", chat("a b c"), {}, stream=False)
            return up, json.loads(await up.read())

    up, data = run(go())
    assert data["object"] == "chat.completion"
    assert data["usage"]["total_tokens"] == 2000  # 1% of the listed 200k window
    assert up.extra_usage["credits"] == 0.25


# --- models ----------------------------------------------------------------------------

def test_models_listing_and_public_name_matching(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            return await p.models()

    models = run(go())
    ids = [m.id for m in models]
    assert "claude-sonnet-4.5" in ids and "auto" in ids
    legacy = next(m for m in models if m.upstream_id == "CLAUDE_3_7_SONNET_20250219_V1_0")
    assert legacy.id == "claude-3.7-sonnet" and legacy.context_window == 200000
    assert normalize_model("claude-sonnet-4-5-20250929", ids) == "claude-sonnet-4.5"
    assert normalize_model("claude-sonnet-4.5", ids) == "claude-sonnet-4.5"
    assert normalize_model("claude-3-7-sonnet-20250219", ids) == "claude-3.7-sonnet"
    req = fake.requests_to("/ListAvailableModels")[-1]
    assert req.query["origin"] == ["AI_EDITOR"]
    assert req.query["profileArn"] == [fake.profile_arn]


def test_models_fall_back_to_known_ids_when_listing_fails(fake):
    fake.fail_next(500, endpoint="/ListAvailableModels")

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            return await p.models()

    ids = [m.id for m in run(go())]
    assert "claude-sonnet-4.5" in ids and "auto" in ids


def test_describe_reports_credits(fake):
    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            return await p.describe()

    info = run(go())
    assert info["plan"] == "KIRO FREE" and info["email"] == "dev@example.com"
    assert info["quotas"]["credit"]["remaining"] == 37.5
    q = fake.requests_to("/getUsageLimits")[-1].query
    assert q["resourceType"] == ["AGENTIC_REQUEST"] and q["isEmailRequired"] == ["true"]


def test_describe_fails_soft(fake):
    fake.fail_next(500, endpoint="/getUsageLimits")

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            return await p.describe()

    info = run(go())
    assert "usage_error" in info and info["auth_method"] == "social"


def test_next_month_start_wraps_the_year():
    dec = datetime(2025, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    assert next_month_start(dec) == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    mid = datetime(2025, 3, 15, tzinfo=UTC).timestamp()
    assert next_month_start(mid) == datetime(2025, 4, 1, tzinfo=UTC).timestamp()


def test_adopts_tokens_rotated_by_another_process(fake):
    """`tokn account show` (another process) rotated the token twice meanwhile: the
    server must continue from the live refresh token, not its dead in-memory one."""
    clock = [time.time()]

    async def go():
        async with httpx.AsyncClient() as client:
            soon = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
            write_config({"accounts": [kiro_account(fake, expires_at=soon)]})
            server = KiroProvider(config.load_config().accounts[0], client,
                                  clock=lambda: clock[0])
            assert (await server.send("chat", chat("a"), {}, stream=False)).status == 200
            other = KiroProvider(config.load_config().accounts[0], client)
            await other.tokens.token(refresh=True)
            await other.tokens.token(refresh=True)
            assert saved_account()["refresh_token"] == "aor-2"
            clock[0] += 7200  # the server's token is now stale
            up = await server.send("chat", chat("b"), {}, stream=False)
            return up.status, server

    status, server = run(go())
    assert status == 200 and server.refresh_count == 1
    assert [b["refreshToken"] for b in fake.refresh_bodies] == ["aor-initial", "aor-1", "aor-2"]
    assert saved_account()["refresh_token"] == "aor-3"


def test_corrupt_frame_mid_stream_raises_value_error(fake):
    fake.mode = "corrupt_mid_stream"

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider_for(kiro_account(fake), client)
            up = await p.send("chat", chat("one two three"), {}, stream=True)
            with pytest.raises(KiroStreamError, match="broken event stream"):
                async for _ in up.chunks():
                    pass
            await up.aclose()

    run(go())


def test_corrupt_frame_non_stream_is_502(fake):
    p, up, raw = _send_mode(fake, "corrupt_mid_stream")
    assert up.status == 502 and p.failure_kind(502, raw) == "account"


def test_a_rotation_written_to_the_config_keeps_the_provider_on_reload(fake):
    """Reloading the config file after the provider wrote its rotated refresh
    token there keeps the provider (and the account's health); a different
    refresh token (a new sign-in) builds a new one."""
    from tokn.pool import Pool

    soon = datetime.fromtimestamp(time.time() + 120, UTC).isoformat()  # inside the margin

    async def go():
        async with httpx.AsyncClient() as client:
            write_config({"accounts": [kiro_account(fake, expires_at=soon)]})
            pool = Pool(config.load_config, client)
            p = pool.providers["kiro"]
            await (await p.send("chat", chat(), {}, stream=False)).read()   # rotates
            rotated = config.load_config()
            assert rotated.accounts[0].get("refresh_token") == "aor-1"
            kept = pool.build(rotated.accounts, keep=pool.providers)
            doc = tomlkit.parse(paths.config_file().read_text())
            doc["accounts"][0]["refresh_token"] = "aor-signed-in-again"
            paths.config_file().write_text(tomlkit.dumps(doc))
            relogged = pool.build(config.load_config().accounts, keep=kept)
            return p, kept["kiro"], relogged["kiro"]

    p, kept, relogged = run(go())
    assert kept is p and kept.account.get("refresh_token") == "aor-1"
    assert kept.token_source.account is kept.account
    assert relogged is not p and relogged.account.get("refresh_token") == "aor-signed-in-again"
