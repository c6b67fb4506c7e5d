"""Added latency of tokn's front doors, against a direct call, in one run.

    python bench/bench_overhead.py [-n 300] [--rounds 5]

Starts the fast loopback upstream and ``tokn serve --with-proxy`` (route mode)
as their own processes (``bench/harness.py``, shared with
``bench_throughput.py``) and times small non-stream calls, sequentially, on one
warm keep-alive connection per row:

* direct: raw client -> upstream
* listener: raw client -> tokn listener (chat, and Anthropic messages -> chat)
* MITM route: raw client via the proxy (CONNECT + TLS with tokn's CA)
  -> tokn -> upstream (chat, and messages -> chat)

then one 20-event SSE stream (events 50 ms apart) per row, for the delay tokn
adds between two chunks.  Prints medians, p99s and ratios to direct.
``bench_throughput.py`` adds load (hey), many streams and memory.  Not a
test: figures, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import harness

EVENTS, GAP = 20, 0.05


def stream_gaps(door: harness.Door) -> list[float]:
    """Milliseconds between consecutive content events of one stream."""
    conn = door.conn()
    try:
        arrivals = [t for t, line in conn.stream_lines(door.stream_body, door.headers)
                    if line.startswith(b"data: ") and b'"w' in line]
    finally:
        conn.close()
    return [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="sequential calls per row")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the rows alternate in")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="tokn-bench-"))
    # role + EVENTS contents + stop + usage + DONE, GAP apart
    with harness.fast_upstream(workdir, stream_secs=GAP * (EVENTS + 3),
                               stream_events=EVENTS) as up, \
            harness.tokn_server(workdir, up.url) as tokn:
        doors = {"direct": harness.direct_door(up), **harness.tokn_doors(tokn)}
        rows = harness.latency(doors, args.n, args.rounds)
        gaps = {k: stream_gaps(d) for k, d in doors.items()}
    print("\n".join(harness.render_latency(rows)))
    print(f"\nSSE stream, {EVENTS} events sent {GAP * 1000:.0f} ms apart: "
          "gap between content events (ms)")
    base = statistics.median(gaps["direct"])
    for k, vals in gaps.items():
        med = statistics.median(vals)
        print(f"{doors[k].name:32} median {med:7.2f}  max {max(vals):7.2f}  "
              f"added {med - base:+6.2f}")


if __name__ == "__main__":
    main()
