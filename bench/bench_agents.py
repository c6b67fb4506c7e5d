"""How much later do Claude Code and Codex reach their first model turn
through tokn's proxy than against its listener?

    python bench/bench_agents.py [-n 3] [--agent claude|codex|both]

Starts tokn in-process (listener + proxy, route mode) with an account on a
fake upstream and the agents' own hosts unreachable (their side calls are
answered by tokn at once), then runs the real CLIs (``TOKN_NPM_BIN``, default
/opt/npmcache/node_modules/.bin) ``-n`` times each way, alternating, with no
model flag: ``claude -p`` / ``codex exec``.  Prints the time from launch to
the first model call reaching the fake, and to the end of the run: min and
median, listener and proxy side by side.  Not a test: figures, not assertions
(tests/agents/ asserts the bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--agent", choices=("claude", "codex", "both"), default="both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tokn-bench-agents-"))
    os.environ["TOKN_HOME"] = str(work / "tokn")
    (work / "tokn").mkdir()
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
        os.environ.pop(name, None)

    from tests.agents.clis import claude, claude_listener_env, codex
    from tests.fakes.llm import FakeLLM
    from tests.helpers import account, free_port, proxy_env, running_tokn, write_config

    agents = ("claude", "codex") if args.agent == "both" else (args.agent,)
    with FakeLLM(formats={"chat", "messages", "responses"}, path_prefix="/v1",
                 models=["claude-opus-4.5", "claude-sonnet-4.5", "gpt-5"]) as fake:
        port, closed = free_port(), f"127.0.0.1:{free_port()}"
        write_config({"proxy_mode": {"port": port, "upstream_overrides": {
            "api.anthropic.com": closed, "api.openai.com": closed}},
            "accounts": [account("pool", "openai-compatible", base_url=fake.url + "/v1",
                                 settings={"formats": ["chat", "messages", "responses"]})]})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=port) as tokn:
            starts = {
                ("claude", "listener"): lambda home: claude(
                    home, "say hi", claude_listener_env(tokn.api_url)),
                ("claude", "proxy"): lambda home: claude(home, "say hi", env),
                ("codex", "listener"): lambda home: codex(home, "say hi", {},
                                                          listener=tokn.api_url),
                ("codex", "proxy"): lambda home: codex(home, "say hi", env),
            }
            print(f"{'agent':8} {'way':9} {'first turn min':>15} {'median':>8} "
                  f"{'whole run median':>17}")
            for agent in agents:
                figures: dict[str, tuple[list[float], list[float]]] = {
                    "listener": ([], []), "proxy": ([], [])}
                for i in range(args.n):
                    for way in ("listener", "proxy"):
                        mark = len(fake.requests)
                        run = starts[(agent, way)](work / f"{agent}-{way}-{i}")
                        ended = time.monotonic()
                        calls = [r.time for r in fake.requests[mark:] if r.method == "POST"]
                        if run.returncode != 0 or not calls:
                            print(f"{agent} via {way} failed: {run.stderr[-500:]}")
                            continue
                        figures[way][0].append(calls[0] - run.started)
                        figures[way][1].append(ended - run.started)
                for way, (first, whole) in figures.items():
                    if first:
                        print(f"{agent:8} {way:9} {min(first):14.2f}s "
                              f"{statistics.median(first):7.2f}s "
                              f"{statistics.median(whole):16.2f}s")


if __name__ == "__main__":
    main()
