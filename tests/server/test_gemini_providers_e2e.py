"""The `gemini` (API key) and `gemini-cli` (Google sign-in + Code Assist) providers
end to end: official SDKs against the listener, served by the Google fakes."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from tests.fakes.google import FakeCodeAssist, FakeGeminiAPI, FakeGoogleOAuth
from tests.helpers import (
    account,
    genai_exchanges,
    running_tokn,
    usage_rows,
    wait_for_rows,
    write_config,
)
from tokn import state
from tokn.providers.gemini.code_assist import PROJECTS

KEY = "AIzaSy-fake-gemini-key"


def exercise_anthropic(url: str, model: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="unused")
    msg = client.messages.create(model=model, max_tokens=256, system="Be brief.",
                                 messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].text == "echo: hello" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    ask = [{"role": "user", "content": "weather in Paris?"}]
    with client.messages.stream(model=model, max_tokens=256, tools=tools, messages=ask) as s:
        called = s.get_final_message()
    use = next(b for b in called.content if b.type == "tool_use")
    assert called.stop_reason == "tool_use" and use.input == {"location": "Paris",
                                                               "unit": "celsius"}
    result = [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]
    done = client.messages.create(model=model, max_tokens=256, tools=tools, messages=[
        *ask, {"role": "assistant", "content": called.content},
        {"role": "user", "content": result}])
    assert done.content[0].text == "tool said: sunny"


def test_gemini_api_key_account(genai_sdk):
    with FakeGeminiAPI(api_keys={KEY}) as fake:
        write_config({"accounts": [account("gem", "gemini", base_url=fake.url + "/v1beta",
                                           api_key=KEY)]})
        with running_tokn() as tokn:
            genai_exchanges(genai_sdk(tokn.api_url), "gemini-3-pro-preview")
            # the Gemini 3 call was sent back with its thought signature
            back = fake.requests_to(":generateContent")[-2].json["contents"][1]["parts"][0]
            assert fake.brain.issued(back["thoughtSignature"])
            exercise_anthropic(tokn.api_url, "gemini-2.5-flash")
            names = [m.name for m in genai_sdk(tokn.api_url).models.list()]
            assert "models/gemini-2.5-pro" in names
        assert all(r.headers.get("x-goog-api-key") == KEY for r in fake.requests)
        assert not fake.handler_errors
    rows = wait_for_rows(9)
    assert {r["provider"] for r in rows} == {"gemini"}
    assert all(r["status"] == 200 and r["upstream_format"] == "gemini" for r in rows)
    assert any(r["inbound_format"] == "messages" and r["output_tokens"] > 0 for r in rows)


def test_gemini_api_daily_quota_parks_the_account():
    with FakeGeminiAPI(api_keys={KEY}) as fake:
        fake.exhaust_quota(daily=True, retry_in=3600)
        write_config({"accounts": [account("gem", "gemini", base_url=fake.url + "/v1beta",
                                           api_key=KEY)]})
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="gemini-2.5-flash",
                                               messages=[{"role": "user", "content": "hi"}])
            health = state.read("health")["gem"]
            assert health["exhausted_until"] > time.time() + 3000


def test_gemini_cli_account_onboards_refreshes_and_serves_every_client(genai_sdk):
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(oauth=oauth, onboarded=False,
                                                     onboard_polls=1) as ca:
        refresh = next(iter(oauth.refresh_tokens))
        write_config({"accounts": [account(
            "gcli", "gemini-cli", base_url=ca.url, refresh_url=oauth.url + "/token",
            refresh_token=refresh, settings={"onboard_poll_secs": 0.05})]})
        with running_tokn() as tokn:
            genai_exchanges(genai_sdk(tokn.api_url), "gemini-3-pro-preview")
            methods = [r.meta.get("method") for r in ca.requests]
            assert methods[:2] == ["loadCodeAssist", "onboardUser"]
            assert methods.count("loadCodeAssist") == 1  # the project is cached
            sent = ca.requests_to(":generateContent")[-1].json
            assert sent["project"] == ca.project and sent["model"] == "gemini-3-pro-preview"
            assert state.read(PROJECTS)["gcli"]["project"] == ca.project

            oauth.expire_access_tokens()  # a 401: one refresh, then the retry succeeds
            exercise_anthropic(tokn.api_url, "gemini-2.5-flash")
            grants = [r.form.get("grant_type") for r in oauth.requests_to("/token")]
            assert grants == ["refresh_token", "refresh_token"]
            chat = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x")
            stream = chat.chat.completions.create(
                model="gemini-2.5-pro", stream=True,
                messages=[{"role": "user", "content": "streamed"}])
            assert "".join(c.choices[0].delta.content or "" for c in stream
                           if c.choices) == "echo: streamed"

            ca.exhaust_quota(reset_in=7200)
            with pytest.raises(openai.RateLimitError) as err:
                chat.with_options(max_retries=0).chat.completions.create(
                    model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}])
            assert "exhausted your capacity" in str(err.value)
            until = state.read("health")["gcli"]["exhausted_until"]
            assert time.time() + 7000 < until < time.time() + 7300
        assert not ca.handler_errors and not oauth.handler_errors
    rows = usage_rows()
    assert rows[-1]["status"] == 429 and rows[-1]["provider"] == "gemini-cli"
    assert all(refresh not in str(r) for r in rows)
