"""Gemini <-> chat whole responses, usage, finish reasons, and the wire helpers."""

import pytest

from tokn.convert import common
from tokn.convert.common import Usage
from tokn.convert.gemini import (
    chat_response_to_gemini,
    gemini_response_to_chat,
    observe_chunk,
    usage_from_gemini,
    usage_of_response,
    usage_to_gemini,
)
from tokn.convert.gemini.base import encode_call_id
from tokn.convert.gemini.response import finish_from_gemini, finish_to_gemini
from tokn.convert.gemini.wire import (
    api_path,
    code_assist_path,
    count_tokens_body,
    count_tokens_request,
    count_tokens_response,
    error_body,
    error_reason,
    format_duration,
    model_entry,
    model_ids,
    models_list,
    parse_duration,
    parse_path,
    retry_delay,
    unwrap_code_assist_request,
    unwrap_code_assist_response,
    wrap_code_assist_request,
    wrap_code_assist_response,
)


@pytest.fixture(autouse=True)
def fixed(monkeypatch):
    n = iter(range(1000))
    monkeypatch.setattr(common, "make_id", lambda prefix: f"{prefix}{next(n):03d}")
    monkeypatch.setattr(common, "now", lambda: 1700000000)


GEMINI_RESPONSE = {
    "candidates": [{
        "content": {"role": "model", "parts": [
            {"text": "**Plan**\n\nCall the tool.", "thought": True},
            {"text": "Checking Oslo."},
            {"functionCall": {"name": "get_weather", "args": {"c": "Oslo"}},
             "thoughtSignature": "sig-1"},
            {"functionCall": {"id": "r2", "name": "get_weather", "args": {"c": "Rome"}}}]},
        "finishReason": "STOP", "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
    "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20,
                      "totalTokenCount": 150, "cachedContentTokenCount": 64,
                      "thoughtsTokenCount": 30},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "Ab3d",
}


def test_gemini_response_to_chat():
    chat = gemini_response_to_chat(GEMINI_RESPONSE)
    assert chat == {
        "id": "chatcmpl-Ab3d", "object": "chat.completion", "created": 1700000000,
        "model": "gemini-2.5-flash",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                     "native_finish_reason": "STOP", "message": {
                         "role": "assistant", "content": "Checking Oslo.",
                         "reasoning_content": "**Plan**\n\nCall the tool.",
                         "tool_calls": [
                             {"id": encode_call_id("gcall_000", "sig-1"), "type": "function",
                              "function": {"name": "get_weather", "arguments": '{"c":"Oslo"}'}},
                             {"id": "r2", "type": "function",
                              "function": {"name": "get_weather",
                                           "arguments": '{"c":"Rome"}'}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                  "prompt_tokens_details": {"cached_tokens": 64},
                  "completion_tokens_details": {"reasoning_tokens": 30}},
    }
    assert gemini_response_to_chat(GEMINI_RESPONSE, model="alias")["model"] == "alias"


def test_round_trip_gemini_chat_gemini_keeps_parts_signatures_usage_and_reason():
    back = chat_response_to_gemini(gemini_response_to_chat(GEMINI_RESPONSE))
    expected = {k: v for k, v in GEMINI_RESPONSE.items()}
    cand = {k: v for k, v in GEMINI_RESPONSE["candidates"][0].items() if k != "safetyRatings"}
    expected["candidates"] = [cand]
    assert back == expected


def test_chat_response_to_gemini():
    chat = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
            "choices": [
                {"index": 0, "finish_reason": "length",
                 "message": {"role": "assistant", "content": "Hel", "refusal": None}},
                {"index": 1, "finish_reason": "content_filter",
                 "message": {"role": "assistant", "content": None}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
    assert chat_response_to_gemini(chat, model="alias") == {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Hel"}]},
             "finishReason": "MAX_TOKENS", "index": 0},
            {"content": {"role": "model", "parts": []}, "finishReason": "SAFETY", "index": 1}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3,
                          "totalTokenCount": 13},
        "modelVersion": "alias", "responseId": "9"}


def test_anthropic_thinking_signature_reaches_gemini_as_a_thought_signature():
    chat = {"choices": [{"message": {"role": "assistant", "content": "Hi",
                                     "reasoning_content": "think", "reasoning_signature": "EqQB"},
                         "finish_reason": "stop"}]}
    parts = chat_response_to_gemini(chat)["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "think", "thought": True, "thoughtSignature": "EqQB"},
                     {"text": "Hi"}]


def test_prompt_blocked_and_empty_candidates():
    blocked = gemini_response_to_chat({"promptFeedback": {"blockReason": "SAFETY"},
                                       "usageMetadata": {"promptTokenCount": 7}})
    assert blocked["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ""},
                                   "finish_reason": "content_filter", "logprobs": None,
                                   "native_finish_reason": "SAFETY"}]
    assert blocked["usage"]["prompt_tokens"] == 7
    safety = gemini_response_to_chat({"candidates": [{"finishReason": "RECITATION"}]})
    assert safety["choices"][0]["message"] == {"role": "assistant", "content": ""}
    assert safety["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize(("reason", "calls", "finish"), [
    ("STOP", False, "stop"), ("STOP", True, "tool_calls"), ("MAX_TOKENS", False, "length"),
    ("CONTINUATION", False, "length"), ("SAFETY", False, "content_filter"),
    ("RECITATION", False, "content_filter"), ("BLOCKLIST", False, "content_filter"),
    ("PROHIBITED_CONTENT", False, "content_filter"), ("SPII", False, "content_filter"),
    ("IMAGE_SAFETY", False, "content_filter"), ("LANGUAGE", False, "content_filter"),
    ("MALFORMED_FUNCTION_CALL", False, "stop"), ("UNEXPECTED_TOOL_CALL", False, "stop"),
    ("TOO_MANY_TOOL_CALLS", True, "tool_calls"), ("OTHER", False, "stop"),
    ("FINISH_REASON_UNSPECIFIED", False, "stop"), ("max_tokens", False, "length"),
    (None, False, None), ("", True, None),
])
def test_finish_from_gemini(reason, calls, finish):
    assert finish_from_gemini(reason, calls) == finish


def test_finish_to_gemini_prefers_a_valid_native_reason():
    assert [finish_to_gemini(f) for f in ("stop", "tool_calls", "length", "content_filter",
                                          "function_call", None, "weird")] == [
        "STOP", "STOP", "MAX_TOKENS", "SAFETY", "STOP", "STOP", "STOP"]
    assert finish_to_gemini("stop", "MALFORMED_FUNCTION_CALL") == "MALFORMED_FUNCTION_CALL"
    assert finish_to_gemini("content_filter", "recitation") == "RECITATION"
    assert finish_to_gemini("length", "end_turn") == "MAX_TOKENS"  # not a Gemini reason


def test_usage_semantics():
    u = usage_from_gemini({"promptTokenCount": 100, "candidatesTokenCount": 20,
                           "cachedContentTokenCount": 64, "thoughtsTokenCount": 30,
                           "toolUsePromptTokenCount": 5, "totalTokenCount": 155})
    assert u == Usage(input_tokens=41, output_tokens=50, cache_read_tokens=64,
                      reasoning_tokens=30)
    assert u.total_tokens == 155  # the same total Google reports
    assert usage_from_gemini({"prompt_token_count": 9, "candidates_token_count": 2}) == Usage(
        input_tokens=9, output_tokens=2)
    assert usage_from_gemini(None) == Usage()
    assert usage_to_gemini(Usage(input_tokens=10, output_tokens=7, cache_read_tokens=5,
                                 cache_write_tokens=2, reasoning_tokens=4)) == {
        "promptTokenCount": 17, "candidatesTokenCount": 3, "totalTokenCount": 24,
        "cachedContentTokenCount": 5, "thoughtsTokenCount": 4}


def test_usage_of_envelopes_and_stream_chunks():
    inner = {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
             "modelVersion": "gemini-2.5-pro"}
    assert usage_of_response({"response": inner, "traceId": "t"}).output_tokens == 1
    assert observe_chunk({"response": inner, "traceId": "t"}) == (
        "gemini-2.5-pro", Usage(input_tokens=3, output_tokens=1))
    assert observe_chunk({"candidates": []}) == (None, None)
    assert observe_chunk("[DONE]") == (None, None)


def test_code_assist_envelope():
    body = {"model": "gemini-2.5-pro", "stream": True, "contents": [{"parts": [{"text": "x"}]}]}
    env = wrap_code_assist_request(body, project="p-1", user_prompt_id="u-9")
    assert env == {"model": "gemini-2.5-pro", "project": "p-1", "user_prompt_id": "u-9",
                   "request": {"contents": [{"parts": [{"text": "x"}]}]}}
    assert wrap_code_assist_request(body, project=None)["project"] is None
    env["request"]["session_id"] = "s-1"
    assert unwrap_code_assist_request(env) == {"contents": [{"parts": [{"text": "x"}]}],
                                               "model": "gemini-2.5-pro"}
    resp = {"candidates": [], "responseId": "r1"}
    assert wrap_code_assist_response(resp) == {"response": resp, "traceId": "r1"}
    assert wrap_code_assist_response({"candidates": []}) == {"response": {"candidates": []}}
    assert unwrap_code_assist_response({"response": {"candidates": []}, "traceId": "t9"}) == {
        "candidates": [], "responseId": "t9"}
    assert unwrap_code_assist_response({"response": {"candidates": [], "responseId": "r"},
                                        "traceId": "t"})["responseId"] == "r"
    assert unwrap_code_assist_response(resp) is resp
    assert gemini_response_to_chat({"response": {"candidates": []}, "traceId": "tt"})["id"] == \
        "chatcmpl-tt"


def test_count_tokens_shapes():
    public = {"contents": [{"parts": [{"text": "a"}]}]}
    assert count_tokens_request(public) == public
    assert count_tokens_request({"generateContentRequest": {
        "model": "models/gemini-2.5-flash", "contents": [], "tools": []}}) == {
        "model": "gemini-2.5-flash", "contents": [], "tools": []}
    assert count_tokens_request({"request": {"model": "models/gemini-2.5-pro",
                                             "contents": []}}) == {"model": "gemini-2.5-pro",
                                                                   "contents": []}
    body = {"model": "gemini-2.5-flash", "contents": public["contents"]}
    assert count_tokens_body(body) == public
    assert count_tokens_body({**body, "systemInstruction": {"parts": [{"text": "s"}]}}) == {
        "generateContentRequest": {"model": "models/gemini-2.5-flash",
                                   "contents": public["contents"],
                                   "systemInstruction": {"parts": [{"text": "s"}]}}}
    assert count_tokens_body(body, code_assist=True) == {
        "request": {"model": "models/gemini-2.5-flash", "contents": public["contents"]}}
    assert count_tokens_response(12) == {"totalTokens": 12, "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": 12}]}
    assert count_tokens_response(12, code_assist=True) == {"totalTokens": 12}


