"""GET /v1/usage (filters, JSON, auth) and DELETE /v1/usage?confirm=true."""

from __future__ import annotations

import httpx

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config
from tokn.usage_query import parse_since

KEY = "sk-tokn-test"


def chat(client, model, text="hi", stream=False):
    r = client.post("/v1/chat/completions", json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def test_usage_endpoint_filters_auth_and_reset():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m-a", "m-b"]) as fake:
        write_config({"accounts": [account("one", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-up")]})
        with running_tokn(api_key=KEY) as tokn:
            auth = {"authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=tokn.api_url, headers=auth, timeout=30) as c:
                for i in range(3):
                    chat(c, "m-a", f"hello {i}")
                chat(c, "m-b", "streamed words here", stream=True)

                # auth: no key / wrong key -> 401, x-api-key works too
                assert httpx.get(tokn.api_url + "/v1/usage").status_code == 401
                assert httpx.get(tokn.api_url + "/v1/usage",
                                 headers={"authorization": "Bearer nope"}).status_code == 401
                assert httpx.delete(tokn.api_url + "/v1/usage?confirm=true").status_code == 401
                assert httpx.get(tokn.api_url + "/v1/usage",
                                 headers={"x-api-key": KEY}).status_code == 200

                # rows are queued off the request path; GET flushes first
                data = c.get("/v1/usage").json()
                t = data["totals"]
                assert t["requests"] == 4
                assert t["input_tokens"] == fake.reported_usage["input_tokens"]
                assert t["output_tokens"] == fake.reported_usage["output_tokens"]
                assert data["recording"] is True

                by_model = c.get("/v1/usage", params={"by": "model"}).json()
                assert {g["key"]: g["requests"] for g in by_model["groups"]} == {
                    "m-a": 3, "m-b": 1}
                assert c.get("/v1/usage", params={"model": "m-b"}).json()[
                    "totals"]["requests"] == 1
                assert c.get("/v1/usage", params={"account": "one", "provider":
                                                  "openai-compatible"}).json()[
                    "totals"]["requests"] == 4
                assert c.get("/v1/usage", params={"account": "two"}).json()[
                    "totals"]["requests"] == 0
                assert c.get("/v1/usage", params={"since": "1h"}).json()[
                    "totals"]["requests"] == 4
                future = c.get("/v1/usage", params={"since": "2999-01-01"}).json()
                assert future["totals"]["requests"] == 0
                assert future["window"]["since"]["epoch_s"] == parse_since("2999-01-01")

                bad = c.get("/v1/usage", params={"since": "soon"})
                assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]
                assert c.get("/v1/usage", params={"by": "colour"}).status_code == 400
                assert c.get("/v1/usage", params={"sinse": "1h"}).status_code == 400

                # DELETE needs confirm=true
                refused = c.delete("/v1/usage")
                assert refused.status_code == 400
                assert "confirm=true" in refused.json()["error"]["message"]
                assert c.delete("/v1/usage?confirm=false").status_code == 400
                assert c.get("/v1/usage").json()["totals"]["requests"] == 4

                # requests just answered may still be queued: DELETE waits for them
                chat(c, "m-a", "one more")
                gone = c.delete("/v1/usage?confirm=true")
                assert gone.status_code == 200 and gone.json()["deleted"] == 5
                assert c.get("/v1/usage").json()["totals"]["requests"] == 0

                # and the writer keeps working afterwards
                chat(c, "m-b", "after reset")
                after = c.get("/v1/usage").json()["totals"]
                assert after["requests"] == 1 and after["input_tokens"] > 0


def test_usage_endpoint_open_without_api_key_and_empty_store():
    write_config({"accounts": []})
    with running_tokn() as tokn:
        r = httpx.get(tokn.api_url + "/v1/usage", params={"by": "day"})
        assert r.status_code == 200
        assert r.json()["totals"]["requests"] == 0 and r.json()["groups"] == []
