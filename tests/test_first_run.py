"""The README's first-run path, verbatim, on a fresh copy of the source tree: a new
venv with a non-editable ``pip install .``, an account, ``tokn start``, ``eval
"$(tokn proxy env)"`` and a request that tokn serves.

This builds a real venv (30-60 s), once per run of the suite.  The machine's
network is faked, not the commands: ``api.openai.com`` is a loopback fake with a
certificate from a stand-in public CA, reachable only through a loopback forward
proxy — set up the way a user behind a corporate proxy would (``[proxy].url``
and ``[proxy_mode].upstream_ca_bundle`` in a config that has nothing else but
free ports).  The harness adds one thing between the README's lines: after a
line that starts tokn as a shell job (``&``) it waits until tokn answers, as a
person reading the next line would (``tokn start`` returns only once it
answers).  When the script ends, ``tokn stop`` stops what it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from tests.fakes.internet import FakeInternet
from tests.fakes.llm import FakeLLM
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- first-run:"


def first_run_block() -> list[str]:
    """The lines of the README's first-run block (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER):]
    start = after.index("```sh\n") + len("```sh\n")
    body = after[start:after.index("```", start)]
    return [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def _copy_source(dest: Path) -> None:
    """What a fresh clone has: the tracked (and new, not ignored) files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _clean_path() -> str:
    """PATH without this test run's venv: `tokn` must come from the README's install."""
    ours = {Path(sys.executable).parent.resolve(), Path(sys.prefix).resolve() / "bin"}
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() not in ours)


def _still_running(pid_file: Path) -> int | None:
    """The pid of a tokn that still holds ``pid_file``'s lock (then killed)."""
    import signal

    from tokn import paths

    if not pid_file.exists():
        return None
    fd = os.open(pid_file, os.O_RDWR)
    try:
        if paths.try_lock(fd):
            paths.unlock(fd)
            return None
        pid = int(os.read(fd, 64).split()[0])
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    return pid


def _script(lines: list[str], api: int, proxy: int) -> str:
    wait = (
        "__tokn_ready() { for _ in $(seq 900); do "
        f"curl -fs --noproxy '*' -o /dev/null http://127.0.0.1:{api}/healthz && "
        f"curl -fs --noproxy '*' -o /dev/null http://127.0.0.1:{proxy}/ && return 0; "
        "sleep 0.1; done; echo 'harness: tokn did not start' >&2; return 1; }\n")
    # at the end (the script's exit status kept): stop shell jobs and a tokn `tokn start` left
    stop = "kill $(jobs -p) 2>/dev/null; command -v tokn >/dev/null && tokn stop >/dev/null 2>&1"
    out = ["set -e", f"trap 'set +e; {stop}; wait' EXIT", wait]
    for line in lines:
        out.append(line)
        if line.split("#", 1)[0].rstrip().endswith("&"):
            out.append("__tokn_ready")
    return "\n".join(out) + "\n"


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")),
                    reason="needs bash and curl")
@pytest.mark.skipif(not (ROOT / ".git").exists() or not shutil.which("git"),
                    reason="copies the source tree of a git checkout")
def test_readme_first_run_path_verbatim(tmp_path, public_ca, tls_context_for):
    lines = first_run_block()
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install .")
    assert any("tokn proxy env" in line for line in lines)
    assert any(line.startswith("tokn start") for line in lines)
    checkout, home = tmp_path / "tokn", tmp_path / "home"
    checkout.mkdir()
    home.mkdir()
    _copy_source(checkout)
    _, public_root = public_ca
    api, proxy = free_port(), free_port()
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o-mini"],
                 auth={"sk-first-run-key"},
                 ssl_context=tls_context_for("api.openai.com")) as fake, \
            FakeInternet({"api.openai.com:443": fake.port}) as net:
        config_file = home / ".config" / "tokn" / "config.toml"
        config_file.parent.mkdir(parents=True)
        config_file.write_text(tomlkit.dumps({
            "server": {"port": api},
            "proxy_mode": {"port": proxy, "upstream_ca_bundle": str(public_root)},
            "proxy": {"url": net.http_url},
        }))
        config_file.chmod(0o600)
        env = {"PATH": _clean_path(), "HOME": str(home), "LANG": "C.UTF-8",
               "OPENAI_API_KEY": "sk-first-run-key",
               **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
        log = tmp_path / "first-run.log"
        with log.open("wb") as sink:
            proc = subprocess.run(["bash", "-c", _script(lines, api, proxy)], cwd=checkout,
                                  env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=900)
        output = log.read_text(errors="replace")
        left = _still_running(home / ".local" / "state" / "tokn" / "tokn.pid")
        assert proc.returncode == 0, output[-6000:]
        assert left is None, f"tokn stop at the end left pid {left} running"
    installed = list((checkout / ".venv" / "lib").glob("python3*/site-packages/tokn"))
    assert installed   # a real copy in site-packages: not an editable install
    assert (installed[0] / "data" / "addons" / "tokn_addon.py").is_file()   # package data
    assert '"content": "echo: hi"' in output or '"content":"echo: hi"' in output, output[-4000:]
    assert "saved account openai" in output
    calls = fake.requests_to("/v1/chat/completions")
    assert calls and calls[-1].bearer() == "sk-first-run-key"
    assert ("http-connect", "api.openai.com:443") in net.tunnels