def test_models_list_shape():
    body = models_list(["gemini-2.5-pro", {"name": "models/custom", "displayName": "C"}])
    assert body["models"][0] == {"name": "models/gemini-2.5-pro", "version": "001",
                                 "displayName": "gemini-2.5-pro",
                                 "supportedGenerationMethods": ["generateContent",
                                                                "countTokens"]}
    assert model_entry("models/x", display_name="X", input_limit=10, output_limit=5) == {
        "name": "models/x", "version": "001", "displayName": "X", "inputTokenLimit": 10,
        "outputTokenLimit": 5, "supportedGenerationMethods": ["generateContent", "countTokens"]}
    assert model_ids(body) == ["gemini-2.5-pro", "custom"]


def test_paths():
    assert api_path("gemini-2.5-flash") == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert api_path("models/g", "streamGenerateContent") == \
        "/v1beta/models/g:streamGenerateContent?alt=sse"
    assert code_assist_path("streamGenerateContent") == "/v1internal:streamGenerateContent?alt=sse"
    assert code_assist_path("loadCodeAssist") == "/v1internal:loadCodeAssist"
    assert parse_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse") == (
        "gemini-2.5-flash", "streamGenerateContent")
    assert parse_path("/v1/models/gemini-3-pro-preview:countTokens") == (
        "gemini-3-pro-preview", "countTokens")
    assert parse_path("/v1internal:generateContent") == (None, "generateContent")
    assert parse_path("/v1beta/models") is None
    assert parse_path("/v1/chat/completions") is None


