"""Giving memory back after a burst (tokn.memory): when the trim runs, and that
it really returns freed memory to the system on this platform."""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import textwrap

import pytest
from starlette.requests import Request

from tokn import memory
from tokn.errors import ToknError
from tokn.server.httpguard import MAP_BODY, read_json_object

MB = 1024 * 1024


class Done(Exception):
    """The scripted readings ran out: the trimmer's loop ends here."""


def run_trimmer(rss: list[int], busy: list[bool]) -> int:
    """Feed :func:`memory.trim_after_bursts` one RSS reading and one busy flag
    per check (the first reading is the start's); how many trims it made."""
    readings, flags, trims = iter(rss), iter(busy), []

    def take(values):
        for value in values:
            return value
        raise Done

    async def main() -> None:
        with pytest.raises(Done):
            await memory.trim_after_bursts(
                lambda: take(flags), every=0.001, slack=16 * MB,
                trim=lambda: trims.append(1), rss=lambda: take(readings))

    asyncio.run(main())
    return len(trims)


def test_a_trim_follows_growth_once_idle_and_not_while_busy():
    # start 90 MB; a burst: busy checks read nothing; idle at 170 MB: trim
    # (RSS after it 120), then 125: under the slack, no second trim
    assert run_trimmer([90 * MB, 170 * MB, 120 * MB, 125 * MB],
                       [True, True, False, False]) == 1


def test_no_trim_without_growth_past_the_slack():
    assert run_trimmer([90 * MB, 100 * MB, 105 * MB], [False, False]) == 0


def test_growth_counts_from_the_lowest_reading_since_the_last_trim():
    # RSS fell to 80 by itself, then grew 20 MB from there: a trim
    assert run_trimmer([100 * MB, 80 * MB, 100 * MB, 100 * MB], [False, False, False]) == 1


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_frees_cyclic_garbage_and_returns_it_to_the_system():
    # ~80 MB in 2 KB blocks (malloc's, not Python's small-object arenas) held by
    # objects in reference cycles, dropped while the collector is off (as when
    # the process is idle: no allocations, no collection); a block allocated
    # after them pins the top of the heap, so free() alone could not give the
    # memory back either
    script = textwrap.dedent("""
        import gc
        from tokn import memory
        memory.settle()  # as tokn serve does once started: what is alive now is frozen
        assert gc.get_freeze_count() > 1000
        gc.disable()
        class Node:
            pass
        nodes = []
        for _ in range(40_000):
            node = Node()
            node.me, node.data = node, bytes(2000)
            nodes.append(node)
        keep = bytes(2000)
        del nodes, node
        before = memory.rss_bytes()
        memory.release()
        print(before, memory.rss_bytes())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    before, after = map(int, out.split())
    assert before - after > 50 * MB, f"RSS {before / MB:.0f} -> {after / MB:.0f} MB"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap and /proc")
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_the_listener_reads_a_big_body_holding_it_at_most_twice(declared):
    # a 50 MB body read from the ASGI stream and parsed: its chunks, the joined
    # bytes, the text and the parsed object, never more than two at once.  A
    # big block freed first raises glibc's mmap threshold, as earlier requests
    # do: a growing buffer then lives on the heap and is copied as it grows
    # (it used to be: +2.9 body sizes at the peak)
    script = textwrap.dedent("""
        import asyncio, re
        from starlette.requests import Request
        from tokn.server.httpguard import MAP_BODY, read_json_object

        def kb(field):
            status = open("/proc/self/status").read()
            return int(re.search(field + r":\\s+(\\d+)", status).group(1)) * 1024

        size = 50 * 1024 * 1024
        body = b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * size + b'"}]}'
        freed = b"y" * (30 * 1024 * 1024)
        del freed
        slices = iter(range(0, len(body), 65536))

        async def receive():
            start = next(slices, None)
            if start is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body[start:start + 65536],
                    "more_body": start + 65536 < len(body)}

        headers = [(b"content-type", b"application/json")]
        if DECLARED:
            headers.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                 "headers": headers}
        open("/proc/self/clear_refs", "w").write("5")
        before = kb("VmRSS")
        parsed, read = asyncio.run(read_json_object(Request(scope, receive), 64 * 1024 * 1024))
        assert read == len(body) and len(parsed["messages"][0]["content"]) == size
        print((kb("VmHWM") - before) / size)
    """)
    out = subprocess.run([sys.executable, "-c", script.replace("DECLARED", str(declared))],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert float(out) < 2.3, f"reading held {float(out):.2f} body sizes at once"


def body_request(parts: list[bytes], declared: int | None) -> Request:
    pending = list(parts)

    async def receive() -> dict:
        if not pending:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    headers = [(b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                    "headers": headers}, receive)


BIG = b'{"model": "m", "x": "' + b"y" * MAP_BODY + b'\xc3\xa9"}'


@pytest.mark.parametrize("body,declared", [
    (b'{"model": "m", "x": "\xc3\xa9"}', None), (b'{"model": "m", "x": "\xc3\xa9"}', 25),
    (BIG, None), (BIG, len(BIG))], ids=["small", "small-declared", "big", "big-mapped"])
def test_a_body_read_in_parts_parses_whole(body, declared):
    cut = len(body) - 3  # é split across the parts
    parsed, size = asyncio.run(read_json_object(
        body_request([body[:cut], body[cut:]], declared), 4 * MAP_BODY))
    assert (parsed, size) == (json.loads(body), len(body))
    assert parsed["x"].endswith("é")


def test_a_body_longer_than_declared_or_than_the_limit_is_refused():
    with pytest.raises(ToknError) as longer:
        asyncio.run(read_json_object(body_request([BIG, b"    "], len(BIG)), 4 * MAP_BODY))
    assert longer.value.status == 400
    with pytest.raises(ToknError) as large:
        asyncio.run(read_json_object(body_request([b" " * 600, b" " * 600], None), 1024))
    assert large.value.status == 413
