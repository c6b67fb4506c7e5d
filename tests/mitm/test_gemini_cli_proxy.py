"""The real Gemini CLI (npm ``@google/gemini-cli``) behind ``eval "$(tokn proxy env)"``:
its API-key path reaches generativelanguage.googleapis.com, which route mode
serves from the pool (here a Copilot-style chat account). Skipped when the
CLI is not installed."""

from __future__ import annotations

from tests.fakes.llm import FakeLLM
from tests.fakes.test_gemini_cli import pytestmark, run_gemini  # noqa: F401 - the skip
from tests.helpers import account, free_port, proxy_env, running_tokn, wait_for_rows, write_config


def test_gemini_cli_api_key_path_served_by_a_chat_account(tmp_path):
    with FakeLLM(formats={"chat"}, models=["gemini-2.5-flash"], copilot_quirks=True) as fake:
        port = free_port()
        write_config({"proxy_mode": {"port": port}, "accounts": [
            account("chat", "openai-compatible", base_url=fake.url, api_key="k")]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port, listener_public=False):
            out = run_gemini(tmp_path, "gemini-api-key",
                             {**env, "GEMINI_API_KEY": "AIza-not-a-real-key"}, "hello there")
        # FakeLLM echoes the last user turn (the CLI may prepend context to it)
        assert out["response"].startswith("echo: ") and out["response"].endswith("hello there")
        sent = fake.requests[-1].json
        assert sent["model"] == "gemini-2.5-flash" and sent["stream"] is True
        assert sent["messages"][0]["role"] == "system"  # the CLI's system prompt
        assert all("AIza-not-a-real-key" not in str(dict(r.headers)) for r in fake.requests)
    rows = [r for r in wait_for_rows(1) if r["inbound_format"] == "gemini"]
    assert rows and rows[-1]["front_door"] == "proxy" and rows[-1]["status"] == 200
