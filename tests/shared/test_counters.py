"""Team keys' limits counted in Redis (``[state] url``): a Redis that stops
answering costs a request at most ``[state] timeout_secs`` and the count goes
on locally; spent tokens reach Redis after the response and at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config
from tokn import limits
from tokn.cli import app
from tokn.limits import Limiter, LocalCounters
from tokn.shared.counters import RedisCounters
from tokn.shared.link import Link

ADMIN = "admin-key-for-the-counters-test-0123"
TIMEOUT = 1.0  # [state] timeout_secs


def create(name: str, *options: str) -> str:
    res = CliRunner().invoke(app, ["keys", "create", name, *options])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[0]


def ask(api_url: str, key: str, text: str = "hi") -> httpx.Response:
    return httpx.post(f"{api_url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})


def spent(key_name: str, tokn=None) -> int:
    """The tokens of ``key_name``'s successful rows in the usage log (of the
    running ``tokn``: once its queued rows are written)."""
    if tokn is not None:
        tokn.runtime.usage.flush()
    return sum(r["input_tokens"] + r["output_tokens"] for r in usage_rows()
               if r["key_name"] == key_name and r["status"] == 200)


def redis_count(url: str, name: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.get(f"tokn:count:{name}") or 0)
    finally:
        client.close()


@contextlib.contextmanager
def stopped(server) -> Iterator[None]:
    """``redis-server`` frozen (SIGSTOP): its port still accepts connections,
    nothing answers, as with a hung Redis or a dead host."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.fixture
def llm():
    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as fake:
        yield fake


def configure(redis_url: str, llm: FakeLLM) -> None:
    write_config({"state": {"url": redis_url, "timeout_secs": TIMEOUT},
                  "server": {"api_key": ADMIN},
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]})


def wait_applied(tokn) -> None:
    """Until the limiter's background task has applied every spend."""
    deadline = time.monotonic() + 10
    while tokn.runtime.limiter.pending:
        assert time.monotonic() < deadline, "spent tokens never applied"
        time.sleep(0.02)


def test_a_frozen_redis_costs_a_team_request_at_most_the_timeout(redis_server, llm):
    configure(redis_server.url, llm)
    key = create("alice", "--rpm", "2", "--tokens-per-day", "1000000")
    day = limits.day_window(time.time())[0]
    with contextlib.ExitStack() as frozen:
        with running_tokn(api_key=ADMIN) as tokn:
            # the whole test in one minute of the limiter's clock (Redis keys expire by it)
            offset = 60 - time.time() % 60 + 1
            tokn.runtime.limiter.clock = lambda: time.time() + offset
            assert ask(tokn.api_url, key, "before").status_code == 200  # counted in Redis
            wait_applied(tokn)
            before = spent("alice", tokn)
            assert redis_count(redis_server.url, f"tpd:alice:{day}") == before > 0
            frozen.enter_context(stopped(redis_server))

            def timed(text: str) -> tuple[int, float]:
                started = time.monotonic()
                return ask(tokn.api_url, key, text).status_code, time.monotonic() - started

            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(timed, "frozen 0")
                # while that request waits on Redis, the listener answers others
                probes = []
                while not first.done():
                    started = time.monotonic()
                    assert httpx.get(f"{tokn.api_url}/healthz", timeout=30).status_code == 200
                    probes.append(time.monotonic() - started)
                    time.sleep(0.02)
                answers = [first.result(), timed("frozen 1"), timed("frozen 2")]
            codes, took = [code for code, _ in answers], [secs for _, secs in answers]
            # Redis knew of one request this minute; this replica now counts on its
            # own, from zero: two more pass, the third is over alice's 2 a minute
            assert codes == [200, 200, 429]
            # the first waited for Redis once (timeout_secs), the next ones not at all
            assert TIMEOUT * 0.9 < took[0] < TIMEOUT + 0.6, took
            assert max(took[1:]) < TIMEOUT / 2, took
            assert len(probes) >= 5 and max(probes) < TIMEOUT / 2, probes
            wait_applied(tokn)
            local = tokn.runtime.limiter.counters.local
            during = spent("alice", tokn) - before
            assert during > 0 and tokn.call(local.get(f"tpd:alice:{day}")) == during
            stopping = time.monotonic()
        # tokn stops with Redis still frozen: within bounds too
        assert time.monotonic() - stopping < 10
    # what the outage counted locally is in this replica's limits.json
    saved = json.loads(limits.default_path().read_text())
    assert saved[f"tpd:alice:{day}"][0] == during
    assert limits.default_path().stat().st_mode & 0o777 == 0o600


def test_spent_tokens_reach_redis_after_the_response(redis_server, llm):
    configure(redis_server.url, llm)
    key = create("bob", "--tokens-per-day", "1000000")
    day = limits.day_window(time.time())[0]
    with running_tokn(api_key=ADMIN) as tokn:
        for i in range(3):
            assert ask(tokn.api_url, key, f"m{i}").status_code == 200
        wait_applied(tokn)
        assert redis_count(redis_server.url, f"tpd:bob:{day}") == spent("bob", tokn) > 0


def test_spent_tokens_still_queued_at_shutdown_are_counted(redis_server, llm, monkeypatch):
    configure(redis_server.url, llm)
    key = create("bob", "--tokens-per-day", "1000000")
    day = limits.day_window(time.time())[0]
    monkeypatch.setattr(Limiter, "start", lambda self: None)  # no background task
    with running_tokn(api_key=ADMIN) as tokn:
        for i in range(3):
            assert ask(tokn.api_url, key, f"m{i}").status_code == 200
        assert tokn.runtime.limiter.pending  # nothing applied while serving...
        assert redis_count(redis_server.url, f"tpd:bob:{day}") == 0
    # ...every token counted when tokn stopped
    assert redis_count(redis_server.url, f"tpd:bob:{day}") == spent("bob") > 0


def test_counts_go_to_this_replica_while_redis_is_unreachable(tmp_path, caplog):
    with socket.socket() as sock:  # a port nothing listens on: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "limits.json"
    day = limits.day_window(time.time())[0]

    async def main() -> None:
        link = Link(f"redis://127.0.0.1:{port}/0", timeout=TIMEOUT)
        limiter = Limiter(RedisCounters(link, LocalCounters(path)))
        assert [await limiter.counters.add("rpm:carol:1", 1, time.time() + 60)
                for _ in range(3)] == [1, 2, 3]
        limiter.spend("carol", 9)
        await limiter.aclose()  # the spend falls back to local counting too
        await link.aclose()

    with caplog.at_level(logging.WARNING, "tokn.shared"):
        asyncio.run(main())
    assert json.loads(path.read_text())["rpm:carol:1"][0] == 3
    assert json.loads(path.read_text())[f"tpd:carol:{day}"][0] == 9
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
