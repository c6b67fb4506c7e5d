"""Driving the real ``tokn`` CLI as subprocesses, and never leaving one running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tokn import instance


def tokn(*args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """``tokn ARGS`` as a user runs it (output captured: ``tokn start`` must not
    hand these pipes to the process it leaves running, or this would hang)."""
    return subprocess.run([sys.executable, "-m", "tokn", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or dict(os.environ),
                          stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The single line a refused command printed on stderr (and nothing else)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == "", (result.stdout, result.stderr)
    return lines[0]


def kill_leftover(env: dict[str, str] | None = None) -> None:
    """Stop whatever tokn the home of ``env`` (default: ours) still runs."""
    saved = os.environ.get("TOKN_HOME")
    if env is not None:
        os.environ["TOKN_HOME"] = env["TOKN_HOME"]
    try:
        pid = instance.holder()
        if not pid:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and instance.holder() == pid:
                time.sleep(0.05)
            if instance.holder() != pid:
                return
    finally:
        if saved is not None:
            os.environ["TOKN_HOME"] = saved


def wait_for(cond, timeout: float = 15.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
