"""Cold-start cost of `tokn proxy env` (run at every shell start).

Times N runs (default 15) of ``python -m tokn proxy env --shell bash`` in a
fresh TOKN_HOME whose CA and bundle already exist, against ``python -c pass``
in the same run, and prints medians, p90s and the difference.  Target: the
median of `tokn proxy env` at most 250 ms above bare Python.

    python bench/bench_env_startup.py [-n 15] [--importtime]

``--importtime`` also prints the slowest imports (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 250.0
SCRUB = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
         "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TOKN_CONFIG")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true",
                        help="also list the 15 slowest imports of one run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tokn-bench-") as home:
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env["TOKN_HOME"] = home
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        tokn = [sys.executable, "-m", "tokn", "proxy", "env", "--shell", "bash"]
        bare = [sys.executable, "-c", "pass"]
        subprocess.run(tokn, env=env, check=True, stdout=subprocess.DEVNULL)  # creates the CA
        timed(bare, env)
        tokn_ms, bare_ms = [], []
        for _ in range(args.runs):  # interleaved so both see the same machine state
            bare_ms.append(timed(bare, env))
            tokn_ms.append(timed(tokn, env))
        if args.importtime:
            res = subprocess.run([sys.executable, "-X", "importtime", *tokn[1:]], env=env,
                                 capture_output=True, text=True, check=True)
            rows = []
            for line in res.stderr.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[1].strip().isdigit():
                    rows.append((int(parts[1]), parts[2].rstrip()))
            print("slowest imports (cumulative us):")
            for us, name in sorted(rows, reverse=True)[:15]:
                print(f"  {us:>8}  {name}")

    med_t, med_b = statistics.median(tokn_ms), statistics.median(bare_ms)
    diff = med_t - med_b
    print(f"runs: {args.runs}")
    print(f"python -c pass          median {med_b:7.1f} ms   p90 {p90(bare_ms):7.1f} ms")
    print(f"tokn proxy env (bash)   median {med_t:7.1f} ms   p90 {p90(tokn_ms):7.1f} ms")
    verdict = "ok" if diff <= TARGET_MS else "OVER TARGET"
    print(f"difference              median {diff:7.1f} ms   (target <= {TARGET_MS:.0f} ms: "
          f"{verdict})")
    return 0 if diff <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
