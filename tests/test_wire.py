"""The wire-format table is the one source of paths, error formats and stream
error events: the listener, the proxy's route mode, the providers and the
converters all read it, and a format with a path parameter fits it."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.routing import Match, Route

from tests.helpers import running_tokn, write_config
from tokn import wire
from tokn.convert import stream_converter
from tokn.providers.base import Provider
from tokn.sse import SSEParser


def test_every_listener_path_is_served_with_its_method():
    write_config({})
    with running_tokn() as tokn, httpx.Client(base_url=tokn.api_url, timeout=10) as client:
        for ep in wire.ENDPOINTS:
            for route in ep.routes:
                path = route.replace("{model}", "some-model")
                resp = client.request(ep.method, path, json={"messages": []})
                # a model listing, or the pipeline's own answer to a body without a
                # model; a path naming a model (Gemini's): nobody serves it (503, 404)
                ok = (200, 400, 404, 503) if "{model}" in route else (200, 400)
                assert resp.status_code in ok, (ep.fmt, path, resp.text)
                other = "GET" if ep.method == "POST" else "POST"
                assert client.request(other, path, json={}).status_code == 405


def test_route_mode_finds_each_endpoint_under_any_prefix():
    for ep in wire.ENDPOINTS:
        for path in (*ep.routes, "/api/coding/paas/v4" + ep.path, ep.path + "/?x=1"):
            found = wire.match(ep.method, path)
            assert found is not None and found[0] is ep, path
            assert ep.listener_path(found[1]) in ep.routes


def test_providers_default_paths_are_the_tables():
    # a format's first endpoint (Gemini's generateContent before streamGenerateContent)
    assert Provider.paths == {ep.fmt: ep.path for ep in reversed(wire.ENDPOINTS)}
    assert Provider.paths["gemini"] == "/models/{model}:generateContent"


@pytest.mark.parametrize("path,host,headers,api", [
    ("/v1/messages/count_tokens", "api.openai.com", {}, "anthropic"),  # the endpoint's
    ("/v1/messages/count_tokens", "", {}, "anthropic"),
    ("/v1/chat/completions", "api.anthropic.com", {}, "openai"),  # its OpenAI-style endpoint
    ("/v1/files", "api.anthropic.com", {}, "anthropic"),  # unknown path: the host's
    ("/v1/files", "api.openai.com", {}, "openai"),
    ("/v1/models", "", {"anthropic-version": "2023-06-01"}, "anthropic"),  # shared: marker
    ("/v1/models", "api.anthropic.com", {}, "anthropic"),  # shared: then the host
    ("/v1/models", "", {}, "openai"),
    ("/v1/messages/batches", "", {}, "anthropic"),  # under a listener path
    ("/v1/nothing", "", {}, "openai"),
])
def test_one_rule_for_the_callers_error_format(path, host, headers, api):
    assert wire.caller_api(path, host=host, headers=headers).name == api


def test_both_listener_answers_use_the_one_rule():
    """The guard (before routing) and the 404 agree with the pipeline's format."""
    write_config({})
    with running_tokn() as tokn, httpx.Client(base_url=tokn.api_url, timeout=10) as client:
        bad_type = client.post("/v1/messages/count_tokens", content=b"{}",
                               headers={"content-type": "text/plain"})
        unknown = client.post("/v1/messages/batches", json={})
        models = client.get("/v1/models/x", headers={"anthropic-version": "2023-06-01"})
        chat = client.post("/v1/chat/completions", content=b"{}",
                           headers={"content-type": "text/plain"})
    for resp in (bad_type, unknown, models):
        assert resp.json().get("type") == "error", (resp.request.url, resp.text)  # Anthropic
    assert "type" not in chat.json() and chat.json()["error"]["type"]  # OpenAI's


GEMINI_LIKE = wire.Endpoint("generate", "POST", wire.OPENAI, "/models/{model}:generateContent",
                            ("/v1beta/models/{model}:generateContent",
                             "/v1/models/{model}:generateContent"))


def test_a_path_parameter_is_one_segment_and_reaches_the_listener_path():
    assert GEMINI_LIKE.match("POST", "/v1beta/models/gemini-2.5-pro:generateContent?alt=sse") \
        == {"model": "gemini-2.5-pro"}
    assert GEMINI_LIKE.match("POST", "/v1beta/models/a/b:generateContent") is None
    assert GEMINI_LIKE.match("POST", "/v1beta/models/m:streamGenerateContent") is None
    assert GEMINI_LIKE.listener_path({"model": "m-1"}) == "/v1beta/models/m-1:generateContent"
    # the listener registers the same template as a Starlette route
    route = Route(GEMINI_LIKE.routes[0], lambda r: None, methods=["POST"])
    match, scope = route.matches({"type": "http", "method": "POST",
                                  "path": "/v1beta/models/gemini-2.5-pro:generateContent"})
    assert match is Match.FULL and scope["path_params"] == {"model": "gemini-2.5-pro"}


def _events(raw: bytes) -> list[tuple[str | None, dict]]:
    return [(e.event, json.loads(e.data)) for e in SSEParser().feed(raw + b"\n\n")
            if e.data.strip() and e.data.strip() != "[DONE]"]


@pytest.mark.parametrize("fmt", [ep.fmt for ep in wire.ENDPOINTS if ep.stream_error])
@pytest.mark.parametrize("src", ["same", "chat", "messages"])
def test_converters_end_a_stream_with_the_tables_error_event(fmt, src):
    conv = stream_converter(fmt if src == "same" else src, fmt)
    event, data = wire.stream_error(fmt, "boom")
    sent = [(name if event else None, {k: v for k, v in got.items() if k != "sequence_number"})
            for name, got in _events(conv.error("boom"))]  # (Responses numbers its events)
    assert (event, data) in sent
