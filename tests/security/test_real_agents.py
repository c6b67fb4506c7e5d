"""The guard keeps legitimate clients working: the real Claude Code (Node,
NODE_USE_ENV_PROXY) and Codex (Rust) CLIs, configured only by
``eval "$(tokn proxy env)"``, authenticate to a proxy that requires the key
and are served from the pool in route mode."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, proxy_env, running_tokn, write_config
from tests.security.helpers import KEY

NPM_BIN = Path(os.environ.get("TOKN_NPM_BIN", "/opt/npmcache/node_modules/.bin"))


def _cli(name: str) -> str:
    found = shutil.which(name) or (str(NPM_BIN / name) if (NPM_BIN / name).exists() else None)
    if not found:
        pytest.skip(f"the {name} CLI is not installed")
    return found


@pytest.fixture
def pool():
    with FakeLLM(formats={"chat", "messages", "responses"}, path_prefix="/v1",
                 models=["claude-sonnet-4", "gpt-5"]) as fake:
        port = free_port()
        write_config({"server": {"api_key": KEY}, "proxy_mode": {"port": port},
                      "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1",
                                           settings={"formats": ["chat", "messages",
                                                                 "responses"]})]})
        env = proxy_env()
        assert env["HTTPS_PROXY"] == f"http://tokn:{KEY}@127.0.0.1:{port}"
        with running_tokn(with_proxy=True, proxy_port=port, api_key=KEY, listener_public=False):
            yield fake, env


def test_claude_code_through_the_authenticated_proxy(pool, tmp_path):
    fake, env = pool
    claude = _cli("claude")
    out = subprocess.run([claude, "-p", "say hi", "--model", "claude-sonnet-4"],
                         env={**os.environ, **env, "HOME": str(tmp_path),
                              "ANTHROPIC_API_KEY": "sk-ant-not-a-real-key"},
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "say hi" in out.stdout  # the fake echoes the last user text
    assert fake.requests_to("/messages", "POST")


def test_codex_through_the_authenticated_proxy(pool, tmp_path):
    fake, env = pool
    codex = _cli("codex")
    (tmp_path / ".codex").mkdir()
    out = subprocess.run([codex, "exec", "--skip-git-repo-check", "-m", "gpt-5", "say hi"],
                         env={**os.environ, **env, "HOME": str(tmp_path),
                              "CODEX_HOME": str(tmp_path / ".codex"),
                              "OPENAI_API_KEY": "sk-not-a-real-key"},
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "echo: say hi" in out.stdout
    assert fake.requests_to("/responses", "POST")
