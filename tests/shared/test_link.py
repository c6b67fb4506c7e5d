"""The Redis link when Redis is not there: fast fallback, one warning, retry
later; a Redis that accepts but never answers costs at most the timeout."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest

from tokn.auth.tokens import LocalTokens, Token
from tokn.shared import redacted
from tokn.shared.link import RETRY_SECS, Down, Link
from tokn.shared.tokens import RedisTokens


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """Accepts connections and reads, never answers (a hung Redis)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_refused_connection_falls_back_at_once_and_warns_once(caplog):
    clock = [100.0]
    link = Link(f"redis://:secret@127.0.0.1:{closed_port()}/0", timeout=0.5,
                clock=lambda: clock[0])

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(Down):
                await link.call(lambda r: r.get("x"))
        await link.aclose()

    with caplog.at_level(logging.WARNING, "tokn.shared"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert "secret" not in warnings[0] and ":***@127.0.0.1" in warnings[0]
    assert link.outage.failures == 3 and not link.outage.up


def test_a_hung_redis_costs_at_most_the_timeout_then_nothing(silent_server):
    clock = [0.0]
    link = Link(f"redis://127.0.0.1:{silent_server}/0", timeout=0.3, clock=lambda: clock[0])

    async def main() -> list[float]:
        spent = []
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(Down):
                await link.call(lambda r: r.get("x"))
            spent.append(time.monotonic() - started)
        clock[0] += RETRY_SECS + 0.1  # time to try again: one more bounded wait
        started = time.monotonic()
        with pytest.raises(Down):
            await link.call(lambda r: r.get("x"))
        spent.append(time.monotonic() - started)
        await link.client.aclose()
        return spent

    first, second, third, retried = asyncio.run(main())
    assert first < 1.5 and retried < 1.5
    assert second < 0.05 and third < 0.05  # down: no waiting at all until the retry time


def test_tokens_fall_back_to_this_machine_when_redis_is_down(tmp_path):
    link = Link(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.3)
    store = RedisTokens(link, LocalTokens())
    token = Token("t1", time.time() + 3600, time.time() + 1800)

    async def main() -> dict | None:
        async with store.lock("copilot-tokens", "acc", across_processes=True):
            await store.put("copilot-tokens", "acc", token, {"token": "t1"})
        record = await store.read("copilot-tokens", "acc")
        await link.client.aclose()
        return record

    assert asyncio.run(main()) == {"token": "t1"}  # the local state file
    assert store.peek("copilot-tokens", "acc") is token


def test_urls_are_logged_without_password():
    assert redacted("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted("postgresql://u:pw@db/tokn") == "postgresql://u:***@db/tokn"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"
