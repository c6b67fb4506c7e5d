"""Starting tokn in the background, stopping it, asking it to reload (POSIX).

``tokn start`` runs ``tokn serve --with-proxy`` as a detached process: a new
session (no controlling terminal, so no SIGHUP when the terminal closes),
stdin from ``/dev/null``, stdout and stderr appended to the log file (never a
pipe: nobody would read it).  The process becomes the home's instance
(:mod:`tokn.instance`); :func:`start` returns once its status file is written
and both ports accept connections, or raises :class:`StartFailed` with what
the process printed (its one-line ``error:``).

:func:`stop` sends SIGTERM (the server drains: ``[server].drain_secs``) and
waits for the lock to be released; :func:`request_reload` sends SIGHUP and
waits for the process to record the outcome in its status file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokn import instance, paths
from tokn.errors import ToknError
from tokn.ports import accepts


class StartFailed(ToknError):
    """The background tokn exited (or never became ready); ``lines`` is what it
    printed, the ``error:`` lines when there are any."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message, status=500, code="start_failed")
        self.lines = lines


def serve_args(options: Mapping[str, Any]) -> list[str]:
    """``tokn serve`` arguments for start ``options`` (values left at None come
    from the config)."""
    args = ["serve", "--with-proxy"]
    for key, flag in (("host", "--host"), ("port", "--port"), ("proxy_host", "--proxy-host"),
                      ("proxy_port", "--proxy-port"),
                      ("proxy_route_mode", "--proxy-route-mode")):
        if options.get(key) is not None:
            args += [flag, str(options[key])]
    if options.get("insecure_allow_remote"):
        args.append("--insecure-allow-remote")
    return args


def child_env(base: Mapping[str, str], api_key: str | None = None) -> dict[str, str]:
    """The background process's environment: ours, marked as started by
    ``tokn start``, with TOKN_HOME / TOKN_CONFIG absolute (its working
    directory may go away) and the API key, if one was given, in TOKN_API_KEY
    (never on its command line, which every user can read)."""
    env = dict(base)
    env[instance.SUPERVISOR_ENV] = "start"
    for name in ("TOKN_HOME", "TOKN_CONFIG"):
        if env.get(name):
            env[name] = str(Path(env[name]).expanduser().absolute())
    if api_key is not None:
        env["TOKN_API_KEY"] = api_key
    return env


def open_log(path: Path) -> int:
    """The log file opened for appending, 0600 (created if need be)."""
    if path.parent == paths.state_dir():
        paths.ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def spawn(args: list[str], log_path: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """``python -m tokn ARGS`` detached, its output appended to ``log_path``."""
    fd = open_log(log_path)
    try:
        return subprocess.Popen([sys.executable, "-m", "tokn", *args], stdin=subprocess.DEVNULL,
                                stdout=fd, stderr=fd, env=dict(env), close_fds=True,
                                start_new_session=True)
    finally:
        os.close(fd)


def output_since(path: Path, offset: int) -> list[str]:
    """Lines written to ``path`` after byte ``offset``: its ``error:`` lines if
    there are any, else the last 20."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return errors or lines[-20:]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def start(args: list[str], log_path: Path, env: Mapping[str, str],
          timeout: float = 60.0) -> instance.Running:
    """Start tokn in the background and wait until it serves (see module doc)."""
    offset = _size(log_path)
    proc = spawn(args, log_path, env)
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            # what it printed may be in a rotated file if it logged a lot: rare
            raise StartFailed(f"tokn did not start (exit code {code})",
                              output_since(log_path, min(offset, _size(log_path))))
        found = instance.running()
        if found is not None and found.pid == proc.pid and found.ready:
            doors = [found.address(d) for d in ("listener", "proxy")]
            if all(accepts(*door, timeout=0.5) for door in doors if door):
                return found
        if time.monotonic() > deadline:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise StartFailed(f"tokn did not start within {timeout:g} s and was stopped",
                              output_since(log_path, min(offset, _size(log_path))))
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> bool:
    """Send ``sig``; False when the process is gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, until: float) -> bool:
    while time.monotonic() < until:
        if instance.holder() != pid:
            return True
        time.sleep(0.05)
    return instance.holder() != pid


def stop(pid: int, timeout: float) -> bool:
    """SIGTERM the instance ``pid`` and wait up to ``timeout`` seconds for it to
    finish draining and exit; then a second SIGTERM (in-flight requests are
    ended at once) and up to 15 s more.  Whether it stopped."""
    if not _signal(pid, signal.SIGTERM):
        return _gone(pid, time.monotonic() + 5)
    if _gone(pid, time.monotonic() + timeout):
        return True
    _signal(pid, signal.SIGTERM)
    return _gone(pid, time.monotonic() + 15)


def request_reload(found: instance.Running, timeout: float = 5.0) -> dict[str, Any] | None:
    """SIGHUP the instance and wait for the outcome it records (the status
    file's ``reload``); None when none came within ``timeout`` seconds."""
    def count(status: Mapping[str, Any]) -> int:
        done = status.get("reload")
        return int(done.get("count") or 0) if isinstance(done, dict) else 0

    before = count(found.status)
    if not _signal(found.pid, signal.SIGHUP):
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = instance.read_status()
        if status.get("pid") == found.pid and count(status) > before:
            return status["reload"]
        time.sleep(0.05)
    return None
