"""``tokn service``: the systemd unit and the launchd agent it writes are valid
(``systemd-analyze verify``, ``plutil -lint`` / plistlib), run this tokn with
this TOKN_HOME when started the way their manager starts them, and install /
uninstall drive the manager (a stand-in ``systemctl``: no real service is
enabled on the test machine)."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, write_config
from tests.lifecycle.helpers import kill_leftover, one_line, tokn, wait_for
from tests.lifecycle.units import install_fake_systemctl, read_unit, run_service, service_command
from tokn import instance, service

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX services only")
ARGV = [sys.executable, "-m", "tokn", "serve", "--with-proxy"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A TOKN_HOME whose path has what unit files must escape: a space, % and $."""
    path = tmp_path / "my 100% $HOME"
    path.mkdir()
    monkeypatch.setenv("TOKN_HOME", str(path))
    write_config({"server": {"port": free_port(), "drain_secs": 7},
                  "proxy_mode": {"port": free_port()}})
    yield path
    kill_leftover()


def _install(units: Path, *extra: str) -> subprocess.CompletedProcess:
    return tokn("service", "install", "--unit-dir", str(units), *extra)


def test_dry_run_prints_the_unit_and_writes_nothing(home, tmp_path):
    result = tokn("service", "install", "--kind", "systemd", "--unit-dir",
                  str(tmp_path / "units"), "--dry-run")
    assert result.returncode == 0, result.stderr
    keys = read_unit(result.stdout)
    assert keys["Restart"] == ["on-failure"] and keys["WantedBy"] == ["default.target"]
    assert keys["TimeoutStopSec"] == ["22"]  # drain_secs + 15
    assert service_command(result.stdout) == (ARGV, {
        "TOKN_SUPERVISOR": "systemd", "TOKN_SERVICE": service.default_name(),
        "TOKN_HOME": str(home)})
    assert "# would write" in result.stderr and not (tmp_path / "units").exists()
    plist = tokn("service", "install", "--kind", "launchd", "--dry-run")
    assert plistlib.loads(plist.stdout.encode())["ProgramArguments"] == ARGV


def test_each_home_gets_its_own_service_name(home, tmp_path):
    first, other, same_dir_name = (service.default_name({"TOKN_HOME": str(p)}) for p in
                                   (home, tmp_path / "other", tmp_path / "x" / home.name))
    assert first.startswith("tokn-my-100-home-") and other.startswith("tokn-other-")
    assert same_dir_name.startswith("tokn-my-100-home-") and same_dir_name != first
    assert service.default_name({}) == "tokn"


