"""Official SDKs -> tokn (listener, and the MITM proxy in route mode) -> a Kiro
account -> FakeKiro speaking binary event-stream frames on loopback."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
import tomlkit
from typer.testing import CliRunner

from tests.fakes.kiro import FakeKiro
from tests.helpers import (
    account,
    applied_env,
    free_port,
    proxy_env,
    running_tokn,
    usage_rows,
    write_config,
)
from tokn import paths

PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"},
                                                             "unit": {"type": "string"}},
                            "required": ["location"]}}


@pytest.fixture
def fake():
    with FakeKiro() as f:
        yield f


def kiro_account(fake: FakeKiro, account_id: str = "kiro", **fields):
    values = {"base_url": fake.url, "refresh_url": fake.url + "/refreshToken",
              "auth_method": "social", "access_token": "aoa-initial",
              "refresh_token": "aor-initial", "expires_at": FUTURE,
              "profile_arn": fake.profile_arn, **fields}
    return account(account_id, "kiro", **values)




def test_anthropic_sdk_stream_with_tools_and_non_stream(fake):
    write_config({"accounts": [kiro_account(fake)]})
    with running_tokn() as tokn:
        client = anthropic.Anthropic(base_url=tokn.api_url, api_key="unused")
        with client.messages.stream(
                model="claude-sonnet-4-5-20250929", max_tokens=256, tools=[WEATHER],
                messages=[{"role": "user", "content": "What's the weather in Paris?"}]) as s:
            final = s.get_final_message()
        assert final.stop_reason == "tool_use"
        tool = next(b for b in final.content if b.type == "tool_use")
        assert tool.name == "get_weather"
        assert tool.input == {"location": "Paris", "unit": "celsius"}
        # answer the tool call: the result goes to Kiro as toolResults
        follow = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=256, tools=[WEATHER],
            messages=[{"role": "user", "content": "What's the weather in Paris?"},
                      {"role": "assistant", "content": final.content},
                      {"role": "user", "content": [{"type": "tool_result",
                                                    "tool_use_id": tool.id,
                                                    "content": "sunny, 21C"}]}])
        assert follow.content[0].text == "tool said: sunny, 21C"
        msg = client.messages.create(
            model="claude-sonnet-4.5", max_tokens=64,
            messages=[{"role": "user", "content": "hello kiro"}])
        assert msg.content[0].text == "echo: hello kiro"
        assert msg.usage.output_tokens > 0
    assert not fake.errors
    models = {b["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
              for b in fake.chat_bodies}
    assert models == {"claude-sonnet-4.5"}


def test_openai_sdk_stream_and_non_stream_with_credits_recorded(fake):
    fake.credits = 0.5
    write_config({"accounts": [kiro_account(fake)]})
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused")
        resp = client.chat.completions.create(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "hi there"}])
        assert resp.choices[0].message.content == "echo: hi there"
        chunks = list(client.chat.completions.create(
            model="claude-haiku-4-5", stream=True,
            messages=[{"role": "user", "content": "streaming now please"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: streaming now please"
        ids = [m.id for m in client.models.list().data]
        assert "claude-sonnet-4.5" in ids and "claude-3.7-sonnet" in ids
    rows = [r for r in usage_rows() if r["provider"] == "kiro"]
    assert len(rows) == 2
    assert all(r["credits"] == 0.5 and r["estimated"] == 1 and r["status"] == 200
               for r in rows)
    assert [r["stream"] for r in rows] == [0, 1]
    assert all(r["output_tokens"] > 0 for r in rows)


def test_anthropic_sdk_through_proxy_route_mode(fake):
    port = free_port()
    write_config({"proxy_mode": {"port": port}, "accounts": [kiro_account(fake)]})
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
            applied_env(env):
        client = anthropic.Anthropic(api_key="dummy")
        assert str(client.base_url).startswith("https://api.anthropic.com")
        msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "via the proxy"}])
        assert msg.content[0].text == "echo: via the proxy"
        with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=64, tools=[WEATHER],
                messages=[{"role": "user", "content": "weather in Paris"}]) as s:
            final = s.get_final_message()
        assert final.stop_reason == "tool_use"
    req = fake.requests_to("/generateAssistantResponse")[-1]
    assert req.bearer() == "aoa-initial"  # Kiro saw the account's token, not "dummy"


def test_refresh_rotation_persisted_through_the_server(fake):
    write_config({"accounts": [kiro_account(fake, expires_at=PAST)]})
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused")
        for text in ("one", "two"):
            resp = client.chat.completions.create(
                model="claude-sonnet-4.5", messages=[{"role": "user", "content": text}])
            assert resp.choices[0].message.content == f"echo: {text}"
    assert fake.refresh_bodies == [{"kind": "social", "refreshToken": "aor-initial"}]
    saved = tomlkit.parse(paths.config_file().read_text())["accounts"][0]
    assert saved["refresh_token"] == "aor-1" and saved["access_token"] == "aoa-1"
    # the old token is dead upstream: a restart must use the saved one
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused")
        resp = client.chat.completions.create(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "three"}])
        assert resp.choices[0].message.content == "echo: three"
    assert len(fake.refresh_bodies) == 1


def test_idc_refresh_through_the_server(fake):
    write_config({"accounts": [kiro_account(
        fake, auth_method="idc", client_id=fake.client_id, client_secret=fake.client_secret,
        refresh_url=fake.url + "/token", profile_arn="", expires_at=PAST)]})
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused")
        resp = client.chat.completions.create(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "idc"}])
        assert resp.choices[0].message.content == "echo: idc"
    assert fake.refresh_bodies == [{"kind": "idc", "clientId": "client-1",
                                    "clientSecret": "secret-1", "grantType": "refresh_token",
                                    "refreshToken": "aor-initial"}]
    assert "profileArn" not in fake.chat_bodies[-1]
    saved = tomlkit.parse(paths.config_file().read_text())["accounts"][0]
    assert saved["refresh_token"] == "aor-1"


def test_403_token_wording_refreshes_once_through_the_server(fake):
    write_config({"accounts": [kiro_account(fake)]})
    with running_tokn() as tokn:
        client = anthropic.Anthropic(base_url=tokn.api_url, api_key="unused")
        client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                               messages=[{"role": "user", "content": "warm up"}])
        fake.mode = "token_403"
        msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                     messages=[{"role": "user", "content": "after 403"}])
        assert msg.content[0].text == "echo: after 403"
    assert len(fake.refresh_bodies) == 1
    bearers = [r.bearer() for r in fake.requests_to("/generateAssistantResponse")]
    assert bearers == ["aoa-initial", "aoa-initial", "aoa-1"]


def test_quota_takes_account_out_of_rotation(fake):
    from tokn.cli import app

    with FakeKiro(access_tokens={"aoa-b"}, refresh_tokens={"aor-b"}) as other:
        write_config({"pool": {"strategy": "fill_first"}, "accounts": [
            kiro_account(fake, "kiro-a"),
            kiro_account(other, "kiro-b", access_token="aoa-b", refresh_token="aor-b")]})
        fake.mode = "quota"
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused",
                                   max_retries=0)
            for text in ("first", "second"):
                resp = client.chat.completions.with_raw_response.create(
                    model="claude-sonnet-4.5", messages=[{"role": "user", "content": text}])
                assert resp.headers["x-tokn-account"] == "kiro-b"
                assert resp.parse().choices[0].message.content == f"echo: {text}"
            health = tokn.runtime.pool.health["kiro-a"]
        assert health.exhausted_until and health.exhausted_until > 0
        assert len(fake.requests_to("/generateAssistantResponse")) == 1  # never tried again
        res = CliRunner().invoke(app, ["account", "list", "--json"])
        assert res.exit_code == 0, res.output
        rows = {r["id"]: r for r in json.loads(res.output)}
        assert rows["kiro-a"]["health"]["status"] == "exhausted"
        assert rows["kiro-b"]["health"]["status"] == "ok"


def test_context_overflow_reaches_the_client_as_400(fake):
    write_config({"accounts": [kiro_account(fake)]})
    fake.mode = "context_overflow"
    with running_tokn() as tokn:
        client = anthropic.Anthropic(base_url=tokn.api_url, api_key="unused", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                   messages=[{"role": "user", "content": "too long"}])
        assert "CONTENT_LENGTH_EXCEEDS_THRESHOLD" in str(info.value)
        fake.mode = None
        ok = client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                    messages=[{"role": "user", "content": "fine"}])
        assert ok.content[0].text == "echo: fine"  # no cooldown for a client error


def test_mid_stream_exception_ends_the_stream_with_an_error(fake):
    write_config({"accounts": [kiro_account(fake)]})
    fake.mode = "exception_mid_stream"
    with running_tokn() as tokn:
        client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused", max_retries=0)
        got = []
        with pytest.raises(openai.APIError):
            for chunk in client.chat.completions.create(
                    model="claude-sonnet-4.5", stream=True,
                    messages=[{"role": "user", "content": "one two three"}]):
                got.extend(c.delta.content or "" for c in chunk.choices)
        assert "".join(got).startswith("echo:")
    row = [r for r in usage_rows() if r["provider"] == "kiro"][-1]
    assert row["status"] == 502 and "InternalServerException" in row["error"]


def test_account_show_reports_kiro_credits(fake):
    from tokn.cli import app

    write_config({"accounts": [kiro_account(fake)]})
    res = CliRunner().invoke(app, ["account", "show", "kiro", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["provider"] == "kiro"
    assert data["live"]["plan"] == "KIRO FREE"
    assert data["live"]["quotas"]["credit"]["remaining"] == 37.5
    assert "aor-initial" not in res.output  # secrets masked
