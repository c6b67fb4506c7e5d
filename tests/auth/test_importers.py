"""Importers: gh hosts.yml / `gh auth token`, Copilot plugin files, env vars."""

from __future__ import annotations

import json
import subprocess

import pytest

from tokn.auth import importers
from tokn.errors import ToknError

HOSTS_OLD = """\
github.com:
    oauth_token: gho_OLDSTYLE1234
    user: octocat
    git_protocol: https
"""

HOSTS_MULTI = """\
# gh hosts
github.com:
    users:
        alice:
            oauth_token: gho_ALICE5678
        octocat:
            oauth_token: "gho_OCTO9012"
    git_protocol: ssh
    user: octocat
ghe.corp.example:
    oauth_token: gho_CORP0000
    user: corp
"""

HOSTS_KEYRING = """\
github.com:
    users:
        octocat:
    git_protocol: https
    user: octocat
"""


def test_parse_simple_yaml_nesting():
    data = importers.parse_simple_yaml(HOSTS_MULTI)
    assert data["github.com"]["users"]["octocat"]["oauth_token"] == "gho_OCTO9012"
    assert data["github.com"]["git_protocol"] == "ssh"
    assert data["ghe.corp.example"]["user"] == "corp"


@pytest.mark.parametrize(("text", "host", "expected"), [
    (HOSTS_OLD, "github.com", ("gho_OLDSTYLE1234", "octocat")),
    (HOSTS_MULTI, "github.com", ("gho_OCTO9012", "octocat")),   # the active user first
    (HOSTS_MULTI, "ghe.corp.example", ("gho_CORP0000", "corp")),
    (HOSTS_KEYRING, "github.com", (None, "octocat")),
    ("", "github.com", (None, None)),
])
def test_token_from_gh_hosts(text, host, expected):
    assert importers.token_from_gh_hosts(text, host) == expected


def test_from_gh_hosts_file_respects_gh_config_dir(tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text(HOSTS_OLD)
    monkeypatch.setenv("GH_CONFIG_DIR", str(tmp_path))
    found = importers.from_gh(which=lambda name: None)
    assert found.token == "gho_OLDSTYLE1234" and found.user == "octocat"
    assert str(tmp_path / "hosts.yml") in found.source


def test_from_gh_keyring_runs_gh_auth_token(tmp_path):
    (tmp_path / "hosts.yml").write_text(HOSTS_KEYRING)
    calls = []

    def run(argv, **kw):
        calls.append((argv, kw["env"].get("GH_CONFIG_DIR")))
        return subprocess.CompletedProcess(argv, 0, stdout="gho_FROMKEYRING\n", stderr="")

    found = importers.from_gh(config_dir=tmp_path, which=lambda name: "/usr/bin/gh", run=run)
    assert found.token == "gho_FROMKEYRING" and found.user == "octocat"
    assert calls == [(["/usr/bin/gh", "auth", "token", "--hostname", "github.com"],
                      str(tmp_path))]


def test_from_gh_nothing_found(tmp_path):
    with pytest.raises(ToknError, match="no gh CLI token"):
        importers.from_gh(config_dir=tmp_path, which=lambda name: None)

    def run(argv, **kw):
        return subprocess.CompletedProcess(argv, 1, stdout="",
                                           stderr="no oauth token found for github.com\n")

    with pytest.raises(ToknError, match="no oauth token found"):
        importers.from_gh(config_dir=tmp_path, which=lambda name: "/bin/gh", run=run)


def test_copilot_plugin_apps_json_prefers_copilot_app(tmp_path, monkeypatch):
    d = tmp_path / "github-copilot"
    d.mkdir()
    (d / "apps.json").write_text(json.dumps({
        "github.com:Iv1.other": {"user": "x", "oauth_token": "ghu_OTHERAPP1"},
        "github.com:Iv1.b507a08c87ecfe98": {"user": "octocat", "oauth_token": "ghu_COPILOT1",
                                            "githubAppId": "Iv1.b507a08c87ecfe98"},
    }))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    found = importers.from_copilot_plugin()
    assert found.token == "ghu_COPILOT1" and found.user == "octocat"
    assert "apps.json" in found.source


def test_copilot_plugin_hosts_json(tmp_path):
    (tmp_path / "hosts.json").write_text(json.dumps(
        {"github.com": {"user": "octocat", "oauth_token": "ghu_HOSTS123"}}))
    found = importers.from_copilot_plugin(config_dir=tmp_path)
    assert found.token == "ghu_HOSTS123" and "hosts.json" in found.source


def test_copilot_plugin_missing_and_broken(tmp_path):
    with pytest.raises(ToknError, match="no Copilot editor plugin token"):
        importers.from_copilot_plugin(config_dir=tmp_path)
    (tmp_path / "apps.json").write_text("{not json")
    with pytest.raises(ToknError, match="cannot read"):
        importers.from_copilot_plugin(config_dir=tmp_path)


def test_copilot_config_dir_windows(monkeypatch):
    monkeypatch.setattr(importers.sys, "platform", "win32")
    path = importers.copilot_config_dir({"LOCALAPPDATA": "C:/Users/me/AppData/Local"})
    assert path.name == "github-copilot" and "Local" in str(path)


def test_from_env_order_and_custom_name():
    env = {"GITHUB_TOKEN": "ghp_second", "COPILOT_GITHUB_TOKEN": "ghu_third", "GH_TOKEN": ""}
    found = importers.from_env(env=env)
    assert found.token == "ghp_second" and "GITHUB_TOKEN" in found.source
    assert importers.from_env(["MY_VAR"], env={"MY_VAR": " k "}).token == "k"
    with pytest.raises(ToknError, match="MY_VAR"):
        importers.from_env(["MY_VAR"], env={})
