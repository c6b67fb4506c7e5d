from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from tokn import paths
from tokn.cli import app

runner = CliRunner()


def test_set_get_list_unset_round_trip():
    assert runner.invoke(app, ["config", "set", "server.port", "4999"]).exit_code == 0
    got = runner.invoke(app, ["config", "get", "server.port"])
    assert got.stdout.strip() == "4999"
    assert runner.invoke(app, ["config", "get", "proxy_mode.port"]).stdout.strip() == "4142"
    listed = runner.invoke(app, ["config", "list", "--json"])
    assert json.loads(listed.stdout) == {"server": {"port": 4999}}
    assert runner.invoke(app, ["config", "unset", "server.port"]).exit_code == 0
    assert runner.invoke(app, ["config", "get", "server.port"]).stdout.strip() == "4141"


def test_bad_value_is_one_line_error_without_traceback():
    result = runner.invoke(app, ["config", "set", "server.port", "eighty"])
    assert result.exit_code == 1
    assert "expected an integer" in result.output
    assert "Traceback" not in result.output


def test_broken_file_gives_one_line_error_naming_file():
    paths.write_private(paths.config_file(), "[server\nport = 1\n")
    result = runner.invoke(app, ["config", "list"])
    assert result.exit_code == 1
    assert str(paths.config_file()) in result.output.replace("\n", "")
    assert "tokn config edit" in result.output


def test_list_masks_secrets():
    paths.write_private(paths.config_file(),
                        '[server]\napi_key = "supersecretvalue"\n'
                        '[[accounts]]\nid = "o"\nprovider = "openai"\napi_key = "sk-0123456789"\n')
    out = runner.invoke(app, ["config", "list", "--json"]).stdout
    assert "supersecretvalue" not in out and "sk-0123456789" not in out
    assert "sk-0…6789" in out


def test_path_and_help():
    assert runner.invoke(app, ["config", "path"]).stdout.strip() == str(paths.config_file())
    help_text = runner.invoke(app, ["--help"]).stdout
    for group in ("config", "proxy", "serve"):
        assert group in help_text


# --- every value type round-trips through set/get (top-level and account keys) -----------

def _sample(key: str, default):
    """A value of ``key``'s type, different from its default, that its row accepts."""
    from tokn import config_keys

    if isinstance(default, bool):
        candidates = [not default]
    elif isinstance(default, int):
        candidates = [default + 1, 1]
    elif isinstance(default, float):
        candidates = [default + 1.5]
    elif isinstance(default, list):
        candidates = [["a.example.com", "b.example.com"],
                      ["http://a.example.com", "https://b.example.com:8443"]]
    elif isinstance(default, dict):
        candidates = [{"k": "v"}, {"anthropic": "passthrough"}, {"h.example": "127.0.0.1:9"}]
    else:
        candidates = ["switch", "fill_first", "json", "debug", "http://127.0.0.1:9", "text",
                      "strict", "redis://127.0.0.1:9/0", "postgresql://u@127.0.0.1:9/db"]
    for value in candidates:
        try:
            config_keys.check(key, value)
        except ValueError:
            continue
        if value != default:
            return value
    raise AssertionError(f"no sample value for {key}; add one to _sample()")


def _round_trip(key, value, *account):
    """set(value) -> get -> set(what get printed) -> get: the same value each time."""
    extra = ["--account", account[0]] if account else []
    raw = value if isinstance(value, str) else json.dumps(value)
    first = runner.invoke(app, ["config", "set", key, raw, *extra])
    assert first.exit_code == 0, (key, first.output)
    printed = runner.invoke(app, ["config", "get", key, *extra])
    assert printed.exit_code == 0, (key, printed.output)
    again = runner.invoke(app, ["config", "set", key, printed.stdout.rstrip("\n"), *extra])
    assert again.exit_code == 0, (key, again.output)
    assert runner.invoke(app, ["config", "get", key, *extra]).stdout == printed.stdout
    return printed.stdout.rstrip("\n")


def test_every_known_key_round_trips_through_set_and_get():
    from tokn import config, config_edit

    for key in config.known_keys():
        default = config_edit.default_for(key)
        value = _sample(key, default)
        shown = _round_trip(key, value)
        assert shown == (value if isinstance(value, str) else json.dumps(value)), key
        section, name = key.split(".")
        assert getattr(getattr(config.load_config(), section), name) == value, key


