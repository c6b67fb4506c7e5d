"""Every request line names the served model and, for a failure, its reason; a
request refused before any upstream was tried is a log line and a usage row
too — except a caller tokn does not accept (no key, a foreign Host/Origin),
which is only logged: the usage log holds what accepted callers asked."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, wait_for_rows, write_config

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def chat_only():
    with FakeLLM(formats={"chat"}, models=["gpt-4o"]) as fake:
        write_config({"accounts": [account("chat", "openai-compatible", base_url=fake.url,
                                           api_key="k", settings={"formats": ["chat"]})]})
        yield fake


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tokn.request"]


def test_served_and_rejected_requests_are_lines_and_rows(chat_only, caplog):
    with caplog.at_level(logging.INFO, logger="tokn"), running_tokn() as tokn:
        url = tokn.api_url
        ok = httpx.post(url + "/v1/chat/completions", json=CHAT)
        unknown = httpx.post(url + "/v1/chat/completions", json={**CHAT, "model": "nope-1"})
        no_model = httpx.post(url + "/v1/chat/completions", json={"messages": []})
        not_json = httpx.post(url + "/v1/chat/completions", content=b"{oops",
                              headers={"content-type": "application/json"})
        no_format = httpx.post(url + "/v1/embeddings", json={"model": "gpt-4o", "input": "x"})
        rows = wait_for_rows(5)
    assert [r.status_code for r in (ok, unknown, no_model, not_json, no_format)] == \
        [200, 404, 400, 400, 400]
    by_status = [(r["status"], r["model_requested"], r["model_served"], r["account"])
                 for r in usage_rows()]
    assert by_status == [(200, "gpt-4o", "gpt-4o", "chat"), (404, "nope-1", None, None),
                         (400, None, None, None), (400, None, None, None),
                         (400, "gpt-4o", None, "chat")]
    assert all(r["error"] for r in rows[1:]) and rows[0]["error"] is None
    assert "nope-1" in rows[1]["error"] and "`model` is required" in rows[2]["error"]
    assert "not valid JSON" in rows[3]["error"]
    assert rows[4]["error"] == "account chat cannot serve embeddings requests for gpt-4o."
    lines = _lines(caplog)
    assert len(lines) == 5
    assert " openai-compatible/chat gpt-4o -> gpt-4o 200 " in lines[0]
    assert " reason: " not in lines[0]
    assert " -/- nope-1 -> - 404 " in lines[1] and f" reason: {rows[1]['error']}" in lines[1]
    assert " -/- - -> - 400 " in lines[2] and "reason: `model` is required" in lines[2]
    assert "reason: The request body is not valid JSON" in lines[3]
    assert "openai-compatible/chat gpt-4o -> - 400 " in lines[4]


def test_callers_tokn_refuses_are_logged_not_recorded(chat_only, caplog):
    with caplog.at_level(logging.INFO, logger="tokn"), running_tokn(api_key="k" * 32) as tokn:
        no_key = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT)
        foreign = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT,
                             headers={"origin": "https://evil.example",
                                      "authorization": "Bearer " + "k" * 32})
        assert httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT,
                          headers={"authorization": "Bearer " + "k" * 32}).status_code == 200
        rows = wait_for_rows(1)
    assert (no_key.status_code, foreign.status_code) == (401, 403)
    assert len(rows) == 1 and rows[0]["status"] == 200
    refused = [r.getMessage() for r in caplog.records if "listener: refused" in r.getMessage()]
    assert len(refused) == 2
    assert refused[0].startswith("listener: refused POST /v1/chat/completions from 127.0.0.1:")
    assert refused[0].endswith(": 401 no valid API key")
    assert ": 403 requests from the web origin 'https://evil.example' are not allowed" \
        in refused[1]
