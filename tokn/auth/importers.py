"""Find GitHub (or API) tokens other tools already keep.

* ``gh`` CLI: ``$GH_CONFIG_DIR/hosts.yml`` (default ``~/.config/gh``; on
  Windows ``%APPDATA%\\GitHub CLI``), ``oauth_token`` under the host (or under
  ``users.<user>``); newer ``gh`` keeps it in the system keyring, then
  ``gh auth token --hostname HOST`` is asked when ``gh`` is installed.
* Copilot editor plugins (VS Code, JetBrains, Neovim): ``apps.json`` or
  ``hosts.json`` in ``$XDG_CONFIG_HOME/github-copilot`` (default
  ``~/.config/github-copilot``; on Windows ``%LOCALAPPDATA%\\github-copilot``).
* Environment variables (``GH_TOKEN``, ``GITHUB_TOKEN``, ``COPILOT_GITHUB_TOKEN``
  or any name given).

Every location is injectable (``config_dir=``, ``env=``, ``run=``, ``which=``)
for tests.  Nothing here talks to the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokn.errors import ToknError

GITHUB_HOST = "github.com"
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"
DEFAULT_ENV_VARS = ("GH_TOKEN", "GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN")


@dataclass
class FoundToken:
    token: str
    source: str            # human-readable: where it came from
    user: str | None = None
    host: str = GITHUB_HOST


# --- a tiny YAML subset (block mappings of scalars), enough for hosts.yml -----

def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    return text


def parse_simple_yaml(text: str) -> dict[str, Any]:
    """Nested ``key: value`` block mappings by indentation (what ``gh`` writes).
    Lists, anchors and flow style are not needed and are skipped."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "-", "---")):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, value = stripped.partition(":")
        if not sep:
            continue
        key = _scalar(key)
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1] if stack else root
        value = value.strip()
        if value and not value.startswith("#"):
            parent[key] = _scalar(value)
        else:
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
    return root


# --- gh CLI -------------------------------------------------------------------

def gh_config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("GH_CONFIG_DIR"):
        return Path(env["GH_CONFIG_DIR"]).expanduser()
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]).expanduser() / "gh"
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "GitHub CLI"
    return Path("~/.config/gh").expanduser()


def token_from_gh_hosts(text: str, host: str = GITHUB_HOST) -> tuple[str | None, str | None]:
    """(oauth_token, user) for ``host`` from the text of a ``hosts.yml``."""
    data = parse_simple_yaml(text)
    entry = data.get(host)
    if not isinstance(entry, dict):
        return None, None
    user = entry.get("user") if isinstance(entry.get("user"), str) else None
    token = entry.get("oauth_token")
    if isinstance(token, str) and token:
        return token, user
    users = entry.get("users")
    if isinstance(users, dict):
        order = ([user] if user in users else []) + [u for u in users if u != user]
        for name in order:
            info = users.get(name)
            if isinstance(info, dict) and isinstance(info.get("oauth_token"), str) \
                    and info["oauth_token"]:
                return info["oauth_token"], name
    return None, user


def from_gh(*, config_dir: Path | None = None, host: str = GITHUB_HOST,
            env: Mapping[str, str] | None = None,
            run: Callable[..., Any] = subprocess.run,
            which: Callable[[str], str | None] = shutil.which) -> FoundToken:
    """The ``gh`` CLI's token: hosts.yml first, then ``gh auth token`` (keyring)."""
    directory = config_dir or gh_config_dir(env)
    hosts_file = directory / "hosts.yml"
    user = None
    try:
        token, user = token_from_gh_hosts(hosts_file.read_text(encoding="utf-8"), host)
    except FileNotFoundError:
        token = None
    except OSError as exc:
        raise ToknError(f"cannot read {hosts_file}: {exc.strerror}") from exc
    if token:
        return FoundToken(token, f"gh CLI ({hosts_file})", user, host)
    gh = which("gh")
    if gh:
        try:
            proc = run([gh, "auth", "token", "--hostname", host], capture_output=True,
                       text=True, timeout=15,
                       env={**os.environ, **({"GH_CONFIG_DIR": str(directory)}
                                            if config_dir else {})})
        except (OSError, subprocess.SubprocessError) as exc:
            raise ToknError(f"`gh auth token` failed: {exc}") from exc
        out = (proc.stdout or "").strip()
        if proc.returncode == 0 and out:
            return FoundToken(out.splitlines()[0].strip(), "gh CLI (`gh auth token`)", user, host)
        detail = (proc.stderr or "").strip().splitlines()
        raise ToknError(f"the gh CLI has no token for {host}"
                        f"{': ' + detail[0] if detail else ''}; run `gh auth login` or "
                        "`tokn login`.")
    raise ToknError(f"no gh CLI token found for {host} (looked in {hosts_file}; "
                    "`gh` is not installed); run `gh auth login`, or use `tokn login`.")


# --- Copilot editor plugins ------------------------------------------------------

def copilot_config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "github-copilot"
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]).expanduser() / "github-copilot"
    return Path("~/.config/github-copilot").expanduser()


def token_from_copilot_json(data: Any, host: str = GITHUB_HOST) -> tuple[str | None, str | None]:
    """(oauth_token, user) from ``apps.json`` (keys ``host:client_id``) or
    ``hosts.json`` (keys ``host``); the Copilot app's own entry preferred."""
    if not isinstance(data, dict):
        return None, None
    entries = [(k, v) for k, v in data.items()
               if isinstance(v, dict) and (k == host or k.startswith(host + ":"))]
    entries.sort(key=lambda kv: 0 if kv[0].endswith(COPILOT_CLIENT_ID) else 1)
    for _, value in entries:
        token = value.get("oauth_token")
        if isinstance(token, str) and token:
            return token, value.get("user")
    return None, None


def from_copilot_plugin(*, config_dir: Path | None = None, host: str = GITHUB_HOST,
                        env: Mapping[str, str] | None = None) -> FoundToken:
    """The token a Copilot editor plugin saved (``apps.json`` then ``hosts.json``)."""
    directory = config_dir or copilot_config_dir(env)
    looked = []
    for name in ("apps.json", "hosts.json"):
        path = directory / name
        looked.append(str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ToknError(f"cannot read {path}: {exc}") from exc
        token, user = token_from_copilot_json(data, host)
        if token:
            return FoundToken(token, f"Copilot editor plugin ({path})", user, host)
    raise ToknError(f"no Copilot editor plugin token for {host} (looked in "
                    f"{', '.join(looked)}); sign in to Copilot in your editor, or use "
                    "`tokn login`.")


# --- environment ---------------------------------------------------------------------

def from_env(names: Iterable[str] = DEFAULT_ENV_VARS,
             env: Mapping[str, str] | None = None) -> FoundToken:
    """The first non-empty variable of ``names``."""
    env = os.environ if env is None else env
    names = [n for n in names if n]
    for name in names:
        value = (env.get(name) or "").strip()
        if value:
            return FoundToken(value, f"environment variable {name}")
    if len(names) == 1:
        raise ToknError(f"the environment variable {names[0]} is not set (or is empty).")
    raise ToknError(f"none of the environment variables {', '.join(names) or '(none)'} is set.")
