"""Self-tests of the Google fakes, driven by httpx, google-auth and the official
``google-genai`` SDK (pointed straight at the fake: proof it speaks the real wire format)."""

from __future__ import annotations

import json

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2.credentials import Credentials

from tests.fakes.google import (
    GEMINI_CLI_CLIENT_ID,
    GEMINI_CLI_CLIENT_SECRET,
    FakeCodeAssist,
    FakeGeminiAPI,
    FakeGoogleOAuth,
)
from tokn.sse import SSEParser

KEY = "AIzaSy-fake-gemini-key"
RPC = "type.googleapis.com/google.rpc."


@pytest.fixture(autouse=True)
def _no_google_env(monkeypatch):
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL",
                 "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api():
    with FakeGeminiAPI() as fake:
        yield fake
        assert not fake.handler_errors


@pytest.fixture
def oauth():
    with FakeGoogleOAuth() as fake:
        yield fake
        assert not fake.handler_errors


@pytest.fixture
def code_assist(oauth):
    with FakeCodeAssist(oauth=oauth) as fake:
        yield fake
        assert not fake.handler_errors


_CLIENTS: list[genai.Client] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(fake: FakeGeminiAPI, key: str = KEY) -> genai.Client:
    """An SDK client kept alive for the test (the SDK closes its transport when collected)."""
    c = genai.Client(api_key=key, http_options={"base_url": fake.url})
    _CLIENTS.append(c)
    return c


def sse_events(raw: bytes) -> list[dict]:
    p = SSEParser()
    return [json.loads(e.data) for e in p.feed(raw) + p.close()]


# --- OAuth ------------------------------------------------------------------------


def refresh_form(oauth, **over):
    return {"grant_type": "refresh_token", "refresh_token": next(iter(oauth.refresh_tokens)),
            "client_id": GEMINI_CLI_CLIENT_ID, "client_secret": GEMINI_CLI_CLIENT_SECRET, **over}


