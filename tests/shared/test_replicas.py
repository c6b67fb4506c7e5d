"""Two real ``tokn serve`` processes sharing one Redis (``[state] url``) and
one PostgreSQL (``[usage] url``) behave as one gateway (issue 19)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.kiro import FakeKiro
from tests.fakes.llm import FakeLLM
from tests.helpers import ToknProcess, account, applied_env, tokn_process, write_config

FUTURE = "2999-01-01T00:00:00Z"
PAST = "2000-01-01T00:00:00Z"


@contextlib.contextmanager
def replicas(config: dict[str, Any], n: int = 2,
             prepare: Callable[[int], None] | None = None) -> Iterator[list[ToknProcess]]:
    """``n`` tokn processes, each with its own TOKN_HOME (its own machine, as
    far as files go) and the same ``config``; ``prepare(i)`` runs in replica
    ``i``'s TOKN_HOME before it starts."""
    with contextlib.ExitStack() as stack:
        running = []
        for i in range(n):
            home = Path(os.environ["TOKN_HOME"]) / f"replica-{'ab'[i]}"
            home.mkdir()
            with applied_env({"TOKN_HOME": str(home)}):
                write_config(config)
                if prepare is not None:
                    prepare(i)
                running.append(stack.enter_context(tokn_process()))
        yield running


def chat(replica: ToknProcess, model: str, text: str = "hi",
         timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{replica.api_url}/v1/chat/completions", timeout=timeout,
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def shared(redis_url: str, pg_url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"state": {"url": redis_url}}
    if pg_url:
        out["usage"] = {"url": pg_url}
    return out


def test_a_cooldown_set_through_a_is_honoured_by_b(redis_server):
    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as llm:
        config = {**shared(redis_server.url),
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]}
        with replicas(config) as (a, b):
            assert chat(b, "gpt-4o").status_code == 200
            llm.fail_next(429, retry_after=600)
            refused = chat(a, "gpt-4o")
            assert refused.status_code == 429
            calls = len(llm.requests_to("/chat/completions"))
            resting = chat(b, "gpt-4o")
            # B never asks the upstream that told A to wait ten minutes
            assert resting.status_code == 503, resting.text
            assert resting.json()["error"]["code"] == "all_accounts_cooling"
            assert len(llm.requests_to("/chat/completions")) == calls


def test_a_per_key_rate_limit_is_shared(redis_server):
    from typer.testing import CliRunner

    from tokn import keys
    from tokn.cli import app

    admin = "admin-key-for-the-replica-test-0123"
    issued: dict[str, Any] = {}

    def same_keys(i: int) -> None:  # every replica has the same keys file
        if i == 0:
            res = CliRunner().invoke(app, ["keys", "create", "alice", "--rpm", "3"])
            assert res.exit_code == 0, res.output
            issued["key"] = res.stdout.strip().splitlines()[0]
            issued["file"] = keys.default_path().read_bytes()
        else:
            keys.default_path().parent.mkdir(parents=True, exist_ok=True)
            keys.default_path().write_bytes(issued["file"])

    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as llm:
        config = {**shared(redis_server.url), "server": {"api_key": admin},
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]}
        with replicas(config, prepare=same_keys) as (a, b):
            if time.time() % 60 > 50:  # the four requests must fall in one minute
                time.sleep(61 - time.time() % 60)
            codes = [httpx.post(f"{r.api_url}/v1/chat/completions", timeout=30,
                                headers={"authorization": f"Bearer {issued['key']}"},
                                json={"model": "gpt-4o", "messages": [
                                    {"role": "user", "content": "hi"}]}).status_code
                     for r in (a, b, a, b)]
            # three per minute for alice, counted across both replicas
            assert codes == [200, 200, 200, 429]
            assert len(llm.requests_to("/chat/completions")) == 3


def test_a_session_stays_on_its_account_across_replicas(redis_server):
    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as one, \
            FakeLLM(models=["gpt-4o"], path_prefix="/v1") as two:
        config = {**shared(redis_server.url),
                  "pool": {"strategy": "round_robin", "sticky_sessions": True},
                  "accounts": [account(name, "openai", api_key="sk-test",
                                       base_url=fake.url + "/v1")
                               for name, fake in (("one", one), ("two", two))]}
        with replicas(config) as (a, b):
            def served(replica: ToknProcess, session: str) -> str:
                resp = httpx.post(f"{replica.api_url}/v1/chat/completions", timeout=30,
                                  headers={"x-session-id": session},
                                  json={"model": "gpt-4o", "messages": [
                                      {"role": "user", "content": "hi"}]})
                assert resp.status_code == 200, resp.text
                return resp.headers["x-tokn-account"]

            first = {f"s{i}": served(a, f"s{i}") for i in range(4)}
            assert set(first.values()) == {"one", "two"}  # round robin on A
            for session, pinned in first.items():
                assert [served(b, session), served(b, session)] == [pinned, pinned]


