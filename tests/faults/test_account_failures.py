"""Account problems are reported as such (not "model not found"), recorded, shown
by `tokn account list`, and retried with backoff until they are fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, tokn_process, usage_rows, write_config

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def _copilot(gh_url: str) -> None:
    write_config({"accounts": [account("copilot", "github-copilot", github_token="gho_revoked",
                                       settings={"github_api_url": gh_url,
                                                 "github_base_url": gh_url})]})


def _health(account_id: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tokn", "account", "list", "--json"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return next(r for r in json.loads(out.stdout) if r["id"] == account_id)["health"]


def test_revoked_github_token_says_so_records_a_row_and_recovers_after_login():
    with FakeGitHub() as gh, FakeLLM(copilot_style=True, models=["gpt-4.1"]) as api:
        gh.copilot_api_url = api.url
        gh.valid_github_tokens = set()  # the token was revoked
        _copilot(gh.url)
        with tokn_process() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                client.chat.completions.create(**CHAT)
            assert "account copilot was rejected" in info.value.message
            assert "tokn login --id copilot" in info.value.message
            # /v1/models says why it is empty
            models = httpx.get(tokn.api_url + "/v1/models")
            assert models.status_code == 401 and "tokn login" in models.text
            # a burst of requests does not hammer GitHub: the exchange backs off
            for _ in range(10):
                assert httpx.post(tokn.api_url + "/v1/chat/completions",
                                  json=CHAT).status_code == 401
            assert gh.exchange_count <= 3
            health = _health("copilot")
            assert health["status"] == "failing"
            assert "tokn login --id copilot" in health["last_error"]
            # the user signs in again (here: GitHub accepts the token again)
            gh.valid_github_tokens = None
            deadline = time.monotonic() + 10
            while True:
                resp = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT)
                if resp.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"] == "echo: hi"
    rows = usage_rows()
    assert rows[0]["status"] == 401 and rows[0]["account"] == "copilot"
    assert rows[0]["provider"] == "github-copilot"
    assert "tokn login --id copilot" in rows[0]["error"]
    assert rows[-1]["status"] == 200
    assert not any(r["status"] == 404 for r in rows)


def test_github_down_at_start_is_a_502_naming_the_account_until_it_is_back():
    port = free_port()
    gh_url = f"http://127.0.0.1:{port}"
    with FakeLLM(copilot_style=True, models=["gpt-4.1"]) as api:
        _copilot(gh_url)
        with tokn_process() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 502
            error = resp.json()["error"]["message"]
            assert "account 'copilot'" in error and f"cannot reach {gh_url}" in error
            assert "Connect" in error  # what failed, in the exception's words
            with FakeGitHub(port=port) as gh:  # GitHub is back
                gh.copilot_api_url = api.url
                deadline = time.monotonic() + 10
                while resp.status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    resp = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT)
                assert resp.status_code == 200, resp.text
                assert [m["id"] for m in httpx.get(tokn.api_url + "/v1/models").json()["data"]] \
                    == ["gpt-4.1"]
    statuses = [r["status"] for r in usage_rows()]
    assert statuses[0] == 502 and statuses[-1] == 200


def test_refused_connection_names_the_account_and_its_url():
    port = free_port()
    write_config({"accounts": [account("local", "openai-compatible",
                                       base_url=f"http://127.0.0.1:{port}/v1")]})
    with tokn_process() as tokn:
        resp = httpx.post(tokn.api_url + "/v1/chat/completions", json={**CHAT, "model": "m1"})
        health = _health("local")
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert f"account local cannot reach http://127.0.0.1:{port}/v1/models" in message
    assert "ConnectError" in message and "base_url" in message
    assert health["status"] == "failing"
    (row,) = usage_rows()
    assert (row["status"], row["account"], row["model_requested"]) == (502, "local", "m1")
