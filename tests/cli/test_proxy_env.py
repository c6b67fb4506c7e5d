"""``tokn proxy env`` / ``tokn proxy shell`` through a tiny app, and shell/tokn.sh."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import free_port
from tokn import ca, data, paths
from tokn.cli.proxy_env import register
from tokn.shellenv import VAR_NAMES

REPO = Path(__file__).resolve().parents[2]
APP_SRC = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    import typer
    from tokn.cli.proxy_env import register
    app = typer.Typer()
    register(app)
    app()
""").format(repo=str(REPO))


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    home = tmp_path / "it's a home"
    monkeypatch.setenv("TOKN_HOME", str(home))
    for name in VAR_NAMES + ("ALL_PROXY", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def write_config(text: str) -> None:
    paths.write_private(paths.config_file(), text)


def test_env_bash_prints_exports(app):
    res = CliRunner().invoke(app, ["env", "--shell", "bash"])
    assert res.exit_code == 0, res.output
    assert "export HTTPS_PROXY='http://127.0.0.1:4142'\n" in res.stdout
    assert "export NODE_USE_ENV_PROXY='1'\n" in res.stdout
    assert ca.ca_files().exists() and ca.ca_files().bundle_path.exists()


def test_env_uses_config_host_port_and_no_proxy(app):
    write_config('[proxy_mode]\nhost = "0.0.0.0"\nport = 9999\n'
                 '[proxy]\nno_proxy = ["corp.example"]\n')
    res = CliRunner().invoke(app, ["env", "--shell", "fish"])
    assert res.exit_code == 0, res.output
    assert "set -gx HTTPS_PROXY 'http://127.0.0.1:9999'" in res.stdout
    assert "set -gx NO_PROXY 'localhost,127.0.0.1,::1,corp.example'" in res.stdout


def test_env_guesses_shell(app, monkeypatch):
    monkeypatch.setenv("SHELL", "/usr/bin/pwsh")
    res = CliRunner().invoke(app, ["env"])
    assert res.exit_code == 0
    assert "$Env:HTTPS_PROXY = 'http://127.0.0.1:4142'" in res.stdout


def test_env_unset(app):
    res = CliRunner().invoke(app, ["env", "--shell", "zsh", "--unset"])
    assert res.exit_code == 0
    assert res.stdout == "unset " + " ".join(VAR_NAMES) + "\n"
    assert not ca.ca_files().exists()  # --unset needs no CA


def test_env_bad_shell(app):
    res = CliRunner().invoke(app, ["env", "--shell", "tcsh"])
    assert res.exit_code == 1
    assert "error:" in res.stderr and "tcsh" in res.stderr


def test_env_config_error_is_one_line(app):
    write_config("[proxy_mode]\nport = 'nope'\n")
    res = CliRunner().invoke(app, ["env", "--shell", "bash"])
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.startswith("error:") and "Traceback" not in res.stderr


def test_env_ca_error_is_one_line(app):
    files = ca.ensure_ca()
    files.key_path.unlink()
    res = CliRunner().invoke(app, ["env", "--shell", "bash"])
    assert res.exit_code == 1
    assert "error:" in res.stderr and "regenerate" in res.stderr
    assert res.stdout == ""


def test_env_warns_when_constraints_outdated(app):
    CliRunner().invoke(app, ["env", "--shell", "bash"])
    write_config('[proxy_mode]\nintercept_hosts = ["llm.example.org"]\n')
    res = CliRunner().invoke(app, ["env", "--shell", "bash"])
    assert res.exit_code == 0
    assert "llm.example.org" in res.stderr and "regenerate" in res.stderr
    assert "export HTTPS_PROXY=" in res.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VAR_NAMES}
    env.update(extra)
    return env