def test_fifty_concurrent_requests_across_replicas_make_one_token_exchange(redis_server):
    with FakeGitHub(token_ttl=1800) as gh, \
            FakeLLM(copilot_style=True, token_validator=gh.is_valid_copilot_token,
                    models=["gpt-4.1"]) as api:
        gh.copilot_api_url = api.url
        config = {**shared(redis_server.url),
                  "accounts": [account("copilot", "github-copilot", github_token="gho_test",
                                       settings={"github_api_url": gh.url,
                                                 "github_base_url": gh.url})]}
        with replicas(config) as pair:
            def burst() -> list[int]:
                with ThreadPoolExecutor(50) as pool:
                    return list(pool.map(lambda i: chat(pair[i % 2], "gpt-4.1", f"m{i}",
                                                        timeout=60).status_code, range(50)))

            assert burst() == [200] * 50
            assert gh.exchange_count == 1
            # the upstream rejects the token now: every request on both replicas
            # finds it failed, one of them exchanges, the rest use the new one
            gh.revoke_copilot_tokens()
            assert burst() == [200] * 50
            assert gh.exchange_count == 2
            served = {r.bearer() for r in api.requests_to("/chat/completions")}
            assert len(served) == 2  # one token per exchange, used by both replicas


def test_a_kiro_rotation_happens_once_and_both_replicas_use_it(redis_server):
    with FakeKiro(refresh_delay=0.3) as fake:
        config = {**shared(redis_server.url), "accounts": [account(
            "kiro", "kiro", base_url=fake.url, refresh_url=fake.url + "/refreshToken",
            auth_method="social", access_token="aoa-initial", refresh_token="aor-initial",
            expires_at=PAST, profile_arn=fake.profile_arn)]}
        with replicas(config) as pair:
            with ThreadPoolExecutor(10) as pool:
                codes = list(pool.map(lambda i: chat(pair[i % 2], "claude-sonnet-4.5",
                                                     f"k{i}").status_code, range(10)))
            assert codes == [200] * 10
            # the single-use refresh token was spent once, by one replica
            assert fake.refresh_bodies == [{"kind": "social", "refreshToken": "aor-initial"}]
            assert {r.bearer() for r in fake.requests_to("/generateAssistantResponse")} == \
                {"aoa-1"}
            for replica in pair:  # later requests too, on either replica
                assert chat(replica, "claude-sonnet-4.5").status_code == 200
            assert len(fake.refresh_bodies) == 1


def test_a_replica_that_missed_several_rotations_uses_the_latest(redis_server):
    # tokens live 200 s, less than the renewal margin: every request rotates
    with FakeKiro(expires_in=200) as fake:
        config = {**shared(redis_server.url), "accounts": [account(
            "kiro", "kiro", base_url=fake.url, refresh_url=fake.url + "/refreshToken",
            auth_method="social", access_token="aoa-initial", refresh_token="aor-initial",
            expires_at=PAST, profile_arn=fake.profile_arn)]}
        with replicas(config) as (a, b):
            for replica in (a, a, b):  # B's config still holds aor-initial, spent long ago
                assert chat(replica, "claude-sonnet-4.5").status_code == 200
            # every refresh (several per request here) spent the latest token
            used = [r["refreshToken"] for r in fake.refresh_bodies]
            assert len(used) >= 3
            assert used == ["aor-initial", *[f"aor-{i}" for i in range(1, len(used))]]


def test_usage_from_both_replicas_lands_in_one_table(redis_server, pg_server):
    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as llm:
        config = {**shared(redis_server.url, pg_server.url),
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]}
        with replicas(config) as (a, b):
            for i in range(3):
                assert chat(a, "gpt-4o", f"a{i}").status_code == 200
            for i in range(2):
                assert chat(b, "gpt-4o", f"b{i}").status_code == 200
            # either replica's /v1/usage reads the shared table
            for replica in (a, b):
                report = httpx.get(f"{replica.api_url}/v1/usage", timeout=30).json()
                assert report["totals"]["requests"] == 5, report
                assert report["store"].startswith("postgresql://")
        with psycopg.connect(pg_server.url) as conn:
            rows = conn.execute("SELECT status, model_requested, account FROM requests "
                                "ORDER BY id").fetchall()
        assert rows == [(200, "gpt-4o", "solo")] * 5


def test_redis_stopped_mid_run_requests_keep_succeeding(redis_server):
    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as llm:
        config = {**shared(redis_server.url),
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]}
        with replicas(config) as (a, b):
            assert chat(a, "gpt-4o").status_code == 200
            redis_server.stop()
            for replica in (a, b, a, b):
                started = time.monotonic()
                assert chat(replica, "gpt-4o", timeout=10).status_code == 200
                assert time.monotonic() - started < 3  # never waits long on a dead Redis
            assert "Redis at redis://127.0.0.1" in a.output() + b.output()
            # back: after the retry interval the replicas share state again
            redis_server.start()
            time.sleep(2.5)
            assert chat(a, "gpt-4o").status_code == 200
            llm.fail_next(429, retry_after=600)
            assert chat(a, "gpt-4o").status_code == 429
            assert chat(b, "gpt-4o").status_code == 503


@pytest.mark.parametrize("with_pg", [True])
def test_cli_usage_reads_postgresql(redis_server, pg_server, with_pg):
    from typer.testing import CliRunner

    from tokn.cli import app

    with FakeLLM(models=["gpt-4o"], path_prefix="/v1") as llm:
        config = {**shared(redis_server.url, pg_server.url),
                  "accounts": [account("solo", "openai", api_key="sk-test",
                                       base_url=llm.url + "/v1")]}
        with replicas(config) as (a, b):
            assert chat(a, "gpt-4o").status_code == 200
            assert chat(b, "gpt-4o").status_code == 200
        write_config(config)
        res = CliRunner().invoke(app, ["usage", "--json", "--by", "account"])
        assert res.exit_code == 0, res.output
        import json

        data = json.loads(res.output[res.output.index("{"):])
        assert data["totals"]["requests"] == 2
        assert data["groups"][0]["key"] == "solo"
