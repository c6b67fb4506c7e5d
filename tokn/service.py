"""tokn as a user service: a systemd user unit (Linux) or a launchd agent (macOS).

Both run ``tokn serve --with-proxy`` with the Python (and so the tokn) that
wrote them, the same ``TOKN_HOME`` / ``TOKN_CONFIG`` (absolute paths), restart
it when it fails (not when it was stopped), and send SIGHUP for a reload.
Rendering is pure (:func:`systemd_unit`, :func:`launchd_plist`); installing
and asking the service manager are the functions at the end.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokn import __version__
from tokn.instance import SERVICE_ENV, SUPERVISOR_ENV

KINDS = ("systemd", "launchd")
DESCRIPTION = "tokn: local gateway for AI subscriptions (API listener and MITM proxy)"
MANAGER_TIMEOUT = 30.0  # seconds any systemctl / launchctl call may take
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def default_name(env: Mapping[str, str] | None = None) -> str:
    """``tokn``; with TOKN_HOME ``tokn-<dir name>-<hash>``, so each home gets
    its own service."""
    env = os.environ if env is None else env
    home = env.get("TOKN_HOME")
    if not home:
        return "tokn"
    full = str(Path(home).expanduser().absolute())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(full).name).strip("-").lower()[:24] or "home"
    return f"tokn-{slug}-{hashlib.sha256(full.encode()).hexdigest()[:6]}"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"service name {name!r}: use letters, digits, '-', '_' and '.' "
                         "(at most 64)")
    return name


def label(name: str) -> str:
    """The launchd label of the agent ``name``."""
    return f"local.{name}"


def command() -> list[str]:
    """What the service runs: this Python's tokn, listener and proxy."""
    return [sys.executable, "-m", "tokn", "serve", "--with-proxy"]


def environment(kind: str, name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    out = {SUPERVISOR_ENV: kind, SERVICE_ENV: name}
    for var in ("TOKN_HOME", "TOKN_CONFIG"):
        if env.get(var):
            out[var] = str(Path(env[var]).expanduser().absolute())
    return out


# --- rendering (pure) -------------------------------------------------------------------
def _systemd_quote(value: str) -> str:
    """One word of a systemd command line / assignment: specifiers (``%``) and
    variables (``$``) escaped, quoted when it has spaces or quotes."""
    value = value.replace("%", "%%").replace("$", "$$")
    if not value or re.search(r"[\s\"'\\;]", value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def systemd_unit(argv: list[str], env: Mapping[str, str], *, stop_secs: float,
                 kill: str = "/bin/kill") -> str:
    """A systemd user unit running ``argv`` with ``env``."""
    exec_start = " ".join(_systemd_quote(arg) for arg in argv)
    lines = [
        f"# Written by `tokn service install` (tokn {__version__}); "
        "`tokn service uninstall` removes it.",
        "[Unit]",
        f"Description={DESCRIPTION}",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        f"ExecReload={_systemd_quote(kill)} -HUP $MAINPID",
    ]
    for key, value in env.items():
        value = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'Environment="{key}={value}"')
    lines += [
        "Restart=on-failure",
        "RestartSec=5",
        f"TimeoutStopSec={int(stop_secs)}",
        "UMask=0077",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def launchd_plist(name: str, argv: list[str], env: Mapping[str, str], *, log_file: Path,
                  stop_secs: float) -> bytes:
    """A launchd agent running ``argv`` with ``env``; its output goes to the log file."""
    return plistlib.dumps({
        "Label": label(name),
        "ProgramArguments": list(argv),
        "EnvironmentVariables": dict(env),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # again after a failure, not after a stop
        "ThrottleInterval": 10,
        "ExitTimeOut": int(stop_secs),
        "Umask": 0o077,
        "StandardOutPath": str(log_file),
        "StandardErrorPath": str(log_file),
        "ProcessType": "Background",
    }, sort_keys=False)


# --- files and the service manager ------------------------------------------------------
@dataclass
class Service:
    kind: str
    name: str
    directory: Path

    @property
    def path(self) -> Path:
        if self.kind == "systemd":
            return self.directory / f"{self.name}.service"
        return self.directory / f"{label(self.name)}.plist"

    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    def render(self, *, log_file: Path, stop_secs: float) -> bytes:
        env = environment(self.kind, self.name)
        if self.kind == "systemd":
            kill = shutil.which("kill") or "/bin/kill"
            return systemd_unit(command(), env, stop_secs=stop_secs, kill=kill).encode()
        return launchd_plist(self.name, command(), env, log_file=log_file, stop_secs=stop_secs)


def default_dir(kind: str, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if kind == "systemd":
        base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user"
    return Path.home() / "Library" / "LaunchAgents"


class ManagerError(Exception):
    """systemctl / launchctl failed, or is not there; the message says which."""


def manager(argv: list[str]) -> subprocess.CompletedProcess:
    """Run systemctl / launchctl (bounded); ManagerError when it cannot run."""
    if shutil.which(argv[0]) is None:
        raise ManagerError(f"{argv[0]} is not installed here")
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=MANAGER_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ManagerError(f"`{' '.join(argv)}` did not finish within "
                           f"{MANAGER_TIMEOUT:g} s") from None


def checked(argv: list[str]) -> None:
    result = manager(argv)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise ManagerError(f"`{' '.join(argv)}` failed (exit {result.returncode})"
                           + (f": {said[0]}" if said else ""))


def enable(svc: Service) -> None:
    if svc.kind == "systemd":
        checked(["systemctl", "--user", "daemon-reload"])
        checked(["systemctl", "--user", "enable", svc.unit])
        checked(["systemctl", "--user", "restart", svc.unit])  # a changed unit takes effect
    else:
        disable(svc)  # bootstrap refuses an agent that is loaded already
        checked(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(svc.path)])


def disable(svc: Service) -> None:
    if svc.kind == "systemd":
        checked(["systemctl", "--user", "disable", "--now", svc.unit])
    else:
        result = manager(["launchctl", "bootout", f"gui/{os.getuid()}/{label(svc.name)}"])
        if result.returncode not in (0, 3, 113):  # 3/113: it was not loaded
            raise ManagerError(f"launchctl bootout failed (exit {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")


def reload_manager(svc: Service) -> None:
    if svc.kind == "systemd":
        checked(["systemctl", "--user", "daemon-reload"])


def state(svc: Service) -> str:
    """What the service manager says: "active", "inactive", "failed", "loaded",
    "not loaded", ... or why it cannot say."""
    try:
        if svc.kind == "systemd":
            result = manager(["systemctl", "--user", "is-active", svc.unit])
            said = (result.stdout.strip() or result.stderr.strip()).splitlines()
            return said[0] if said else "unknown"
        result = manager(["launchctl", "print", f"gui/{os.getuid()}/{label(svc.name)}"])
        return "loaded" if result.returncode == 0 else "not loaded"
    except ManagerError as exc:
        return f"unknown ({exc})"
