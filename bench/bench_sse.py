"""Event-stream parsing cost: one long line and many small events, fed in
network-sized chunks, beside a plain scan of the same bytes.

    python bench/bench_sse.py [--sizes 1,8,32] [--chunk 65536]

Columns: ``scan`` counts the line ends in the chunks (the floor),
``tokn`` the parser, ``before`` the parser as it was until the line scan was
made linear (buffer re-concatenated and rescanned on every chunk; skipped for
sizes above ``--before-max`` MB, it grows with the square of the line).
Not a test: figures, not assertions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokn.sse import SSEParser  # noqa: E402


class QuadraticParser(SSEParser):
    """The pre-fix algorithm: ``buf += data`` then a scan from the start."""

    def feed(self, data: bytes) -> list:  # type: ignore[override]
        self._old = getattr(self, "_old", b"") + data
        out = []
        while True:
            n = self._old.find(b"\n")
            if n < 0:
                break
            line, self._old = self._old[:n], self._old[n + 1:]
            ev = self._line(line.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        return out


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run(name: str, data: bytes, size: int, before_ok: bool) -> None:
    parts = chunks(data, size)
    cap = len(data) + 1024

    def scan() -> None:
        for part in parts:
            part.count(b"\n")

    def parse(cls) -> None:
        parser = cls(cap)
        for part in parts:
            parser.feed(part)
        parser.close()

    before = f"{timed(lambda: parse(QuadraticParser)):10.1f}" if before_ok else f"{'-':>10}"
    print(f"{name:28} {timed(scan):10.1f} {timed(lambda: parse(SSEParser)):10.1f} {before}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32", help="line sizes in MB")
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per feed")
    parser.add_argument("--before-max", type=float, default=8, help="largest MB for 'before'")
    args = parser.parse_args()
    print(f"feeds of {args.chunk} bytes; milliseconds")
    print(f"{'input':28} {'scan':>10} {'tokn':>10} {'before':>10}")
    for mb in (float(x) for x in args.sizes.split(",")):
        line = b"data: " + b"x" * int(mb * 1024 * 1024) + b"\n\n"
        run(f"one {mb:g} MB line", line, args.chunk, mb <= args.before_max)
    small = b"".join(b'data: {"i": %d, "delta": "some words"}\n\n' % i for i in range(200_000))
    run(f"200k small events ({len(small) >> 20} MB)", small, args.chunk, True)


if __name__ == "__main__":
    main()
