"""``tokn proxy ca path|show|regenerate`` through a tiny app."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from tokn import ca, data, paths
from tokn.cli.ca_cmd import ca_app


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()
    a.add_typer(ca_app, name="ca")

    @a.callback()
    def _root() -> None:
        pass

    return a


def test_path_creates_ca(app):
    res = CliRunner().invoke(app, ["ca", "path"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(ca.ca_files().cert_path)
    assert ca.ca_files().exists()
    res = CliRunner().invoke(app, ["ca", "path", "--bundle"])
    assert res.stdout.strip() == str(ca.ca_files().bundle_path)


def test_show(app):
    res = CliRunner().invoke(app, ["ca", "show"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    fp = ca.fingerprint_sha256(ca.ca_files().cert_path.read_bytes())
    assert fp in out  # not mangled by rich (":CD:" is an emoji code)
    assert "tokn local CA" in out and "api.openai.com" in out and "githubcopilot.com" in out
    assert "update-ca-certificates" in out and "add-trusted-cert" in out and "certutil" in out
    guide = data.path("ca-readme")
    assert guide.is_file() and str(guide) in out.replace("\n", "")


def test_show_warns_when_outdated(app):
    CliRunner().invoke(app, ["ca", "path"])
    paths.write_private(paths.config_file(), '[proxy_mode]\nintercept_hosts = ["llm.example"]\n')
    res = CliRunner().invoke(app, ["ca", "show"])
    assert res.exit_code == 0
    assert "llm.example" in res.stderr and "regenerate" in res.stderr


def test_regenerate_asks_and_can_be_declined(app):
    CliRunner().invoke(app, ["ca", "path"])
    before = ca.ca_files().cert_path.read_bytes()
    res = CliRunner().invoke(app, ["ca", "regenerate"], input="n\n")
    assert res.exit_code == 1
    assert ca.ca_files().cert_path.read_bytes() == before
    res = CliRunner().invoke(app, ["ca", "regenerate"], input="y\n")
    assert res.exit_code == 0, res.output
    assert ca.ca_files().cert_path.read_bytes() != before


def test_regenerate_yes(app):
    CliRunner().invoke(app, ["ca", "path"])
    before = ca.ca_files().cert_path.read_bytes()
    res = CliRunner().invoke(app, ["ca", "regenerate", "--yes"])
    assert res.exit_code == 0, res.output
    after = ca.ca_files().cert_path.read_bytes()
    assert after != before
    assert ca.fingerprint_sha256(after) in res.stdout
    assert "trust" in res.stderr
    assert after in ca.ca_files().bundle_path.read_bytes()


def test_regenerate_with_widened_hosts_fixes_outdated(app):
    CliRunner().invoke(app, ["ca", "path"])
    paths.write_private(paths.config_file(), '[proxy_mode]\nintercept_hosts = ["llm.example"]\n')
    assert ca.constraints_outdated() == ["llm.example"]
    CliRunner().invoke(app, ["ca", "regenerate", "-y"])
    assert ca.constraints_outdated() == []


def test_config_error_is_one_line(app):
    paths.write_private(paths.config_file(), "[ca]\nname_constraints = 'maybe'\n")
    res = CliRunner().invoke(app, ["ca", "show"])
    assert res.exit_code == 1
    assert res.stderr.startswith("error:") and "Traceback" not in res.output


def test_corrupt_ca_is_one_line(app):
    CliRunner().invoke(app, ["ca", "path"])
    ca.ca_files().cert_path.write_text("junk")
    res = CliRunner().invoke(app, ["ca", "show"])
    assert res.exit_code == 1
    assert "error:" in res.stderr and "regenerate" in res.stderr


def test_fingerprint_text_is_never_turned_into_emoji():
    from tokn.cli.common import console

    with console.capture() as captured:
        console.print("SHA-256 0B:E9:AB:2B:CL:00", highlight=False)
    assert "0B:E9:AB:2B:CL:00" in captured.get()