def test_refresh_grant_answers_like_google(oauth):
    r = httpx.post(oauth.url + "/token", data=refresh_form(oauth))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"].startswith("ya29.")
    assert "cloud-platform" in body["scope"]
    info = httpx.get(oauth.url + "/tokeninfo", params={"access_token": body["access_token"]})
    assert info.json()["aud"] == GEMINI_CLI_CLIENT_ID and int(info.json()["expires_in"]) > 3500
    me = httpx.get(oauth.url + "/oauth2/v2/userinfo",
                   headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == "dev@example.com"


@pytest.mark.parametrize(("over", "status", "error"), [
    ({"refresh_token": "1//revoked"}, 400, "invalid_grant"),
    ({"refresh_token": ""}, 400, "invalid_request"),
    ({"client_secret": "wrong"}, 401, "invalid_client"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
])
def test_refresh_errors(oauth, over, status, error):
    r = httpx.post(oauth.url + "/token", data=refresh_form(oauth, **over))
    assert r.status_code == status
    assert r.json()["error"] == error and r.json()["error_description"]


def test_google_auth_library_refreshes_against_the_fake(oauth):
    creds = Credentials(None, refresh_token=next(iter(oauth.refresh_tokens)),
                        client_id=GEMINI_CLI_CLIENT_ID, client_secret=GEMINI_CLI_CLIENT_SECRET,
                        token_uri=oauth.url + "/token")
    creds.refresh(google.auth.transport.requests.Request())
    assert oauth.is_valid(creds.token) and creds.expiry is not None
    dead = Credentials(None, refresh_token="1//revoked", client_id=GEMINI_CLI_CLIENT_ID,
                       client_secret=GEMINI_CLI_CLIENT_SECRET, token_uri=oauth.url + "/token")
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        dead.refresh(google.auth.transport.requests.Request())


def test_authorization_code_grant_issues_a_refresh_token_once(oauth):
    code = oauth.issue_code()
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": "v" * 43,
            "redirect_uri": "http://127.0.0.1:1/oauth2callback",
            "client_id": GEMINI_CLI_CLIENT_ID, "client_secret": GEMINI_CLI_CLIENT_SECRET}
    first = httpx.post(oauth.url + "/token", data=form)
    assert first.status_code == 200 and first.json()["refresh_token"] in oauth.refresh_tokens
    again = httpx.post(oauth.url + "/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_expired_access_tokens(oauth, code_assist):
    token = oauth.issue_access_token()
    oauth.expire_access_tokens()
    info = httpx.get(oauth.url + "/tokeninfo", params={"access_token": token})
    assert info.status_code == 400 and info.json()["error"] == "invalid_token"
    r = httpx.post(code_assist.url + "/v1internal:loadCodeAssist", json={},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["status"] == "UNAUTHENTICATED"
    assert err["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    missing = httpx.post(code_assist.url + "/v1internal:loadCodeAssist", json={})
    assert missing.json()["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"


# --- Code Assist ------------------------------------------------------------------------


def ca_post(fake, oauth, method, body, token=None, **kw):
    token = token or oauth.issue_access_token()
    return httpx.post(f"{fake.url}/v1internal:{method}", json=body,
                      headers={"Authorization": f"Bearer {token}"}, **kw)


METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED",
            "pluginType": "GEMINI"}


def test_onboarding_flow_as_the_gemini_cli_runs_it(oauth):
    with FakeCodeAssist(oauth=oauth, onboarded=False, onboard_polls=2) as fake:
        token = oauth.issue_access_token()
        load = ca_post(fake, oauth, "loadCodeAssist",
                       {"metadata": {**METADATA, "duetProject": None}}, token).json()
        assert "currentTier" not in load
        default = next(t for t in load["allowedTiers"] if t.get("isDefault"))
        assert default["id"] == "free-tier"
        op = ca_post(fake, oauth, "onboardUser",
                     {"tierId": "free-tier", "metadata": METADATA}, token).json()
        assert op["done"] is False and op["name"].startswith("operations/")
        polls = []
        while not op["done"]:
            op = httpx.get(f"{fake.url}/v1internal/{op['name']}",
                           headers={"Authorization": f"Bearer {token}"}).json()
            polls.append(op["done"])
        assert polls == [False, True]
        project = op["response"]["cloudaicompanionProject"]["id"]
        assert op["response"]["@type"].endswith("v1internal.OnboardUserResponse")
        load = ca_post(fake, oauth, "loadCodeAssist", {"metadata": METADATA}, token).json()
        assert load["currentTier"]["id"] == "free-tier"
        assert load["cloudaicompanionProject"] == project
        assert not fake.handler_errors


def test_onboarding_by_repeating_onboard_user_and_standard_tier_needs_a_project(oauth):
    with FakeCodeAssist(oauth=oauth, onboarded=False, onboard_polls=1) as fake:
        bad = ca_post(fake, oauth, "onboardUser", {"tierId": "standard-tier",
                                                   "metadata": METADATA})
        assert bad.status_code == 400
        body = {"tierId": "standard-tier", "cloudaicompanionProject": "my-proj",
                "metadata": {**METADATA, "duetProject": "my-proj"}}
        assert ca_post(fake, oauth, "onboardUser", body).json()["done"] is False
        done = ca_post(fake, oauth, "onboardUser", body).json()
        assert done["done"] is True
        assert done["response"]["cloudaicompanionProject"]["id"] == "my-proj"


def envelope(fake, text="hello", model="gemini-2.5-pro", **request):
    return {"model": model, "project": fake.project, "user_prompt_id": "a1b2c3d4e5f6g7",
            "request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                        "generationConfig": {"temperature": 1, "topP": 0.95, "topK": 64,
                                             "thinkingConfig": {"includeThoughts": True,
                                                                "thinkingBudget": 8192}},
                        "session_id": "2f4e", **request}}


def test_generate_content_envelope(code_assist, oauth):
    r = ca_post(code_assist, oauth, "generateContent", envelope(code_assist))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"response", "traceId"}
    parts = body["response"]["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "thinking about: hello", "thought": True}
    assert parts[1]["text"] == "echo: hello" and parts[1]["thoughtSignature"]
    assert body["response"]["usageMetadata"]["thoughtsTokenCount"] > 0
    assert code_assist.requests[-1].meta["user_prompt_id"] == "a1b2c3d4e5f6g7"


def test_stream_generate_content_is_sse_of_envelopes(code_assist, oauth):
    r = ca_post(code_assist, oauth, "streamGenerateContent", envelope(code_assist, "a b c"),
                params={"alt": "sse"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in r.content  # Google ends events with CRLF CRLF
    events = sse_events(r.content)
    assert all(set(e) == {"response", "traceId"} for e in events)
    assert len({e["traceId"] for e in events}) == 1
    texts = [p.get("text", "") for e in events
             for p in e["response"]["candidates"][0]["content"]["parts"] if not p.get("thought")]
    assert "".join(texts) == "echo: a b c"
    assert events[-1]["response"]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(("change", "status", "needle"), [
    ({"project": "someone-elses"}, 403, "cloudaicompanion.companions.generateChat"),
    ({"model": "gemini-9-ultra"}, 404, "Requested entity was not found."),
    ({"extra": 1}, 400, 'Unknown name "extra"'),
])
def test_generate_envelope_errors(code_assist, oauth, change, status, needle):
    r = ca_post(code_assist, oauth, "generateContent", {**envelope(code_assist), **change})
    assert r.status_code == status and needle in r.json()["error"]["message"]


def test_model_inside_the_request_is_rejected(code_assist, oauth):
    body = envelope(code_assist, model="gemini-2.5-flash")
    body["request"]["model"] = "gemini-2.5-flash"
    r = ca_post(code_assist, oauth, "generateContent", body)
    assert r.status_code == 400 and 'Unknown name "model"' in r.json()["error"]["message"]


def test_quota_exhausted_as_code_assist_sends_it(code_assist, oauth):
    code_assist.exhaust_quota(model="gemini-2.5-pro", reset_in=7984.5)
    r = ca_post(code_assist, oauth, "generateContent", envelope(code_assist))
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED" and "2h13m4s" in err["message"]
    info, retry = err["details"]
    assert info["@type"] == RPC + "ErrorInfo" and info["reason"] == "QUOTA_EXHAUSTED"
    assert info["domain"] == "cloudcode-pa.googleapis.com"
    assert info["metadata"]["quotaResetDelay"] == "7984.5s"
    assert info["metadata"]["model"] == "gemini-2.5-pro"
    assert retry == {"@type": RPC + "RetryInfo", "retryDelay": "7984.5s"}
    other = ca_post(code_assist, oauth, "generateContent",
                    envelope(code_assist, model="gemini-2.5-flash"))
    assert other.status_code == 200
    code_assist.restore_quota()
    assert ca_post(code_assist, oauth, "generateContent", envelope(code_assist)).status_code == 200


def test_count_tokens_and_side_endpoints(code_assist, oauth):
    r = ca_post(code_assist, oauth, "countTokens", {"request": {
        "model": "models/gemini-2.5-pro", "contents": [{"role": "user", "parts": [
            {"text": "x" * 40}]}]}})
    assert r.json() == {"totalTokens": 11}
    bad = ca_post(code_assist, oauth, "countTokens", {"request": {"model": "gemini-2.5-pro",
                                                                  "contents": []}})
    assert bad.status_code == 400
    for method in ("listExperiments", "recordCodeAssistMetrics", "retrieveUserQuota",
                   "fetchAdminControls"):
        assert ca_post(code_assist, oauth, method, {"project": code_assist.project}
                       ).status_code == 200


# --- public API through the official SDK ---------------------------------------------


def test_sdk_generate_content(api):
    r = client(api).models.generate_content(model="gemini-2.5-flash", contents="hello there")
    assert r.text == "echo: hello there"
    assert r.usage_metadata.prompt_token_count == 3
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.model_version == "gemini-2.5-flash" and r.response_id
    req = api.requests[-1]
    assert req.headers["x-goog-api-key"] == KEY
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_sdk_stream(api):
    chunks = list(client(api).models.generate_content_stream(
        model="gemini-2.5-flash", contents="one two three"))
    assert "".join(c.text or "" for c in chunks) == "echo: one two three"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].candidates[0].content.parts[0].thought_signature  # bytes, decoded
    assert api.requests[-1].raw_query == "alt=sse"


def test_sdk_function_calling_round_trip(api):
    c = client(api)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="weather for a city",
        parameters_json_schema={"type": "object", "properties": {"location": {"type": "string"}}})])
    config = types.GenerateContentConfig(tools=[tool])
    ask = types.Content(role="user", parts=[types.Part(text="what is the weather in Paris?")])
    r = c.models.generate_content(model="gemini-3-pro-preview", contents=[ask], config=config)
    call = r.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"location": "Paris", "unit": "celsius"})
    answer = types.Part.from_function_response(name="get_weather", response={"output": "sunny"})
    r2 = c.models.generate_content(
        model="gemini-3-pro-preview", config=config,
        contents=[ask, r.candidates[0].content, types.Content(role="user", parts=[answer])])
    assert r2.text == "tool said: sunny"


