"""Config: parsing, validation messages, dotted edits, atomic 0600 writes."""

from __future__ import annotations

import os
import stat

import pytest
import tomlkit

from tokn import config, config_edit, paths
from tokn.config import ConfigError, load_config, parse_config


def test_defaults_when_missing():
    cfg = load_config()
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 4141)
    assert (cfg.proxy_mode.port, cfg.proxy_mode.route_mode) == (4142, "route")
    assert cfg.pool.strategy == "round_robin" and cfg.accounts == []


@pytest.mark.parametrize("data,needle", [
    ({"server": {"port": "eighty"}}, "server.port must be an integer"),
    ({"proxy_mode": {"route_mode": "teleport"}}, "use one of: route, switch, passthrough"),
    ({"pool": {"strategy": "random"}}, "round_robin, fill_first"),
    ({"accounts": [{"provider": "openai"}]}, "has no `id`"),
    ({"accounts": [{"id": "a"}]}, "has no `provider`"),
    ({"accounts": [{"id": "a", "provider": "x"}, {"id": "a", "provider": "y"}]}, "unique"),
    ({"proxy_mode": {"provider_modes": {"openai": "nope"}}}, "provider_modes.openai"),
    ({"usage": {"enabled": "yes"}}, "usage.enabled must be true or false"),
])
def test_invalid_values_name_key_and_fix(data, needle):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "/x/config.toml")
    message = str(info.value)
    assert message.startswith("/x/config.toml")
    assert needle in message
    assert "\n" not in message


def test_unknown_keys_warn_not_crash():
    cfg = parse_config({"server": {"port": 1, "colour": "blue"}, "extra": 1}, "f")
    assert cfg.server.port == 1
    assert any("server.colour" in w for w in cfg.warnings)
    assert any("'extra'" in w for w in cfg.warnings)


def test_account_fields_and_overrides():
    cfg = parse_config({"accounts": [{"id": "c", "provider": "github-copilot",
                                      "github_token": "gho_x", "base_url": "http://b",
                                      "settings": {"editor-version": "vscode/9"}}]})
    acc = cfg.account("c")
    assert acc.get("github_token") == "gho_x" and acc.base_url == "http://b"
    assert acc.settings == {"editor-version": "vscode/9"}


def test_set_keeps_type_comments_and_order_and_writes_0600():
    path = paths.config_file()
    paths.write_private(path, "# my settings\n[server]\nport = 4141  # the port\n"
                              "host = \"127.0.0.1\"\n\n[proxy_mode]\nintercept_hosts = []\n")
    doc = config.load_document()
    assert config_edit.set_key(doc, "server.port", "5000") == 5000
    config_edit.set_key(doc, "proxy_mode.intercept_hosts", "llm.corp.example", add=True)
    config_edit.set_key(doc, "pool.sticky_sessions", "true")
    config.save_document(doc)
    text = path.read_text()
    assert "# my settings" in text and "# the port" in text
    assert text.index("port = 5000") < text.index("host")
    cfg = load_config()
    assert cfg.server.port == 5000 and cfg.pool.sticky_sessions is True
    assert cfg.proxy_mode.intercept_hosts == ["llm.corp.example"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_set_rejects_wrong_type_and_invalid_result_without_writing():
    doc = config.load_document()
    with pytest.raises(ConfigError, match="expected an integer"):
        config_edit.set_key(doc, "server.port", "abc")
    with pytest.raises(ConfigError, match="round_robin"):
        config_edit.set_key(doc, "pool.strategy", "random")
    doc["pool"] = {"strategy": "random"}          # edited past set_key: save still checks
    with pytest.raises(ConfigError, match="round_robin"):
        config.save_document(doc)
    assert not paths.config_file().exists()


def test_atomic_write_leaves_old_file_on_failure(monkeypatch):
    path = paths.config_file()
    paths.write_private(path, "[server]\nport = 1\n")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        paths.write_private(path, "[server]\nport = 2\n")
    assert path.read_text() == "[server]\nport = 1\n"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_account_scoped_edit_and_mask():
    doc = tomlkit.document()
    config.add_account(doc, {"id": "k", "provider": "openai", "api_key": "sk-abcdefghijkl"})
    config_edit.set_key(doc, "base_url", "http://local/v1", account="k")
    assert config_edit.get_key(doc, "base_url", account="k") == "http://local/v1"
    assert config.masked(doc.unwrap())["accounts"][0]["api_key"] == "sk-a…ijkl"
    with pytest.raises(ConfigError, match="no account with id 'zz'"):
        config_edit.set_key(doc, "base_url", "x", account="zz")
    config_edit.unset_key(doc, "base_url", account="k")
    with pytest.raises(KeyError):
        config_edit.get_key(doc, "base_url", account="k")


def test_tokn_home_puts_everything_under_it(tokn_home):
    for path in (paths.config_dir(), paths.state_dir(), paths.data_dir()):
        assert tokn_home in path.parents


def test_every_config_key_has_a_row_and_every_row_a_key():
    """tokn/config_keys.py KEYS is the one table of keys: a new dataclass field needs
    a row there (its doc and check), and a row without a field is a typo."""
    from tokn.config_keys import KEYS
    from tokn.rules import KNOWN

    rows = {k for k in KEYS if not k.startswith(("accounts.", "rules."))}
    assert rows == set(config.known_keys())
    assert {k.removeprefix("rules.") for k in KEYS if k.startswith("rules.")} == set(KNOWN)
    account_rows = {k.removeprefix("accounts.") for k in KEYS if k.startswith("accounts.")}
    assert account_rows == {"id", "provider", *config.account_defaults()}
    assert all(row.doc for row in KEYS.values())


def test_load_still_accepts_unknown_keys_with_a_hint():
    cfg = parse_config({"server": {"prot": 1}}, "f")
    assert cfg.warnings == ["f: unknown key server.prot (ignored; did you mean server.port?)"]
