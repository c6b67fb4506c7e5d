from __future__ import annotations

import openai

from tests.fakes.llm import FakeLLM
from tests.helpers import account, applied_env, free_port, proxy_env, running_tokn, write_config


def test_openai_sdk_via_proxy_route_mode():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port},
                      "accounts": [account("local", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-local")]})
        env = proxy_env()
        assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{port}"
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False), \
                applied_env(env):
            client = openai.OpenAI(api_key="sk-dummy")
            resp = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "via proxy"}])
            assert resp.choices[0].message.content == "echo: via proxy"
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-local"
