"""Running the real Claude Code and Codex CLIs the way a user does: through
tokn's proxy (the env block of ``tokn proxy env``) or against the listener
(their base-URL settings), in a private HOME, with no model flag."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

NPM_BIN = Path(os.environ.get("TOKN_NPM_BIN", "/opt/npmcache/node_modules/.bin"))
CLIENT_KEY = "sk-ant-client-own-key"  # what the user's shell holds: never a pooled key
OPENAI_CLIENT_KEY = "sk-client-own-key"


def cli(name: str) -> str:
    found = str(NPM_BIN / name) if (NPM_BIN / name).exists() else shutil.which(name)
    if not found:
        pytest.skip(f"the {name} CLI is not installed (CI installs it with npm into "
                    "TOKN_NPM_BIN: .ci/run)")
    return found


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.monotonic() at launch (the fakes stamp requests likewise)


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    started = time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, cwd=cwd,
                         stdin=subprocess.DEVNULL)
    return Run(out.returncode, out.stdout, out.stderr, started)


def claude(home: Path, prompt: str, env: dict[str, str], *, tools: str = "") -> Run:
    home.mkdir(parents=True, exist_ok=True)
    argv = [cli("claude"), "-p", prompt]
    if tools:
        argv += ["--allowedTools", tools]
    full = {**os.environ, "HOME": str(home), "ANTHROPIC_API_KEY": CLIENT_KEY,
            "DISABLE_AUTOUPDATER": "1", **env}
    return _run(argv, full, home)


def claude_listener_env(api_url: str) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": api_url}


def codex(home: Path, prompt: str, env: dict[str, str], *, listener: str = "") -> Run:
    """``listener``: the listener's URL, as a custom provider in config.toml
    (the way the README tells users, with its WebSocket transport on); else
    the default provider (api.openai.com)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    if listener:
        (codex_home / "config.toml").write_text(
            'model_provider = "tokn"\n\n[model_providers.tokn]\nname = "tokn"\n'
            f'base_url = "{listener}/v1"\nwire_api = "responses"\n'
            'env_key = "OPENAI_API_KEY"\nsupports_websockets = true\n')
    argv = [cli("codex"), "exec", "--skip-git-repo-check", prompt]
    full = {**os.environ, "HOME": str(home), "CODEX_HOME": str(codex_home),
            "OPENAI_API_KEY": OPENAI_CLIENT_KEY, **env}
    return _run(argv, full, home)


class LogLines(logging.Handler):
    """The tokn logger's lines while installed (the proxy's side-call and
    refusal lines, the listener's WebSocket lines, one line per usage row)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> LogLines:
        logger = logging.getLogger("tokn")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("tokn")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def matching(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]
