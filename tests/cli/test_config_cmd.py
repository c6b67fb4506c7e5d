from __future__ import annotations

import json

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