def test_systemd_unit_verifies_and_runs_this_tokn_as_systemd_would(home, tmp_path):
    units = tmp_path / "units"
    result = _install(units, "--kind", "systemd", "--no-enable")
    assert result.returncode == 0, result.stderr
    name = service.default_name()
    unit = units / f"{name}.service"
    assert f"wrote {unit}" in result.stdout
    assert f"systemctl --user daemon-reload && systemctl --user enable --now {name}.service" \
        in result.stdout
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    text = unit.read_text()
    assert "ExecReload=" in text and "-HUP $MAINPID" in text and "UMask=0077" in text

    if shutil.which("systemd-analyze"):
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
        check = subprocess.run(["systemd-analyze", "verify", "--user", str(unit)],
                               capture_output=True, text=True, env=env, timeout=120)
        assert check.returncode == 0 and check.stdout + check.stderr == "", check.stderr
    # (else: read_unit/service_command below still parse it as systemd would)

    status = tokn("service", "status", "--kind", "systemd", "--unit-dir", str(units))
    assert status.returncode == 0 and "out of date" not in status.stdout
    assert "tokn: not running" in status.stdout

    proc = run_service(text, dict(os.environ), tmp_path / "journal.txt")
    found = wait_for(lambda: (r := instance.running()) and r.ready and r, timeout=60,
                     what="the service's tokn")
    assert found.pid == proc.pid
    st = json.loads(tokn("status", "--json").stdout)
    assert st["supervisor"] == "systemd" and st["service"] == name
    assert "started by systemd (`tokn service`)" in tokn("status").stdout
    refused = tokn("restart")
    assert refused.returncode == 1
    assert f"`systemctl --user restart {name}.service`" in one_line(refused)
    stopped = tokn("stop")
    assert stopped.returncode == 0 and "tokn service uninstall" in stopped.stdout
    assert proc.wait(30) == 0  # a clean stop: Restart=on-failure leaves it stopped

    unit.write_text(text.replace("RestartSec=5", "RestartSec=6"))
    status = tokn("service", "status", "--kind", "systemd", "--unit-dir", str(units))
    assert "out of date" in status.stdout
    removed = tokn("service", "uninstall", "--kind", "systemd", "--unit-dir", str(units),
                   "--no-disable")
    assert removed.returncode == 0 and not unit.exists()
    assert tokn("service", "status", "--kind", "systemd", "--unit-dir",
                str(units)).returncode == 3
    again = tokn("service", "uninstall", "--kind", "systemd", "--unit-dir", str(units))
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_launchd_agent_is_valid_and_runs_with_its_output_in_the_log(home, tmp_path):
    agents = tmp_path / "LaunchAgents"
    assert _install(agents, "--kind", "launchd", "--no-enable").returncode == 0
    name = service.default_name()
    path = agents / f"local.{name}.plist"
    if shutil.which("plutil"):
        lint = subprocess.run(["plutil", "-lint", str(path)], capture_output=True, text=True,
                              timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    agent = plistlib.loads(path.read_bytes())
    log = home / "state" / "tokn.log"
    assert agent["Label"] == f"local.{name}"
    assert agent["ProgramArguments"] == ARGV
    assert agent["EnvironmentVariables"] == {"TOKN_SUPERVISOR": "launchd", "TOKN_SERVICE": name,
                                             "TOKN_HOME": str(home)}
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == str(log)
    assert agent["ExitTimeOut"] == 22 and agent["Umask"] == 0o077

    # as launchd runs it: its environment, stdout and stderr appended to the log
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        proc = subprocess.Popen(agent["ProgramArguments"], stdout=fd, stderr=fd,
                                env={"PATH": os.environ["PATH"],
                                     **agent["EnvironmentVariables"]},
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(fd)
    wait_for(lambda: (r := instance.running()) and r.ready, timeout=60, what="the agent")
    assert json.loads(tokn("status", "--json").stdout)["supervisor"] == "launchd"
    assert tokn("stop").returncode == 0
    assert proc.wait(30) == 0
    text = log.read_text()
    assert text.count("started tokn") == 1 and text.count(f"stopped (pid {proc.pid})") == 1
    assert oct(log.stat().st_mode & 0o777) == "0o600"  # tokn tightens launchd's file


def test_install_and_uninstall_drive_systemctl_and_wait_for_tokn(home, tmp_path, monkeypatch):
    units, calls = tmp_path / "units", tmp_path / "calls.txt"
    install_fake_systemctl(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UNIT_DIR", str(units))
    name = service.default_name()
    result = _install(units, "--kind", "systemd")
    assert result.returncode == 0, result.stderr
    running = instance.running()
    assert running is not None and running.status["supervisor"] == "systemd"
    assert f"tokn runs as the systemd service {name} (pid {running.pid})" in result.stdout
    assert running.url("listener") in result.stdout
    assert calls.read_text().splitlines() == [
        "--user daemon-reload", f"--user enable {name}.service",
        f"--user restart {name}.service"]

    status = tokn("service", "status", "--kind", "systemd", "--unit-dir", str(units))
    assert "service manager: active" in status.stdout
    assert f"tokn: running (pid {running.pid}, started by systemd)" in status.stdout

    removed = tokn("service", "uninstall", "--kind", "systemd", "--unit-dir", str(units))
    assert removed.returncode == 0, removed.stderr
    assert calls.read_text().splitlines()[-2:] == [f"--user disable --now {name}.service",
                                                   "--user daemon-reload"]
    wait_for(lambda: instance.running() is None, timeout=30, what="the service to stop")
    assert not (units / f"{name}.service").exists()


def test_install_refusals_are_one_line(home, tmp_path, monkeypatch):
    units, calls = tmp_path / "units", tmp_path / "calls.txt"
    assert tokn("start").returncode == 0
    pid = instance.running().pid
    line = one_line(_install(units, "--kind", "systemd"))
    assert f"tokn is running already (pid {pid}); stop it first with `tokn stop`" in line
    assert not units.exists()
    assert tokn("stop").returncode == 0

    install_fake_systemctl(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UNIT_DIR", str(units))
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", "Failed to connect to bus: No medium found")
    result = _install(units, "--kind", "systemd")
    unit = units / f"{service.default_name()}.service"
    assert result.returncode == 1 and result.stdout == f"wrote {unit}\n" and unit.exists()
    [line] = result.stderr.splitlines()
    assert "`systemctl --user daemon-reload` failed (exit 1): Failed to connect to bus" in line
    assert "systemctl --user enable --now" in line  # what to run once it is fixed
    assert one_line(tokn("service", "install", "--name", "bad/name")).startswith(
        "error: --name: service name 'bad/name'")
