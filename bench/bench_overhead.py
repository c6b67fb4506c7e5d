"""Added latency of tokn's two front doors, against a direct call, in one run.

    python bench/bench_overhead.py [-n 300]

Starts a fake OpenAI-style upstream on loopback, then tokn (listener + proxy
in route mode) with an openai-compatible account pointed at it, and times
small chat completions three ways over warm keep-alive connections:

* direct: httpx -> fake upstream
* listener: httpx -> tokn listener -> fake upstream
* proxy (route mode): httpx via HTTPS_PROXY -> tokn's MITM (TLS with tokn's CA)
  -> listener pipeline -> fake upstream

and a 20-event SSE stream (50 ms apart) for the inter-chunk delay added.
Prints medians, p99s and ratios.  Not a test: figures, not assertions.
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

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "ping"}]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


def timed(client, url: str, n: int, **kw) -> list[float]:
    out = []
    client.post(url, json=BODY, **kw).raise_for_status()  # warm the connection
    for _ in range(n):
        t = time.perf_counter()
        client.post(url, json=BODY, **kw).raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


def stream_gaps(client, url: str) -> list[float]:
    body = {**BODY, "stream": True, "messages": [{"role": "user", "content": " ".join(
        f"w{i}" for i in range(20))}]}
    arrivals = []
    with client.stream("POST", url, json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                arrivals.append(time.perf_counter())
    return [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per path")
    args = parser.parse_args()
    os.environ["TOKN_HOME"] = tempfile.mkdtemp(prefix="tokn-bench-")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)

    import httpx

    from tests.fakes.llm import FakeLLM
    from tests.helpers import account, running_tokn, write_config
    from tokn.ca import ensure_bundle

    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["bench-model"]) as fake, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["bench-model"],
                    chunk_delay=0.05) as slow:
        write_config({"usage": {"enabled": True}, "accounts": [
            account("fast", "openai-compatible", base_url=fake.url + "/v1",
                    models=["bench-model"]),
            account("slow", "openai-compatible", base_url=slow.url + "/v1",
                    models=["bench-stream"])]})
        with running_tokn(with_proxy=True) as tokn:
            bundle = str(ensure_bundle())
            direct = httpx.Client(trust_env=False)
            listener = httpx.Client(trust_env=False)
            proxied = httpx.Client(trust_env=False, proxy=tokn.proxy_url, verify=bundle)
            results = {
                "direct": timed(direct, fake.url + "/v1/chat/completions", args.n),
                "listener": timed(listener, tokn.api_url + "/v1/chat/completions", args.n),
                "proxy (route)": timed(proxied, "https://api.openai.com/v1/chat/completions",
                                       args.n),
            }
            BODY["model"] = "bench-stream"
            gaps = {
                "direct": stream_gaps(direct, slow.url + "/v1/chat/completions"),
                "listener": stream_gaps(listener, tokn.api_url + "/v1/chat/completions"),
                "proxy (route)": stream_gaps(proxied,
                                             "https://api.openai.com/v1/chat/completions"),
            }
    base_med = statistics.median(results["direct"])
    base_p99 = pct(results["direct"], 0.99)
    print(f"small chat completion, warm keep-alive, n={args.n} per path (ms)")
    print(f"{'path':16} {'median':>8} {'p99':>8} {'added med':>10} {'added p99':>10} {'ratio':>6}")
    for name, vals in results.items():
        med, p99 = statistics.median(vals), pct(vals, 0.99)
        print(f"{name:16} {med:8.2f} {p99:8.2f} {med - base_med:10.2f} {p99 - base_p99:10.2f} "
              f"{med / base_med:6.2f}")
    print("\nSSE stream, 20 events sent 50 ms apart: inter-chunk gap (ms)")
    base_gap = statistics.median(gaps["direct"])
    for name, vals in gaps.items():
        print(f"{name:16} median {statistics.median(vals):7.2f}  max {max(vals):7.2f}  "
              f"added {statistics.median(vals) - base_gap:+6.2f}")


if __name__ == "__main__":
    main()