@pytest.mark.parametrize("sh", ["bash", "sh"])
def test_env_block_evaluated_by_real_shell(sh, tmp_path):
    if shutil.which(sh) is None:
        pytest.skip(f"{sh} not installed")
    (tmp_path / "app.py").write_text(APP_SRC)
    cmd = f'"{sys.executable}" "{tmp_path / "app.py"}"'
    names = ["HTTPS_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "NO_PROXY", "http_proxy"]
    script = (f'eval "$({cmd} env --shell {sh})" || exit 9\n'
              + "".join(f'printf "%s\\n" "${n}"\n' for n in names)
              + f'eval "$({cmd} env --shell {sh} --unset)"\n'
              + "".join(f'printf "%s\\n" "${{{n}-UNSET}}"\n' for n in names)
              + 'env | grep -c "^SSL_CERT_FILE=" || true\n')
    res = subprocess.run([sh, "-c", script], capture_output=True, text=True,
                         env=_clean_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    files = ca.ca_files()
    assert lines[:5] == ["http://127.0.0.1:4142", str(files.bundle_path), str(files.cert_path),
                         "localhost,127.0.0.1,::1", "http://127.0.0.1:4142"]
    assert "'" in str(files.bundle_path)  # the nasty path really was exercised
    assert lines[5:10] == ["UNSET"] * 5
    assert lines[10] == "0"


@pytest.mark.parametrize("sh", ["bash", "sh"])
def test_tokn_sh_functions(sh, tmp_path):
    if shutil.which(sh) is None:
        pytest.skip(f"{sh} not installed")
    (tmp_path / "app.py").write_text(APP_SRC)
    fake = tmp_path / "bin" / "tokn"
    fake.parent.mkdir()
    # the fake `tokn` drops the leading "proxy" group word, as our tiny app has no group
    fake.write_text(f'#!/bin/sh\nshift\nexec "{sys.executable}" "{tmp_path / "app.py"}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    script = (f'. "{data.path("shell-sh")}"\n'
              'tokn_on || exit 7\nprintf "%s\\n" "$HTTPS_PROXY" "$CURL_CA_BUNDLE"\n'
              'tokn_off\nprintf "%s\\n" "${HTTPS_PROXY-UNSET}" "${CURL_CA_BUNDLE-UNSET}"\n')
    env = _clean_env(PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run([sh, "-c", script], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["http://127.0.0.1:4142", str(ca.ca_files().bundle_path),
                                       "UNSET", "UNSET"]


def test_proxy_shell_runs_subshell_with_env(tmp_path):
    port = free_port()  # nothing listens there: the shell starts, with a warning
    write_config(f"[proxy_mode]\nport = {port}\n")
    (tmp_path / "app.py").write_text(APP_SRC)
    res = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "shell", "--shell", "/bin/sh"],
        input='printf "%s\\n" "$HTTPS_PROXY" "$REQUESTS_CA_BUNDLE"; exit 3\n',
        capture_output=True, text=True, env=_clean_env(), timeout=60,
    )
    assert res.returncode == 3, res.stderr
    url = f"http://127.0.0.1:{port}"
    assert res.stdout.splitlines() == [url, str(ca.ca_files().bundle_path)]
    warning, said = res.stderr.strip().splitlines()
    assert warning.startswith(f"warning: nothing accepts connections on 127.0.0.1:{port} "
                              "(tokn is not running: start it with `tokn start`)")
    assert said == f"tokn: sh via proxy {url} (exit to leave)"


def test_proxy_shell_missing_program(app):
    res = CliRunner().invoke(app, ["shell", "--shell", "/nonexistent/shell"])
    assert res.exit_code == 1
    assert "error:" in res.stderr


def test_env_hot_path_imports_stay_light(tmp_path):
    """With the CA in place, `env` parses no certificate and imports no server stack."""
    ca.ensure_bundle()
    code = APP_SRC.replace("app()", "try:\n    app()\nexcept SystemExit:\n    pass\n"
                           "print(sorted(m for m in ('cryptography', 'mitmproxy', 'httpx', "
                           "'uvicorn', 'starlette') if m in sys.modules), file=sys.stderr)")
    (tmp_path / "app.py").write_text(code)
    res = subprocess.run([sys.executable, str(tmp_path / "app.py"), "env", "--shell", "bash"],
                         capture_output=True, text=True, env=_clean_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "export HTTPS_PROXY" in res.stdout
    # tokn.cli's package __init__ builds the whole app; only our own path is judged here
    heavy = eval(res.stderr.strip().splitlines()[-1])
    assert "cryptography" not in heavy and "mitmproxy" not in heavy


def test_env_corrupt_ca_is_one_line(app):
    files = ca.ensure_ca()
    files.cert_path.write_text("junk")
    res = CliRunner().invoke(app, ["env", "--shell", "bash"])
    assert res.exit_code == 1
    assert res.stderr.startswith("error:") and "regenerate" in res.stderr
    assert res.stdout == ""
