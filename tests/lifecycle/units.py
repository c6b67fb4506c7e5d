"""Reading the unit files ``tokn service`` writes the way their managers do, and a
stand-in ``systemctl`` that runs a unit the way systemd would (no real
service manager is touched by the tests).

The unit reader follows systemd.syntax(7) / systemd.service(5) for what tokn
writes: words split on whitespace, double-quoted words with C escapes, ``%%``
for ``%`` and ``$$`` for ``$`` in command lines; ``Environment="K=V"``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "s": " "}


def words(line: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        word = ""
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    word += ESCAPES[line[i + 1]]
                    i += 2
                else:
                    word += line[i]
                    i += 1
            i += 1
        else:
            while i < len(line) and not line[i].isspace():
                word += line[i]
                i += 1
        out.append(word)
    return out


def read_unit(text: str) -> dict[str, list[str]]:
    """``key -> [values]`` of a unit file (all sections together)."""
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def service_command(text: str) -> tuple[list[str], dict[str, str]]:
    """What systemd runs for the unit: ExecStart's argv and the Environment."""
    keys = read_unit(text)
    argv = [w.replace("%%", "%").replace("$$", "$") for w in words(keys["ExecStart"][0])]
    env: dict[str, str] = {}
    for value in keys.get("Environment", []):
        for word in words(value):
            name, _, val = word.replace("%%", "%").partition("=")
            env[name] = val
    return argv, env


def run_service(text: str, base_env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start the unit's command as systemd would: its own session, the unit's
    Environment on top of a minimal one, output to ``log`` (the journal here)."""
    argv, env = service_command(text)
    full = {"PATH": base_env.get("PATH", "/usr/bin:/bin"), "HOME": base_env.get("HOME", "/"),
            **{k: v for k, v in base_env.items() if k.startswith(("PYTHON", "LANG"))}, **env}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=full, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd="/")


# --- a stand-in systemctl ---------------------------------------------------------------
FAKE_SYSTEMCTL = """#!{python}
import sys
sys.path.insert(0, {repo!r})
from tests.lifecycle.units import fake_systemctl
sys.exit(fake_systemctl(sys.argv[1:]))
"""


def install_fake_systemctl(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(python=sys.executable,
                                            repo=str(Path(__file__).resolve().parents[2])))
    script.chmod(0o755)
    os.environ["FAKE_SYSTEMCTL_CALLS"] = str(calls)


def fake_systemctl(args: list[str]) -> int:
    """``--user daemon-reload | enable U | restart U | disable --now U | is-active U``
    against units in $FAKE_UNIT_DIR; each call is appended to $FAKE_SYSTEMCTL_CALLS."""
    calls = Path(os.environ["FAKE_SYSTEMCTL_CALLS"])
    with open(calls, "a") as fh:
        fh.write(" ".join(args) + "\n")
    if os.environ.get("FAKE_SYSTEMCTL_FAIL"):
        print(os.environ["FAKE_SYSTEMCTL_FAIL"], file=sys.stderr)
        return 1
    assert args[0] == "--user", args
    verb, rest = args[1], args[2:]
    units = Path(os.environ["FAKE_UNIT_DIR"])
    pids = units / ".pids"
    pids.mkdir(exist_ok=True)
    if verb in ("daemon-reload", "enable"):
        return 0
    unit = rest[-1]
    pid_file = pids / unit
    if verb == "restart":
        _kill(pid_file)
        proc = run_service((units / unit).read_text(), dict(os.environ),
                           units / f"{unit}.journal")
        pid_file.write_text(str(proc.pid))
        return 0
    if verb == "disable":
        _kill(pid_file)
        return 0
    if verb == "is-active":
        print("active" if pid_file.exists() else "inactive")
        return 0 if pid_file.exists() else 3
    return 1


def _kill(pid_file: Path) -> None:
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        pid_file.unlink()
