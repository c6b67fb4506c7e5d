"""Google clients unchanged behind `eval "$(tokn proxy env)"`: route mode for
generativelanguage.googleapis.com (served by any pooled account), switch mode
for Code Assist (the envelope names the pooled account's project) and Code
Assist passing through by default."""

from __future__ import annotations

import time

import httpx

from tests.fakes.google import FakeCodeAssist, FakeGeminiAPI, FakeGoogleOAuth
from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    applied_env,
    free_port,
    genai_exchanges,
    proxy_env,
    running_tokn,
    usage_rows,
    write_config,
)
from tokn import ca, state
from tokn.config import load_config
from tokn.providers.gemini.code_assist import PROJECTS, TOKEN_STATE, owner_of

CA_HOST = "cloudcode-pa.googleapis.com"


def test_ca_is_constrained_to_the_google_api_hosts():
    write_config({})
    files = ca.ensure_ca(load_config())
    wanted = ca.wanted_patterns(load_config())
    assert "generativelanguage.googleapis.com" in wanted and CA_HOST in wanted
    assert ca.constraints_outdated(load_config()) == []
    assert files.cert_path.exists()


def test_genai_sdk_route_mode_served_by_a_copilot_style_account(genai_sdk):
    with FakeLLM(formats={"chat"}, models=["gemini-2.5-flash"], copilot_quirks=True) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port}, "accounts": [
            account("chat", "openai-compatible", base_url=fake.url, api_key="k")]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            genai_exchanges(genai_sdk(key="AIza-client-own-key"), "gemini-2.5-flash")
        assert fake.requests and all(r.headers["authorization"] == "Bearer k"
                                     for r in fake.requests)
        assert "AIza-client-own-key" not in str([dict(r.headers) for r in fake.requests])


def test_genai_sdk_route_mode_served_by_a_gemini_cli_account(genai_sdk):
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(oauth=oauth) as code_assist:
        port = free_port()
        write_config({"proxy_mode": {"port": port}, "accounts": [account(
            "gcli", "gemini-cli", base_url=code_assist.url, refresh_url=oauth.url + "/token",
            refresh_token=next(iter(oauth.refresh_tokens)))]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            genai_exchanges(genai_sdk(key="AIza-client-own-key"), "gemini-3-pro-preview")
        sent = code_assist.requests_to(":streamGenerateContent")[-1].json
        assert sent["project"] == code_assist.project and "request" in sent
        assert not code_assist.handler_errors


def _code_assist_call(project: str, token: str) -> httpx.Response:
    body = {"model": "gemini-2.5-flash", "project": project, "user_prompt_id": "p1",
            "request": {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}
    with httpx.Client(timeout=30) as client:  # proxy and CA from the env block
        return client.post(f"https://{CA_HOST}/v1internal:generateContent", json=body,
                           headers={"authorization": f"Bearer {token}"})


def test_code_assist_passes_through_by_default_and_switch_names_the_pooled_project(
        public_ca, tls_context_for):
    _, root = public_ca
    with FakeGoogleOAuth() as oauth, FakeCodeAssist(
            oauth=oauth, access_tokens={"ya29.client-own"}, project="pooled-project",
            ssl_context=tls_context_for(CA_HOST)) as code_assist:
        port = free_port()
        refresh = next(iter(oauth.refresh_tokens))
        write_config({"proxy_mode": {"port": port, "upstream_ca_bundle": str(root),
                                     "upstream_overrides": {CA_HOST: f"127.0.0.1:"
                                                                     f"{code_assist.port}"}},
                      "accounts": [account("gcli", "gemini-cli", refresh_token=refresh,
                                           refresh_url=oauth.url + "/token")]})
        # the pooled account's project is known (discovered earlier)
        state.update(PROJECTS, "gcli", {"project": "pooled-project", "tier": "free-tier",
                                        "owner": owner_of(refresh)})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            own = _code_assist_call("pooled-project", "ya29.client-own")
            assert own.status_code == 200, own.text
            assert code_assist.requests[-1].bearer() == "ya29.client-own"  # passthrough

            write_config({"proxy_mode": {"port": port, "upstream_ca_bundle": str(root),
                                         "provider_modes": {"gemini-cli": "switch"},
                                         "upstream_overrides": {
                                             CA_HOST: f"127.0.0.1:{code_assist.port}"}},
                          "accounts": [account("gcli", "gemini-cli", refresh_token=refresh,
                                               refresh_url=oauth.url + "/token")]})
        # a new process reads the new config: switch mode
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            switched = _code_assist_call("the-clients-own-project", "ya29.someone-else")
            assert switched.status_code == 200, switched.text
            assert switched.json()["response"]["candidates"][0]["content"]["parts"][0][
                "text"] == "echo: hello"
        seen = code_assist.requests[-1]
        assert seen.json["project"] == "pooled-project"
        assert oauth.is_valid(seen.bearer()) and seen.bearer() != "ya29.someone-else"
        assert state.read(TOKEN_STATE)["gcli"]["expires_at"] > time.time()


def test_genai_sdk_passthrough_keeps_the_clients_key_and_records_usage(public_ca,
                                                                        tls_context_for,
                                                                        genai_sdk):
    _, root = public_ca
    host = "generativelanguage.googleapis.com"
    with FakeGeminiAPI(api_keys={"AIza-client-own-key"},
                       ssl_context=tls_context_for(host)) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port, "route_mode": "passthrough",
                                     "upstream_ca_bundle": str(root),
                                     "upstream_overrides": {host: f"127.0.0.1:{fake.port}"}}})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False) as tokn, \
                applied_env(env):
            client = genai_sdk(key="AIza-client-own-key")
            plain = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
            chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash",
                                                                contents="a b c"))
            tokn.runtime.usage.flush()
            rows = usage_rows(tokn.runtime.usage.path)
        assert plain.text == "echo: hi"
        assert "".join(c.text or "" for c in chunks) == "echo: a b c"
        assert all(r.headers["x-goog-api-key"] == "AIza-client-own-key" for r in fake.requests)
    assert [(r["route_mode"], r["inbound_format"], r["stream"], r["status"]) for r in rows] == [
        ("passthrough", "gemini", 0, 200), ("passthrough", "gemini", 1, 200)]
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
    assert {r["model_requested"] for r in rows} == {"gemini-2.5-flash"}
    assert rows[1]["error"] is None  # the stream ended as Gemini streams end


def test_genai_sdk_switch_mode_puts_the_pooled_key_in(public_ca, tls_context_for, genai_sdk):
    _, root = public_ca
    host = "generativelanguage.googleapis.com"
    with FakeGeminiAPI(api_keys={"AIza-pooled"}, ssl_context=tls_context_for(host)) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port, "route_mode": "switch",
                                     "upstream_ca_bundle": str(root),
                                     "upstream_overrides": {host: f"127.0.0.1:{fake.port}"}},
                      "accounts": [account("gem", "gemini", api_key="AIza-pooled")]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = genai_sdk(key="AIza-client-own-key")
            assert client.models.generate_content(model="gemini-2.5-flash",
                                                  contents="hi").text == "echo: hi"
            # a key in the URL goes too: only the pooled one reaches Google
            with httpx.Client(timeout=30) as plain:
                r = plain.post(f"https://{host}/v1beta/models/gemini-2.5-flash:generateContent"
                               "?key=AIza-client-own-key",
                               json={"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
            assert r.status_code == 200, r.text
        for seen in fake.requests:
            assert seen.headers["x-goog-api-key"] == "AIza-pooled"
            assert "AIza-client-own-key" not in seen.target + str(dict(seen.headers))