def test_error_body():
    assert error_body(404, "no such model") == {
        "error": {"code": 404, "message": "no such model", "status": "NOT_FOUND"}}
    assert error_body(429, "slow down", "RATE_LIMIT_EXCEEDED", retry_after=2.5) == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
                  "details": [
                      {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                       "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"},
                      {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                       "retryDelay": "2.5s"}]}}
    assert [error_body(s, "m")["error"]["status"] for s in (400, 401, 403, 500, 503, 504, 418,
                                                            599)] == [
        "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL", "UNAVAILABLE",
        "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL"]


def test_format_duration():
    assert [format_duration(s) for s in (2.5, 60, 33740.910400305, 0, -3)] == [
        "2.5s", "60s", "33740.910400305s", "0s", "0s"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("41s", 41.0), ("0.5s", 0.5), ("500ms", 0.5), ("2h13m4.5s", 7984.5),
    ("33740.910400305s", 33740.910400305), ("1m", 60.0), ("", None), ("soon", None),
    ("4s later", None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_retry_delay_and_reason_of_quota_errors():
    code_assist = {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Individual quota reached. Resets in 9h22m20s.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
             "domain": "cloudcode-pa.googleapis.com",
             "metadata": {"quotaResetDelay": "33740.910400305s", "uiMessage": "true",
                          "quotaResetTimeStamp": "2026-09-20T21:03:14Z"}},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo",
             "retryDelay": "33740.910400305s"}]}}
    assert retry_delay(code_assist) == pytest.approx(33740.910400305)
    assert error_reason(code_assist) == "QUOTA_EXHAUSTED"
    no_retry_info = {"error": {**code_assist["error"],
                               "details": code_assist["error"]["details"][:1]}}
    no_retry_info["error"]["details"][0]["metadata"]["quotaResetDelay"] = "2h13m4.5s"
    assert retry_delay(no_retry_info) == 7984.5
    text_only = {"error": {"code": 429, "message": "You exceeded your current quota. "
                                                   "Please retry in 58.934310785s."}}
    assert retry_delay(text_only) == pytest.approx(58.934310785)
    assert retry_delay({"error": {"code": 429, "message": "Resets in 9h22m20s."}}) == 33740
    assert retry_delay({"error": {"code": 429, "message": "Resource has been exhausted"}}) is None
    assert error_reason({"error": {"code": 400}}) is None
    assert retry_delay("not json") is None
