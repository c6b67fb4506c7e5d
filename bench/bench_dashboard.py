"""Does the dashboard slow the API?  Listener latency alone and while the
dashboard's heaviest page is asked for over and over, in one run.

    python bench/bench_dashboard.py [-n 300] [--rows 200000]

Fills a usage store with ``--rows`` rows (90 days), starts ``tokn serve`` (its
own process) with an OpenAI-compatible account on a fake upstream, and times
small chat completions through the listener three ways:

* direct: httpx -> fake upstream (the floor)
* listener: httpx -> tokn -> fake upstream, nothing else going on
* the same while two threads fetch ``/ui/usage?since=90d`` (six reports over
  every row) and ``/ui/``: once a page a second each (a person clicking
  around), once back to back (a stress far beyond any person)

Prints medians and p99s, and how many dashboard pages were served meanwhile.
Not a test: figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "ping"}]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


def timed(client, url: str, n: int) -> list[float]:
    out = []
    client.post(url, json=BODY).raise_for_status()
    for _ in range(n):
        t = time.perf_counter()
        client.post(url, json=BODY).raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


def seed(rows: int) -> None:
    from tokn.usage import UsageStore

    rng = random.Random(1)
    store = UsageStore()
    now = time.time()
    stamps = sorted(now - rng.uniform(0, 90 * 86400) for _ in range(rows))  # as recorded: in order
    for i, ts in enumerate(stamps):
        store.record({"ts": ts, "request_id": f"{i:016x}",
                      "front_door": "proxy", "route_mode": "route", "provider": "openai",
                      "account": rng.choice(["a", "b", "c"]),
                      "model_requested": rng.choice(["m1", "m2", "m3", "m4"]),
                      "initiator": rng.choice(["user", "agent"]), "status": 200,
                      "input_tokens": 1000, "output_tokens": 100,
                      "latency_ms": rng.uniform(100, 3000)})
    if not store.flush(timeout=900):  # (close alone waits 10 s: rows would still be going in)
        raise SystemExit("the usage store did not take the seeded rows within 15 minutes")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    os.environ["TOKN_HOME"] = tempfile.mkdtemp(prefix="tokn-bench-")

    import httpx

    from tests.fakes.llm import FakeLLM
    from tests.helpers import account, tokn_process, write_config

    started = time.perf_counter()
    seed(args.rows)
    print(f"seeded {args.rows:,} usage rows in {time.perf_counter() - started:.1f} s")
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["bench-model"]) as fake:
        write_config({"accounts": [account("bench", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-bench")]})
        with tokn_process() as tokn, httpx.Client(timeout=60) as client:
            direct = timed(client, fake.url + "/v1/chat/completions", args.n)
            alone = timed(client, tokn.api_url + "/v1/chat/completions", args.n)
            runs = {"direct": direct, "listener": alone}
            for label, pause in (("+ a person (1 page/s)", 1.0), ("+ pages back to back", 0.0)):
                stop = threading.Event()
                pages: list[float] = []

                def browse(path: str, pause: float = pause, pages: list = pages,
                           stop: threading.Event = stop) -> None:
                    with httpx.Client(base_url=tokn.api_url, timeout=120) as ui:
                        while not stop.is_set():
                            t = time.perf_counter()
                            ui.get(path).raise_for_status()
                            pages.append((time.perf_counter() - t) * 1000)
                            stop.wait(pause)

                browsers = [threading.Thread(target=browse, args=(p,), daemon=True)
                            for p in ("/ui/usage?since=90d", "/ui/")]
                for b in browsers:
                    b.start()
                time.sleep(0.5)
                runs[f"listener {label}"] = timed(client, tokn.api_url
                                                  + "/v1/chat/completions", args.n)
                stop.set()
                for b in browsers:
                    b.join(120)
                print(f"{label}: {len(pages)} dashboard pages served "
                      f"(median {statistics.median(pages):.0f} ms each)")

    print(f"{'':36}{'median ms':>10}{'p99 ms':>10}")
    for name, values in runs.items():
        print(f"{name:36}{statistics.median(values):10.2f}{pct(values, 0.99):10.2f}")


if __name__ == "__main__":
    main()