def test_account_keys_round_trip_bools_included():
    from tokn import config

    paths.write_private(paths.config_file(),
                        '[[accounts]]\nid = "z"\nprovider = "zai"\napi_key = "k-0123456789"\n')
    # the README's own examples: these crashed with AttributeError
    assert _round_trip("enabled", "false", "z") == "false"
    assert _round_trip("settings.thinking", "false", "z") == "false"
    assert _round_trip("settings.quota", "1500", "z") == "1500"
    assert _round_trip("settings.formats", ["chat", "messages"], "z") == '["chat", "messages"]'
    assert _round_trip("settings.headers", {"x-a": "1"}, "z") == '{"x-a": "1"}'
    assert _round_trip("models", ["glm-4.6"], "z") == '["glm-4.6"]'
    assert _round_trip("base_url", "https://api.z.ai/api/paas/v4", "z")
    assert _round_trip("region", "eu-central-1", "z") == "eu-central-1"
    # a secret that looks like a number stays a string
    assert runner.invoke(app, ["config", "set", "--account", "z", "api_key", "12345"]).exit_code \
        == 0
    acc = config.load_config().account("z")
    assert acc.enabled is False and acc.get("api_key") == "12345"
    assert acc.settings == {"thinking": False, "quota": 1500, "formats": ["chat", "messages"],
                            "headers": {"x-a": "1"}}
    # an account key that is not set prints its default
    paths.write_private(paths.config_file(),
                        '[[accounts]]\nid = "o"\nprovider = "openai"\n')
    assert runner.invoke(app, ["config", "get", "--account", "o", "enabled"]).stdout == "true\n"
    assert runner.invoke(app, ["config", "get", "--account", "o", "models"]).stdout == "[]\n"


# --- unknown keys and invalid values are refused at `set` ----------------------------------

@pytest.mark.parametrize("args,needle", [
    (["server.nosuch", "1"], "server.nosuch is not a tokn setting"),
    (["server.prot", "5000"], "did you mean server.port?"),
    (["sever.port", "5000"], "did you mean server.port?"),
    (["proxy_mode.intercept_host", "x.example", "--add"],
     "did you mean proxy_mode.intercept_hosts?"),
    (["proxy.url", "ftp://x"], "the scheme must be one of: http, https, socks5, socks5h"),
    (["proxy.url", "socks5h://"], "needs a host"),
    (["pool.failure_cooldown_secs", "-5"], "must be 0 or more"),
    (["pool.max_cooldown_secs", "-1"], "must be 0 or more"),
    (["server.port", "70000"], "port number"),
    (["server.host", "http://0.0.0.0"], "host name or IP address"),
    (["proxy_mode.intercept_hosts", "https://llm.example", "--add"], "is not a host name"),
    (["proxy_mode.provider_modes.anthropic", "teleport"],
     "proxy_mode.provider_modes.anthropic = \"teleport\" is not valid"),
    (["proxy_mode.upstream_overrides.api.x", "nowhere"], "HOST:PORT"),
    (["logging.level", "loud"], "use one of: debug, info, warning, error"),
    (["accounts.copilot.enabled", "false"], "--account copilot enabled VALUE"),
])
def test_set_refuses_unknown_keys_and_invalid_values(args, needle):
    result = runner.invoke(app, ["config", "set", *args])
    assert result.exit_code == 1, result.output
    assert needle in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not paths.config_file().exists()   # nothing written


def test_force_sets_an_unknown_key_which_then_only_warns():
    assert runner.invoke(app, ["config", "set", "server.nosuch", "1"]).exit_code == 1
    result = runner.invoke(app, ["config", "set", "server.nosuch", "1", "--force"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["config", "list"])
    assert listed.exit_code == 0 and "unknown key server.nosuch" in listed.output
    got = runner.invoke(app, ["config", "get", "server.prot"])
    assert got.exit_code == 1 and "did you mean server.port?" in got.output


def test_account_key_typos_are_refused_provider_fields_are_not():
    paths.write_private(paths.config_file(),
                        '[[accounts]]\nid = "k"\nprovider = "kiro"\n')
    bad = runner.invoke(app, ["config", "set", "--account", "k", "enabeld", "false"])
    assert bad.exit_code == 1 and "did you mean enabled?" in bad.output
    for key, value in (("refresh_token", "rt-1"), ("region", "eu-west-1"),
                       ("start_url", "https://x.awsapps.com/start")):
        ok = runner.invoke(app, ["config", "set", "--account", "k", key, value])
        assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["config", "set", "--account", "k", "base_url", "ftp://x"])
    assert bad.exit_code == 1 and "base_url = \"ftp://x\" is not valid" in bad.output