def test_sdk_automatic_function_calling_sends_the_signature_back(api):
    def get_weather(location: str) -> str:
        """Weather for a city."""
        return f"rain in {location}"

    r = client(api).models.generate_content(
        model="gemini-3-pro-preview", contents="weather in Paris please",
        config=types.GenerateContentConfig(tools=[get_weather]))
    assert r.text == 'tool said: {"result": "rain in Paris"}'
    sent = api.requests[-1].json["contents"][1]["parts"][0]
    assert api.brain.issued(sent["thoughtSignature"])


def test_gemini_3_rejects_a_call_without_its_signature(api):
    contents = [{"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f",
                                                                 "response": {"x": 1}}}]}]
    url = f"{api.url}/v1beta/models/gemini-3-pro-preview:generateContent"
    r = httpx.post(url, json={"contents": contents}, headers={"x-goog-api-key": KEY})
    assert r.status_code == 400 and "missing a thought_signature" in r.json()["error"]["message"]
    contents[1]["parts"][0]["thoughtSignature"] = "Zm9yZ2Vk"
    r = httpx.post(url, json={"contents": contents}, headers={"x-goog-api-key": KEY})
    assert r.status_code == 400 and "Corrupted thought signature" in r.json()["error"]["message"]
    ok = httpx.post(f"{api.url}/v1beta/models/gemini-2.5-flash:generateContent",
                    json={"contents": contents}, headers={"x-goog-api-key": KEY})
    assert ok.status_code == 200  # 2.5 models do not insist


