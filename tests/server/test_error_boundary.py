"""The listener's error boundary for conversion: a malformed body is the client's
400 (in its own API format, naming the field); a bug inside a converter is a
logged 500, never dressed up as the client's mistake."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.fakes.kiro import FakeKiro
from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config
from tests.server.test_kiro_e2e import kiro_account
from tokn.convert.anthropic import request as anthropic_request

OK_MESSAGES = {"model": "gpt-4o", "max_tokens": 50,
               "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def chat_only():
    with FakeLLM(formats={"chat"}, models=["gpt-4o"]) as fake:
        write_config({"accounts": [account("chat", "openai-compatible", base_url=fake.url,
                                           api_key="k")]})
        yield fake


MALFORMED_MESSAGES = [
    ({"model": "gpt-4o", "max_tokens": 5}, "`messages` is required"),
    ({"model": "gpt-4o", "messages": "hi"}, "`messages` must be an array, not a string"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": 42}]},
     "`messages[0].content` must be a string or an array, not a number"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text",
                                                                     "text": ["x"]}]}]},
     "`messages[0].content[0].text` must be a string, not an array"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "system": 3},
     "`system` must be a string or an array, not a number"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"name": "f", "input_schema": "any"}]},
     "`tools[0].input_schema` must be an object, not a string"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "metadata": {"user_id": {"id": 1}}}, "`metadata.user_id` must be a string, not an object"),
]


@pytest.mark.parametrize("body,message", MALFORMED_MESSAGES)
def test_malformed_messages_body_is_a_400_in_anthropic_format(chat_only, body, message):
    with running_tokn() as tokn:
        resp = httpx.post(tokn.api_url + "/v1/messages", json=body, timeout=10)
        count = httpx.post(tokn.api_url + "/v1/messages/count_tokens", json=body, timeout=10)
    assert resp.status_code == 400
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert message in err["error"]["message"]
    assert count.status_code == 400 and message in count.json()["error"]["message"]
    assert not chat_only.requests_to("/chat/completions")  # nothing reached the upstream


@pytest.mark.parametrize("path,body,message", [
    ("/v1/responses", {"model": "gpt-4o"}, "`input` is required"),
    ("/v1/responses", {"model": "gpt-4o", "input": [{"type": "function_call", "arguments": 1}]},
     "`input[0].arguments` must be a string, not a number"),
    ("/v1/responses", {"model": "gpt-4o", "input": "x", "tools": {"type": "function"}},
     "`tools` must be an array, not an object"),
    ("/v1/responses", {"model": "gpt-4o", "input": "x", "text": {"format": "json"}},
     "`text.format` must be an object, not a string"),
])
def test_malformed_responses_body_is_a_400_in_openai_format(chat_only, path, body, message):
    with running_tokn() as tokn:
        resp = httpx.post(tokn.api_url + path, json=body, timeout=10)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request_body"
    assert message in err["message"]


def test_malformed_chat_body_converted_for_a_messages_upstream_is_a_400():
    with FakeLLM(formats={"messages"}, models=["claude-sonnet-4-5"]) as fake:
        write_config({"accounts": [account("a", "anthropic", base_url=fake.url,
                                           api_key="sk-ant")]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions", timeout=10, json={
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "assistant", "tool_calls": [{"function": "f"}]}]})
    assert resp.status_code == 400
    assert "`messages[0].tool_calls[0].function` must be an object, not a string" in \
        resp.json()["error"]["message"]
    assert not fake.requests_to("/v1/messages")


def test_malformed_chat_body_for_kiro_is_a_400():
    with FakeKiro() as fake:
        write_config({"accounts": [kiro_account(fake)]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions", timeout=10, json={
                "model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": 7}]})
    assert resp.status_code == 400
    assert "`messages[0].content` must be a string or an array, not a number" in \
        resp.json()["error"]["message"]


def test_a_converter_bug_is_a_logged_500_not_a_400(chat_only, monkeypatch, caplog):
    def broken(tc):
        raise KeyError("tool_choice")  # what a converter bug looks like

    monkeypatch.setattr(anthropic_request, "_tool_choice_to_chat", broken)
    body = {**OK_MESSAGES, "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto"}}
    with caplog.at_level(logging.ERROR, logger="tokn"), running_tokn() as tokn:
        resp = httpx.post(tokn.api_url + "/v1/messages", json=body, timeout=10)
        fine = httpx.post(tokn.api_url + "/v1/messages", json=OK_MESSAGES, timeout=10)
    assert resp.status_code == 500
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert "unexpected error" in err["error"]["message"]
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
    assert fine.status_code == 200  # the bug is in one code path, the rest still works
    assert len(chat_only.requests_to("/chat/completions")) == 1
    failed, ok = usage_rows()  # the failure is in the usage log too, with its reason
    assert (failed["status"], ok["status"]) == (500, 200)
    assert "unexpected error (KeyError" in failed["error"]
