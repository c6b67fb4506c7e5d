from __future__ import annotations

import openai

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config


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
