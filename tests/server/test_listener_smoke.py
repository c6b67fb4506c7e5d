from __future__ import annotations

import openai

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config


def test_openai_sdk_through_listener_to_openai_compatible_fake():
    with FakeLLM(formats={"chat", "embeddings"}, path_prefix="/v1", models=["local-model"]) as fake:
        write_config({"accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        with running_tokn() as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="unused")
            resp = client.chat.completions.create(
                model="local-model", messages=[{"role": "user", "content": "hello there"}])
            assert resp.choices[0].message.content == "echo: hello there"
            chunks = list(client.chat.completions.create(
                model="local-model", messages=[{"role": "user", "content": "hi again"}],
                stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "echo: hi again"
            assert [m.id for m in client.models.list().data] == ["local-model"]


def test_bodies_recorded_only_when_asked_and_capped():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m"]) as fake:
        acc = [account("local", "openai-compatible", base_url=fake.url + "/v1",
                       api_key="sk-upstream-secret")]
        write_config({"accounts": acc})
        with running_tokn(api_key="client-secret-key") as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="client-secret-key")
            client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                 "content": "not kept"}])
        write_config({"usage": {"record_bodies": True, "body_cap_bytes": 300}, "accounts": acc})
        with running_tokn(api_key="client-secret-key") as tokn:
            client = openai.OpenAI(base_url=tokn.api_url + "/v1", api_key="client-secret-key")
            client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                 "content": "kept " * 200}])
            list(client.chat.completions.create(model="m", stream=True, messages=[
                {"role": "user", "content": "streamed body"}]))
    first, capped, streamed = usage_rows()
    assert first["request_body"] is None and first["response_body"] is None
    assert first["bytes_in"] > 0 and first["bytes_out"] > 0
    assert "kept kept" in capped["request_body"] and len(capped["request_body"]) < 400
    assert streamed["response_body"].startswith("data: {")  # the SSE the client got
    assert "[tokn: truncated" in streamed["response_body"]
    everything = repr(usage_rows())
    assert "client-secret-key" not in everything and "sk-upstream-secret" not in everything


def test_x_forwarded_for_does_not_rename_the_client_in_rows():
    # tokn is no reverse proxy's backend: a local process cannot pose as another peer
    import httpx

    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m"]) as fake:
        write_config({"accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        with running_tokn() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions",
                              headers={"x-forwarded-for": "203.0.113.9",
                                       "x-forwarded-proto": "https"},
                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
            assert resp.status_code == 200
        (row,) = usage_rows()
        assert row["client"].startswith("127.0.0.1:"), row["client"]
