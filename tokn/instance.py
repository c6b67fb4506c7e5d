"""The running tokn of a TOKN_HOME: its PID file, its lock and its status file.

The process serving a state dir holds an exclusive lock on ``tokn.pid`` there
(its pid inside) for as long as it runs.  The lock, not the pid, says whether
it runs: a PID file nobody holds is stale (the process died, or its pid now
belongs to another program) and is simply taken over by the next tokn.  Once
both front doors listen, that process writes ``tokn.status.json`` beside it
(pid, version, start time, where it listens, who started it, with which
options) and removes it when it stops.  ``tokn status``, ``stop``, ``restart``,
``reload`` and ``tokn proxy env`` read these two files; nothing but the lock
holder writes them.

A second ``tokn serve`` of the same home on other ports runs without the lock:
it is not *the* instance and writes no status.  Several TOKN_HOMEs are several
independent instances.

Standard library only (and :mod:`tokn.paths`): ``tokn proxy env`` reads the
status at every shell start.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokn import __version__, paths

PID_NAME = "tokn.pid"
STATUS_NAME = "tokn.status.json"
SCHEMA = 1
# Who started the serving process: set in its environment by `tokn start`
# ("start") and by the service files `tokn service install` writes.
SUPERVISOR_ENV = "TOKN_SUPERVISOR"
SUPERVISORS = ("foreground", "start", "systemd", "launchd")
SERVICE_ENV = "TOKN_SERVICE"  # the service's name, set by the unit `tokn service` writes


def pid_path() -> Path:
    return paths.state_dir() / PID_NAME


def status_path() -> Path:
    return paths.state_dir() / STATUS_NAME


def supervisor(env: Mapping[str, str] | None = None) -> str:
    """Who started this process: one of :data:`SUPERVISORS`."""
    value = (os.environ if env is None else env).get(SUPERVISOR_ENV, "")
    return value if value in SUPERVISORS else "foreground"


# --- the lock holder ------------------------------------------------------------------
class Lock:
    """Held by the home's serving process for as long as it runs."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        """Remove the status file, empty the PID file, let the lock go."""
        if self.fd < 0:
            return
        status_path().unlink(missing_ok=True)
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        paths.unlock(self.fd)
        os.close(self.fd)
        self.fd = -1


def acquire(timeout: float = 0.5) -> Lock | None:
    """Become the home's instance: lock the PID file and write our pid into it.
    None when another live process holds the lock.  (Readers hold it for a
    moment to look: that is waited out for up to ``timeout`` seconds.)"""
    path = pid_path()
    paths.ensure_private_dir(path.parent)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if paths.try_lock(fd):
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # the file still at the path, not one removed meanwhile
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()}\n".encode())
                return Lock(fd)
            paths.unlock(fd)
        os.close(fd)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def write_status(data: dict[str, Any]) -> None:
    """Write the status file (only the lock holder does)."""
    paths.write_private(status_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")


def status_record(*, listener: tuple[str, str], proxy: tuple[str, str], accounts: int,
                  options: dict[str, Any], log_file: str, started_at: float) -> dict[str, Any]:
    """The status file's content for this process.  ``listener`` and ``proxy``
    are (URL, address bound); a URL is "" for a door that is not public."""
    from urllib.parse import urlsplit

    def where(url: str, bind: str) -> dict[str, Any] | None:
        if not url:
            return None
        parts = urlsplit(url)
        return {"url": url, "host": parts.hostname, "port": parts.port, "bind": bind}

    return {
        "schema": SCHEMA, "pid": os.getpid(), "version": __version__,
        "started_at": started_at, "supervisor": supervisor(),
        "service": os.environ.get(SERVICE_ENV) or None,
        "listener": where(*listener), "proxy": where(*proxy), "accounts": accounts,
        "options": options, "log_file": log_file, "config_file": str(paths.config_file()),
        "python": sys.executable,
        "reload": {"count": 0, "at": None, "applied": None, "message": None},
        "config": None,
    }


def config_record(*, generation: int, digest: str, applied: bool, message: str,
                  restart: list[str], at: float) -> dict[str, Any]:
    """The status file's ``config``: the config file content the process last
    took up or refused (``digest``, :func:`tokn.reload.digest`), the how-many-th
    (``generation``), and the changed keys waiting for a restart."""
    return {"generation": generation, "digest": digest, "applied": applied,
            "message": message, "restart": restart, "at": at}


def config_taken_up(pid: int, digest: str, timeout: float) -> dict[str, Any] | None:
    """Wait up to ``timeout`` seconds for the instance ``pid`` to record the
    config file content ``digest`` (taken up or refused); None when it did not."""
    deadline = time.monotonic() + timeout
    while True:
        status = read_status()
        done = status.get("config")
        if status.get("pid") == pid and isinstance(done, dict) and done.get("digest") == digest:
            return done
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


# --- readers --------------------------------------------------------------------------
def holder() -> int | None:
    """The pid of the process holding the home's lock; None when nobody does
    (no PID file, or a stale one).  0: held, but the pid is not written yet."""
    try:
        fd = os.open(pid_path(), os.O_RDWR)
    except (FileNotFoundError, PermissionError):
        return None
    try:
        if paths.try_lock(fd):
            paths.unlock(fd)
            return None
        raw = os.read(fd, 64)
    finally:
        os.close(fd)
    try:
        return int(raw.split()[0])
    except (ValueError, IndexError):
        return 0


def read_status() -> dict[str, Any]:
    """The status file as written (may be stale: see :func:`running`)."""
    try:
        data = json.loads(status_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Running:
    """The home's serving process, as its files describe it."""

    pid: int
    status: dict[str, Any] = field(default_factory=dict)  # {} while it is starting

    @property
    def ready(self) -> bool:
        return bool(self.status)

    def url(self, door: str) -> str:
        """``listener`` or ``proxy``: its URL, "" when it has none (yet)."""
        where = self.status.get(door)
        return where.get("url", "") if isinstance(where, dict) else ""

    def address(self, door: str) -> tuple[str, int] | None:
        where = self.status.get(door)
        if isinstance(where, dict) and isinstance(where.get("port"), int):
            return str(where.get("host") or "127.0.0.1"), where["port"]
        return None


def running() -> Running | None:
    """The running instance of this home, or None."""
    pid = holder()
    if pid is None:
        return None
    status = read_status()
    if status.get("pid") != pid:  # not written yet, or left by an earlier process
        status = {}
    return Running(pid, status)