# --- config list shows which account a row belongs to -------------------------------------

def test_list_rows_name_their_account():
    paths.write_private(paths.config_file(),
                        '[[accounts]]\nid = "o"\nprovider = "openai"\n'
                        '[[accounts]]\nid = "p"\nprovider = "openai"\n'
                        '[proxy_mode]\nintercept_hosts = ["a.example"]\n')
    out = runner.invoke(app, ["config", "list"], env={"COLUMNS": "120"}).stdout
    for row in ("accounts[o].id", "accounts[o].provider", "accounts[p].id",
                "accounts[p].provider", '["a.example"]'):
        assert row in out


# --- config edit: an invalid result is never saved ------------------------------------------

def _editor(tmp_path, *versions: str) -> str:
    """An $EDITOR that writes ``versions`` one per run (a person fixing their mistake)."""
    script = tmp_path / "editor.py"
    script.write_text(
        "import pathlib, sys\n"
        f"versions = {list(versions)!r}\n"
        f"count = pathlib.Path({str(tmp_path / 'runs')!r})\n"
        "n = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(n + 1))\n"
        "pathlib.Path(sys.argv[1]).write_text(versions[min(n, len(versions) - 1)])\n")
    return f"{sys.executable} {script}"


def test_edit_invalid_then_reopen_and_fix(tmp_path):
    paths.write_private(paths.config_file(), "[server]\nport = 4141\n")
    editor = _editor(tmp_path, "[server]\nport = 'x'\n", "[server]\nport = 4999\n")
    result = runner.invoke(app, ["config", "edit"], input="y\n", env={"EDITOR": editor,
                                                                       "VISUAL": ""})
    assert result.exit_code == 0, result.output
    assert "server.port must be an integer" in result.output
    assert (tmp_path / "runs").read_text() == "2"
    assert paths.config_file().read_text() == "[server]\nport = 4999\n"
    assert runner.invoke(app, ["config", "get", "server.port"]).stdout == "4999\n"


@pytest.mark.parametrize("answer", ["n\n", ""])
def test_edit_invalid_and_give_up_keeps_last_good_file(tmp_path, answer):
    paths.write_private(paths.config_file(), "[server]\nport = 4141\n")
    editor = _editor(tmp_path, "[server\nport = 1\n")
    result = runner.invoke(app, ["config", "edit"], input=answer,
                           env={"EDITOR": editor, "VISUAL": ""})
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
    assert paths.config_file().read_text() == "[server]\nport = 4141\n"
    rejected = paths.config_file().with_name("config.toml.rejected")
    assert rejected.read_text() == "[server\nport = 1\n"
    assert str(rejected) in " ".join(result.output.split()).replace(" ", "") or \
        "config.toml.rejected" in result.output
    # every other command still works
    assert runner.invoke(app, ["config", "get", "server.port"]).stdout == "4141\n"


# --- intercept_hosts --add: the CA must be regenerated, and tokn offers to --------------------

def test_intercept_hosts_add_says_the_ca_must_be_regenerated():
    from tokn import ca

    ca.ensure_ca()
    before = ca.ca_files().cert_path.read_bytes()
    result = runner.invoke(app, ["config", "set", "proxy_mode.intercept_hosts",
                                 "llm.corp.example", "--add"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "llm.corp.example need a new CA (`tokn proxy ca regenerate`)" in text
    assert ca.ca_files().cert_path.read_bytes() == before   # not without asking


def test_intercept_hosts_add_offers_to_regenerate_at_a_terminal(tokn_home):
    from tests.helpers import run_in_pty
    from tokn import ca

    ca.ensure_ca()
    before = ca.ca_files().cert_path.read_bytes()
    output = run_in_pty([sys.executable, "-m", "tokn", "config", "set",
                         "proxy_mode.intercept_hosts", "llm.corp.example", "--add"],
                        answers={"Regenerate the CA now?": "y"})
    assert "need a new CA" in output and "new CA" in output
    assert ca.ca_files().cert_path.read_bytes() != before
    assert ca.constraints_outdated() == []


def test_error_messages_keep_their_brackets(tmp_path):
    missing = tmp_path / "corp-ca.pem"
    paths.write_private(paths.config_file(),
                        f'[proxy_mode]\nupstream_ca_bundle = "{missing}"\n')
    result = runner.invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert "error: [proxy_mode].upstream_ca_bundle" in result.output
