"""tokn's outbound HTTP client alone, against the fast upstream: CPU per request.

    python bench/bench_outbound.py [-n 3000] [-c 32] [--repeat 2]

The listener's and the proxy's requests all leave through one
``httpx.AsyncClient`` (``tokn.runtime.make_client``).  This times that client
in this process, without tokn around it, small chat completions against
``bench/fast_upstream.py``: sequentially on one connection, then ``-c``
concurrent tasks.  For comparison, when installed: the same client over
httpx-aiohttp's ``AiohttpTransport`` (httpx's API on aiohttp's connection
pool), and aiohttp itself.  CPU ms per request (this process's CPU time over
the requests sent) is the steady figure on a busy machine.

Also says whether ``sniffio`` is importable: httpcore 1.0 imports it on every
lock and cancel shield it sets up, and when it is missing (anyio >= 4.10 no
longer installs it) each of those is a failed import walking ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import harness

Send = Callable[[], Awaitable[None]]


async def tokn_client(url: str, transport: object = None) -> tuple[Send, Callable]:
    from tokn.config import Config
    from tokn.runtime import make_client

    client = make_client(Config(), transport)  # type: ignore[arg-type]
    body, headers = harness.chat_body(), {"content-type": "application/json"}

    async def send() -> None:
        response = await client.post(url, content=body, headers=headers)
        await response.aread()
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code} {response.text[:200]}")

    return send, client.aclose


async def tokn_client_aiohttp(url: str) -> tuple[Send, Callable]:
    from httpx_aiohttp import AiohttpTransport

    return await tokn_client(url, AiohttpTransport(trust_env=False))


async def plain_aiohttp(url: str) -> tuple[Send, Callable]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    body, headers = harness.chat_body(), {"content-type": "application/json"}

    async def send() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}")

    return send, session.close


ROWS = {  # name: (factory, module it needs)
    "httpx (tokn's client)": (tokn_client, "httpx"),
    "httpx + AiohttpTransport": (tokn_client_aiohttp, "httpx_aiohttp"),
    "aiohttp": (plain_aiohttp, "aiohttp"),
}


async def measure(factory: Callable, url: str, n: int, conc: int) -> dict:
    send, aclose = await factory(url)
    try:
        for _ in range(30):
            await send()
        seq_n = max(n // 5, 100)
        cpu, t = time.process_time(), time.perf_counter()
        for _ in range(seq_n):
            await send()
        seq = {"ms": 1000 * (time.perf_counter() - t) / seq_n,
               "cpu_ms": 1000 * (time.process_time() - cpu) / seq_n}
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await send()

        cpu, t = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t
        return {"seq": seq, "rps": n / wall, "cpu_ms": 1000 * (time.process_time() - cpu) / n}
    finally:
        await aclose()


def cell(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="concurrent requests per row")
    parser.add_argument("-c", type=int, default=32, help="concurrent tasks")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (rows alternate)")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    rows = {name: f for name, (f, module) in ROWS.items() if importlib.util.find_spec(module)}
    missing = [name for name in ROWS if name not in rows]
    sniffio = importlib.util.find_spec("sniffio") is not None
    results: dict[str, list[dict]] = {name: [] for name in rows}
    with harness.fast_upstream(Path(tempfile.mkdtemp(prefix="tokn-bench-"))) as up:
        url = up.url + "/v1/chat/completions"
        for _ in range(args.repeat):
            for name, factory in rows.items():
                results[name].append(asyncio.run(measure(factory, url, args.n, args.c)))
    print(f"outbound client alone -> fast upstream; sniffio importable: {sniffio}"
          + (f"; not installed: {', '.join(missing)}" if missing else ""))
    print(f"{'client':28} {'seq ms':>7} {'seq CPU ms':>10} {f'c{args.c} req/s':>10} "
          f"{f'c{args.c} CPU ms':>11}   (each round)")
    for name, runs in results.items():
        print(f"{name:28} {cell([r['seq']['ms'] for r in runs], '.2f'):>7} "
              f"{cell([r['seq']['cpu_ms'] for r in runs], '.2f'):>10} "
              f"{cell([r['rps'] for r in runs], '.0f'):>10} "
              f"{cell([r['cpu_ms'] for r in runs], '.3f'):>11}")

if __name__ == "__main__":
    main()