def test_sdk_image_input(api):
    png = b"\x89PNG\r\n\x1a\nfake-image-bytes"
    r = client(api).models.generate_content(model="gemini-2.5-flash", contents=[
        types.Part.from_bytes(data=png, mime_type="image/png"), "what is this?"])
    assert r.text == "echo: what is this?"
    assert api.requests[-1].meta["images"] == [("image/png", len(png))]


def test_sdk_count_tokens_and_models_list(api):
    c = client(api)
    assert c.models.count_tokens(model="gemini-2.5-flash", contents="x" * 40).total_tokens == 11
    names = [m.name for m in c.models.list(config={"page_size": 2})]
    assert names == [m["name"] for m in api.models] and len(names) > 4
    assert [r.raw_query for r in api.requests_to("/models")] == [
        "pageSize=2", *(f"pageSize=2&pageToken={n}" for n in range(2, len(names), 2))]
    m = c.models.get(model="gemini-2.5-pro")
    assert m.input_token_limit == 1048576 and m.display_name == "Gemini 2.5 Pro"


def test_sdk_json_output(api):
    r = client(api).models.generate_content(
        model="gemini-2.5-flash", contents="data",
        config={"response_mime_type": "application/json",
                "response_json_schema": {"type": "object"}})
    assert r.parsed == {"echo": "data"}


@pytest.mark.parametrize(("key", "model", "code", "status"), [
    ("AIza-wrong", "gemini-2.5-flash", 400, "INVALID_ARGUMENT"),
    (KEY, "gemini-9-ultra", 404, "NOT_FOUND"),
    (KEY, "text-embedding-004", 404, "NOT_FOUND"),
])
def test_sdk_errors(api, key, model, code, status):
    with pytest.raises(genai_errors.ClientError) as info:
        client(api, key).models.generate_content(model=model, contents="x")
    assert (info.value.code, info.value.status) == (code, status)


def test_key_in_query_and_missing_key(api):
    ok = httpx.post(f"{api.url}/v1beta/models/gemini-2.5-flash:generateContent",
                    params={"key": KEY}, json={"contents": [{"parts": [{"text": "q"}]}]})
    assert ok.json()["candidates"][0]["content"]["parts"][0]["text"] == "echo: q"
    none = httpx.get(f"{api.url}/v1beta/models")
    assert none.status_code == 403 and none.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = httpx.get(f"{api.url}/v1beta/models", headers={"x-goog-api-key": "nope"})
    assert bad.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_quota_429_as_the_api_sends_it(api):
    api.exhaust_quota(retry_in=41.48)
    with pytest.raises(genai_errors.ClientError) as info:
        client(api).models.generate_content(model="gemini-2.5-flash", contents="x")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    assert "Please retry in 41.48s." in info.value.message
    details = {d["@type"].rsplit(".", 1)[1]: d for d in info.value.details["error"]["details"]}
    assert details["RetryInfo"]["retryDelay"] == "41s"
    assert details["QuotaFailure"]["violations"][0]["quotaId"].startswith(
        "GenerateRequestsPerMinute")
    api.restore_quota()
    assert client(api).models.generate_content(model="gemini-2.5-flash", contents="x").text


def test_stream_without_alt_sse_is_a_json_array(api):
    r = httpx.post(f"{api.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                   json={"contents": [{"parts": [{"text": "a b"}]}]},
                   headers={"x-goog-api-key": KEY})
    chunks = r.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(("body", "needle"), [
    ({"contents": []}, "contents is not specified"),
    ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text parameter"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
    ({"contents": [{"parts": [{"thought": True}]}]}, "required oneof field 'data'"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "@@"}}]}]},
     "Base64 decoding failed"),
    ({"contents": [{"parts": [{"text": "x"}]}], "stream": True}, 'Unknown name "stream"'),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}},
     'Unknown name "max_tokens"'),
    ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [
        {"name": "bad name"}]}]}, "Invalid function name"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": {
        "thinkingLevel": "low", "thinkingBudget": 10}}}, "only one of thinking budget"),
    ({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}},
                                               {"functionCall": {"name": "b", "args": {}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "a",
                                                                    "response": {}}}]}]},
     "number of function response parts"),
])
def test_validation_like_google(api, body, needle):
    r = httpx.post(f"{api.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body,
                   headers={"x-goog-api-key": KEY})
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT" and needle in r.json()["error"][
        "message"]
