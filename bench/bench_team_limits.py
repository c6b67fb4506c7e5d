"""What a person's key (team mode limits) costs a request, side by side with a
direct call and with the admin key, in one run.

    python bench/bench_team_limits.py [--duration 5] [--concurrency 32] [--redis]
                                      [--python OTHER_VENV/bin/python] [--json]

Starts the fast loopback upstream and ``tokn serve`` (``bench/harness.py``)
with an admin key and one person's key with limits too high to refuse
(``--rpm``, ``--tokens-per-day``), then ``hey -z DURATION -c CONCURRENCY``
per row:

* ``direct``: the upstream itself;
* ``admin key``: the listener, no limits counted;
* ``team key``: the listener, the key's requests and tokens counted
  (``LocalCounters``: memory + ``limits.json``);
* with ``--redis`` (a ``redis-server`` of its own on a free port), a second
  tokn with ``[state] url``: ``admin key, Redis`` (the pool's health read from
  Redis, no limits), ``team key, Redis`` (limits counted in Redis too) and
  ``team key, Redis frozen`` (``redis-server`` stopped with SIGSTOP during the
  run: what a hung Redis costs; ``[state] timeout_secs`` = 1).

Each row gives req/s, p50/p99 and the CPU the tokn process spent per request
(steadier than req/s on a shared machine).  ``--python`` runs tokn from
another venv (to compare with another version).  Figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import harness
from harness import CHAT_HEADERS, Door, chat_body, cpu_secs, hey

ADMIN = "sk-bench-client"  # the harness's client key, the admin key here
HIGH = str(10**12)


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def person_key(python: str, home: Path) -> str:
    out = subprocess.run([python, "-m", "tokn", "keys", "create", "alice", "--rpm", HIGH,
                          "--tokens-per-day", HIGH], env=harness.clean_env(TOKN_HOME=str(home)),
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return out.strip().splitlines()[0]


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis needs redis-server (Debian: apt-get install redis-server)")
    port = harness.free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
           "no", "--dir", str(workdir)]
    with harness.process(cmd, workdir / f"redis-{port}.out", port) as proc:
        try:
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            os.kill(proc.pid, signal.SIGCONT)  # a frozen one cannot stop


def door(name: str, url: str, key: str, pid: int | None) -> Door:
    headers = {**CHAT_HEADERS, "authorization": f"Bearer {key}"}
    return Door(name, url + "/v1/chat/completions", chat_body(), chat_body(stream=True),
                headers, pid)


def run(d: Door, secs: int, conc: int) -> dict:
    before = cpu_secs(d.pid) if d.pid else 0.0
    res = hey(d, ["-z", f"{secs}s", "-c", str(conc)])
    spent = cpu_secs(d.pid) - before if d.pid else 0.0
    done = res.ok + res.failed
    return {"rps": round(res.rps, 1), "p50_ms": round(res.p50 * 1000, 2),
            "p99_ms": round(res.p99 * 1000, 2), "slowest_ms": round(res.slowest * 1000, 1),
            "cpu_ms": round(spent / done * 1000, 3) if d.pid and done else None,
            "ok": res.ok, "failed": res.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    rows: dict[str, dict] = {}
    settings: dict[str, object] = {"server.api_key": ADMIN, "logging.level": "warning"}
    with tempfile.TemporaryDirectory(prefix="tokn-bench-team-") as where, \
            contextlib.ExitStack() as stack:
        workdir = Path(where)
        upstream = stack.enter_context(harness.fast_upstream(workdir))
        doors = [harness.direct_door(upstream)]
        tokn = stack.enter_context(harness.tokn_server(workdir, upstream.url, python=args.python,
                                                       settings=settings))
        key = person_key(args.python, tokn.home)
        doors += [door("admin key", tokn.api_url, ADMIN, tokn.proc.pid),
                  door("team key", tokn.api_url, key, tokn.proc.pid)]
        frozen = None
        if args.redis:
            url, redis_proc = stack.enter_context(redis_server(workdir))
            shared = stack.enter_context(harness.tokn_server(
                workdir, upstream.url, python=args.python,
                settings={**settings, "state.url": url, "state.timeout_secs": 1.0}))
            shared_key = person_key(args.python, shared.home)
            doors += [door("admin key, Redis", shared.api_url, ADMIN, shared.proc.pid),
                      door("team key, Redis", shared.api_url, shared_key, shared.proc.pid)]
            frozen = door("team key, Redis frozen", shared.api_url, shared_key,
                          shared.proc.pid)
        for d in doors:
            harness.call_ok(d.conn(), d)  # warm, and a wrong key fails here
            note(f"{d.name} ...")
            rows[d.name] = run(d, args.duration, args.concurrency)
        if frozen is not None:
            note(f"{frozen.name} ...")
            os.kill(redis_proc.pid, signal.SIGSTOP)
            try:
                rows[frozen.name] = run(frozen, args.duration, args.concurrency)
            finally:
                os.kill(redis_proc.pid, signal.SIGCONT)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"hey -z {args.duration}s -c {args.concurrency}, tokn from {args.python}")
    print(f"{'row':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'cpu ms/req':>12}{'failed':>8}")
    for name, r in rows.items():
        cpu = "-" if r["cpu_ms"] is None else f"{r['cpu_ms']:.3f}"
        print(f"{name:<24}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['slowest_ms']:>9.1f}{cpu:>12}{r['failed']:>8}")


if __name__ == "__main__":
    main()
