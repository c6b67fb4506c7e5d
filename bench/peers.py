"""Optional peer gateways for side-by-side rows, against the same fast upstream.

    python bench/peers.py install [--dir bench/.peers]

installs LiteLLM's proxy (``litellm[proxy]`` in its own venv) and
claude-code-router (npm ``@musistudio/claude-code-router``) under ``--dir``
(default ``bench/.peers``, git-ignored).  The benchmarks add a peer's rows only
when it is installed there: LiteLLM on the chat path (OpenAI in, OpenAI out),
claude-code-router on the messages path (Anthropic in, OpenAI chat upstream,
what Claude Code users run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import harness
from harness import CHAT_HEADERS, MESSAGES_HEADERS, MODEL, UPSTREAM_KEY, Door

DEFAULT_DIR = Path(__file__).resolve().parent / ".peers"
LITELLM_KEY = "sk-bench-litellm-0123456789abcdef0123"  # its master key (required)
CCR_KEY = "sk-bench-ccr"


def litellm_exe(peers: Path) -> Path:
    return peers / "litellm" / "bin" / "litellm"


def ccr_exe(peers: Path) -> Path:
    return peers / "ccr" / "node_modules" / ".bin" / "ccr"


def installed(peers: Path) -> dict[str, bool]:
    return {"litellm": litellm_exe(peers).exists(), "ccr": ccr_exe(peers).exists()}


def version(name: str, peers: Path) -> str:
    try:
        if name == "litellm":
            out = subprocess.run([str(peers / "litellm" / "bin" / "python"), "-c",
                                  "import importlib.metadata as m; print(m.version('litellm'))"],
                                 capture_output=True, text=True, timeout=60).stdout
            return out.strip()
        pkg = peers / "ccr" / "node_modules" / "@musistudio" / "claude-code-router"
        return json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return "?"


@contextlib.contextmanager
def litellm(workdir: Path, upstream_url: str, peers: Path) -> Iterator[Door]:
    """LiteLLM's proxy (one worker, its defaults) serving ``bench-model`` from the upstream."""
    port = harness.free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_url}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n")
    # the cost map is read from the package (no download attempt on start)
    env = harness.clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    cmd = [str(litellm_exe(peers)), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1"]
    with harness.process(cmd, workdir / "litellm.out", port, env=env, timeout=180) as proc:
        headers = {**CHAT_HEADERS, "authorization": f"Bearer {LITELLM_KEY}"}
        door = Door(f"LiteLLM {version('litellm', peers)}",
                    f"http://127.0.0.1:{port}/v1/chat/completions", harness.chat_body(),
                    harness.chat_body(stream=True), headers, proc.pid)
        _ready(door)
        yield door


@contextlib.contextmanager
def ccr(workdir: Path, upstream_url: str, peers: Path) -> Iterator[Door]:
    """claude-code-router (``ccr start``, logging off) routing everything to the upstream."""
    port = harness.free_port()
    home = workdir / "ccr-home"
    (home / ".claude-code-router").mkdir(parents=True, exist_ok=True)
    (home / ".claude-code-router" / "config.json").write_text(json.dumps({
        "PORT": port, "HOST": "127.0.0.1", "LOG": False, "NON_INTERACTIVE_MODE": True,
        "APIKEY": CCR_KEY,
        "Providers": [{"name": "bench", "api_base_url": upstream_url + "/v1/chat/completions",
                       "api_key": UPSTREAM_KEY, "models": [MODEL]}],
        "Router": {"default": f"bench,{MODEL}"}}))
    env = harness.clean_env(HOME=str(home))
    with harness.process([str(ccr_exe(peers)), "start"], workdir / "ccr.out", port,
                         env=env) as proc:
        headers = {**MESSAGES_HEADERS, "x-api-key": CCR_KEY}
        door = Door(f"claude-code-router {version('ccr', peers)}",
                    f"http://127.0.0.1:{port}/v1/messages", harness.messages_body(),
                    harness.messages_body(stream=True), headers, proc.pid, kind="messages")
        _ready(door)
        yield door


@contextlib.contextmanager
def mitmdump(workdir: Path, upstream_url: str, python: str = sys.executable) -> Iterator[Door]:
    """mitmproxy alone (``mitmdump`` as shipped, with ``mitmdump_forward.py``): the
    same interception as tokn's MITM rows (CONNECT, TLS with its own CA), every
    request sent on to the upstream and every answer streamed; ``python`` is
    tokn's interpreter, so the same mitmproxy."""
    port = harness.free_port()
    confdir = workdir / "mitmdump-conf"
    cmd = [python, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()",
           "-q", "--listen-host", "127.0.0.1", "-p", str(port), "--set", f"confdir={confdir}",
           "--set", "connection_strategy=lazy", "--set", "upstream_cert=false",
           "-s", str(Path(__file__).resolve().parent / "mitmdump_forward.py")]
    env = harness.clean_env(BENCH_UPSTREAM=upstream_url)
    with harness.process(cmd, workdir / "mitmdump.out", port, env=env) as proc:
        door = Door(f"mitmdump {_mitmproxy_version(python)} alone",
                    "https://api.openai.com/v1/chat/completions", harness.chat_body(),
                    harness.chat_body(stream=True), CHAT_HEADERS, proc.pid,
                    proxy=f"http://127.0.0.1:{port}",
                    cafile=str(confdir / "mitmproxy-ca-cert.pem"))
        _ready(door)
        yield door


def _mitmproxy_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import mitmproxy.version as v; print(v.VERSION)"],
                         capture_output=True, text=True, timeout=60).stdout
    return out.strip() or "?"


def _ready(door: Door, timeout: float = 60) -> None:
    """A peer may listen before it can answer: wait for a first 200."""
    deadline = time.monotonic() + timeout
    while True:
        conn = door.conn()
        try:
            harness.call_ok(conn, door)
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            conn.close()


def install(peers: Path) -> None:
    peers.mkdir(parents=True, exist_ok=True)
    venv = peers / "litellm"
    if not litellm_exe(peers).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                       check=True)
    if not ccr_exe(peers).exists():
        (peers / "ccr").mkdir(exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                        "@musistudio/claude-code-router"], cwd=peers / "ccr", check=True)
    print(installed(peers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    install(args.dir)


if __name__ == "__main__":
    main()
