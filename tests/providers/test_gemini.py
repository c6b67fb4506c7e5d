"""The Gemini providers' setup and judgement: `tokn import --from gemini-cli`,
the Google browser sign-in, refresh failures, error classification, switch
rewrites and `tokn account show`, against the Google fakes."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from tests.fakes.google import (
    GEMINI_CLI_CLIENT_ID,
    FakeCodeAssist,
    FakeGeminiAPI,
    FakeGoogleOAuth,
)
from tests.helpers import account, write_config
from tokn import accounts, config, state
from tokn.accounts import account_config
from tokn.auth import google
from tokn.cli import app
from tokn.errors import ToknError
from tokn.providers.gemini.api import (
    GeminiProvider,
    google_failure_kind,
    google_quota_reset,
    strip_query_key,
)
from tokn.providers.gemini.code_assist import PROJECTS, GeminiCliProvider, owner_of
from tokn.providers.setup import Setup

runner = CliRunner()


def test_the_cli_client_is_the_gemini_clis():
    assert google.CLIENT_ID == GEMINI_CLI_CLIENT_ID  # the fake's copy, from the CLI's source


def saved() -> dict[str, dict]:
    return {a["id"]: a for a in config.load_document().unwrap().get("accounts", [])}


def test_import_from_the_gemini_cli_then_account_show(tmp_path, monkeypatch):
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(oauth=oauth, onboarded=False,
                                                     onboard_polls=0) as code_assist:
        refresh = next(iter(oauth.refresh_tokens))
        monkeypatch.setenv("HOME", str(tmp_path))
        creds = tmp_path / ".gemini" / "oauth_creds.json"
        creds.parent.mkdir()
        creds.write_text(json.dumps({
            "access_token": "ya29.stale", "refresh_token": refresh, "token_type": "Bearer",
            "scope": " ".join(google.SCOPES), "expiry_date": int(time.time() - 60) * 1000}))
        res = runner.invoke(app, ["import", "--from", "gemini-cli", "--base-url",
                                  code_assist.url, "--refresh-url", oauth.url + "/token"])
        assert res.exit_code == 0, res.output
        assert "dev@example.com" in res.output and code_assist.project in res.output
        acc = saved()["gemini-cli"]
        assert acc["refresh_token"] == refresh and acc["email"] == "dev@example.com"
        assert acc["expires_at"] < time.time()  # kept, but expired: refreshed on first use
        assert [r.meta.get("method") for r in code_assist.requests] == [
            "loadCodeAssist", "onboardUser"]

        again = runner.invoke(app, ["import", "--from", "gemini-cli", "--base-url",
                                    code_assist.url, "--refresh-url", oauth.url + "/token"])
        assert again.exit_code == 0 and list(saved()) == ["gemini-cli"]  # the same one

        shown = runner.invoke(app, ["account", "show", "gemini-cli", "--json"])
        assert shown.exit_code == 0, shown.output
        live = json.loads(shown.output)["live"]
        assert live["plan"] == "Gemini Code Assist for individuals"
        assert live["project"] == code_assist.project
        assert {w["kind"] for w in live["quota"]} >= {"gemini-2.5-pro", "gemini-2.5-flash"}
        assert all(w["used_percent"] == 0 for w in live["quota"])
        assert refresh not in shown.output


def test_import_without_a_cli_sign_in_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    res = runner.invoke(app, ["import", "--from", "gemini-cli"])
    assert res.exit_code != 0
    assert "Login with Google" in res.output and "Traceback" not in res.output


def test_browser_login_with_pkce_and_loopback():
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(oauth=oauth) as code_assist:
        seen: dict[str, list[str]] = {}

        def browser(url: str) -> None:  # the person signs in; Google redirects back
            query = parse_qs(urlsplit(url).query)
            seen.update(query)
            redirect = query["redirect_uri"][0]
            r = httpx.get(redirect, params={"code": oauth.issue_code(redirect),
                                            "state": query["state"][0]}, timeout=10)
            assert r.status_code == 200 and b"complete" in r.content

        async def go() -> dict:
            creds = await GeminiCliProvider.login(Setup(open_browser=browser),
                                                  google_url=oauth.url)
            async with httpx.AsyncClient() as client:
                added = await accounts.add(GeminiCliProvider, creds, base_url=code_assist.url,
                                           client=client)
            return added.values

        values = asyncio.run(go())
        token_url = oauth.url + "/token"
        refresh_tokens = set(oauth.refresh_tokens)
    assert urlsplit(seen["redirect_uri"][0]).path == "/oauth2callback"
    assert seen["redirect_uri"][0].startswith("http://localhost:")
    assert seen["client_id"] == [GEMINI_CLI_CLIENT_ID]
    assert seen["access_type"] == ["offline"] and seen["code_challenge_method"] == ["S256"]
    assert set(seen["scope"][0].split()) == set(google.SCOPES)
    assert values["refresh_token"] in refresh_tokens
    assert values["email"] == "dev@example.com" and values["refresh_url"] == token_url
    assert saved()[values["id"]]["refresh_token"] == values["refresh_token"]
    grants = [r.form.get("grant_type") for r in oauth.requests_to("/token")]
    assert grants[0] == "authorization_code" and oauth.requests_to("/token")[0].form[
        "code_verifier"]


def test_user_code_login_for_a_machine_without_a_browser():
    with FakeGoogleOAuth() as oauth:
        said: list[str] = []
        setup = Setup(say=said.append, ask_secret=lambda label: f"  {oauth.issue_code()}\n")
        creds = asyncio.run(GeminiCliProvider.login(setup, google_url=oauth.url,
                                                    user_code=True))
        exchange = oauth.requests_to("/token")[-1].form
        tokens = set(oauth.refresh_tokens)
    url = said[-1].split("\n")[-1]
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == [google.USER_CODE_REDIRECT]
    assert exchange["redirect_uri"] == google.USER_CODE_REDIRECT and exchange["code_verifier"]
    assert creds.fields["refresh_token"] in tokens and creds.fields["email"] == "dev@example.com"
    with pytest.raises(ToknError, match="no authorization code"):
        asyncio.run(GeminiCliProvider.login(Setup(say=said.append, ask_secret=lambda _: " "),
                                            user_code=True))


def test_browser_login_refuses_a_foreign_state():
    with FakeGoogleOAuth() as oauth:
        def browser(url: str) -> None:
            redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
            httpx.get(redirect, params={"code": oauth.issue_code(), "state": "forged"})

        with pytest.raises(ToknError, match="wrong state"):
            asyncio.run(GeminiCliProvider.login(Setup(open_browser=browser),
                                                google_url=oauth.url))
        assert not oauth.requests_to("/token")


def provider(values: dict, client: httpx.AsyncClient) -> GeminiCliProvider:
    return GeminiCliProvider(account_config(values), client)


def test_a_revoked_refresh_token_names_the_login():
    with FakeGoogleOAuth() as oauth:
        async def go():
            async with httpx.AsyncClient() as client:
                p = provider({"id": "g", "provider": "gemini-cli",
                              "refresh_url": oauth.url + "/token",
                              "refresh_token": "1//revoked"}, client)
                return await p.credentials()

        with pytest.raises(ToknError) as err:
            asyncio.run(go())
    assert err.value.status == 401 and "tokn login --provider gemini-cli" in err.value.message
    assert "invalid_grant" in err.value.message


def test_tokens_are_renewed_ahead_of_expiry_once_for_concurrent_calls():
    with FakeGoogleOAuth(expires_in=3599) as oauth:
        refresh = next(iter(oauth.refresh_tokens))

        async def go():
            async with httpx.AsyncClient() as client:
                p = provider({"id": "g", "provider": "gemini-cli", "refresh_token": refresh,
                              "refresh_url": oauth.url + "/token",
                              "access_token": "ya29.imported",
                              "expires_at": int(time.time() + 100)}, client)  # < 5 min left
                return await asyncio.gather(*(p.credentials() for _ in range(5)))

        headers = asyncio.run(go())
    assert len({h["authorization"] for h in headers}) == 1
    assert headers[0]["authorization"] != "Bearer ya29.imported"
    assert len(oauth.requests_to("/token")) == 1


def test_switch_rewrites_the_code_assist_project_only():
    refresh = "1//x"
    state.update(PROJECTS, "g", {"project": "mine", "owner": owner_of(refresh)})

    async def go():
        async with httpx.AsyncClient() as client:
            p = provider({"id": "g", "provider": "gemini-cli", "refresh_token": refresh},
                         client)
            envelope = json.dumps({"model": "m", "project": "theirs", "request": {}}).encode()
            path, body = await p.switch_target("/v1internal:generateContent", envelope)
            assert json.loads(body)["project"] == "mine" and path.endswith(":generateContent")
            load = json.dumps({"metadata": {}}).encode()
            assert (await p.switch_target("/v1internal:loadCodeAssist", load))[1] is load
            key = GeminiProvider(account_config({"id": "k", "provider": "gemini",
                                                 "api_key": "K"}), client)
            return await key.switch_target("/v1beta/models/m:generateContent?alt=sse&key=AIza",
                                           None)

    assert asyncio.run(go()) == ("/v1beta/models/m:generateContent?alt=sse", None)
    assert strip_query_key("/p?key=a") == "/p" and strip_query_key("/p?keys=a") == "/p?keys=a"


def _quota_error(fake_cls, **kw) -> tuple[int, bytes]:
    """A real 429 from a fake (its exact bytes)."""
    with fake_cls(**kw) as fake:
        fake.exhaust_quota(**({"daily": True} if fake_cls is FakeGeminiAPI else {}))
        if fake_cls is FakeGeminiAPI:
            r = httpx.post(f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent",
                           headers={"x-goog-api-key": "AIzaSy-fake-gemini-key"},
                           json={"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
        else:
            r = httpx.post(f"{fake.url}/v1internal:generateContent",
                           headers={"authorization": "Bearer t"},
                           json={"model": "gemini-2.5-pro", "project": fake.project,
                                 "request": {"contents": []}})
        return r.status_code, r.content


def test_quota_errors_park_until_the_reset_google_names():
    status, body = _quota_error(FakeCodeAssist, access_tokens={"t"})
    assert status == 429 and google_failure_kind(status, body) == "quota"
    reset = google_quota_reset(body, time.time())
    assert reset is not None and abs(reset - (time.time() + 33740)) < 120
    status, body = _quota_error(FakeGeminiAPI)
    assert google_failure_kind(status, body) == "quota"
    assert google_quota_reset(body, 1000.0) == 1041.0  # RetryInfo says "41s"
    per_minute = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "slow down"}}).encode()
    assert google_failure_kind(429, per_minute) == "account"
    bad_key = json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "x",
                                    "details": [{"@type": "type.googleapis.com/google.rpc."
                                                 "ErrorInfo", "reason": "API_KEY_INVALID"}]}})
    assert google_failure_kind(400, bad_key.encode()) == "account"
    assert google_failure_kind(400, b'{"error": {"code": 400}}') is None  # the request's


def test_a_wrong_api_key_is_refused_at_login():
    with FakeGeminiAPI() as fake:
        write_config({"accounts": [account("k", "gemini", base_url=fake.url + "/v1beta",
                                           api_key="AIza-wrong")]})
        res = runner.invoke(app, ["login", "--provider", "gemini", "--key-stdin", "--base-url",
                                  fake.url + "/v1beta"], input="AIza-wrong\n")
        assert res.exit_code != 0 and "rejected" in res.output
        good = runner.invoke(app, ["login", "--provider", "gemini", "--key-stdin",
                                   "--base-url", fake.url + "/v1beta"],
                             input="AIzaSy-fake-gemini-key\n")
        assert good.exit_code == 0, good.output


def test_login_on_the_command_line_with_a_pasted_code():
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(oauth=oauth) as code_assist:
        code = oauth.issue_code()
        res = runner.invoke(app, ["login", "--provider", "gemini-cli", "--user-code",
                                  "--google-url", oauth.url, "--base-url", code_assist.url],
                            input=code + "\n")
        assert res.exit_code == 0, res.output
        assert "codeassist.google.com%2Fauthcode" in res.output.replace("\n", "")
        acc = saved()["gemini-cli"]
        assert acc["refresh_token"] in oauth.refresh_tokens
        assert acc["refresh_url"] == oauth.url + "/token" and acc["base_url"] == code_assist.url
        assert code not in config.paths.config_file().read_text()
