"""A live reload on a replica with ``[state] url``: the pool keeps sharing
health through Redis, a new account takes the other replicas' record (a
reload does not wipe their cooldowns), a changed one starts afresh for all,
and a provider swapped in uses the shared token store."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from tests.helpers import account, write_config
from tokn.config import load_config
from tokn.runtime import Runtime
from tokn.shared.pool_state import HEALTH
from tokn.shared.tokens import RedisTokens


def _openai(account_id: str, port: int = 9) -> dict:
    return account(account_id, "openai-compatible", base_url=f"http://127.0.0.1:{port}/v1")


def test_a_reload_keeps_shared_health_and_the_shared_token_store(tokn_home, redis_server):
    state = {"state": {"url": redis_server.url}, "usage": {"enabled": False}}
    write_config({**state, "accounts": [_openai("a"), _openai("b")]})
    runtime = Runtime(load_config())
    other = redis.Redis.from_url(redis_server.url)  # what another replica wrote
    until = time.time() + 600
    cooling = {"failures": 3, "cooldown_until": until, "last_error": "boom from B"}
    for account_id in ("a", "b", "c"):
        other.hset(HEALTH, account_id, json.dumps(cooling))

    async def main() -> None:
        pool, shared = runtime.pool, runtime.pool.shared
        assert shared is not None
        write_config({**state, "accounts": [
            _openai("a"), _openai("b", port=8), _openai("c"),
            account("cp", "copilot", github_token="ghu_" + "x" * 36)]})
        outcome = await runtime.reload("test")
        assert outcome.applied, outcome.message
        assert runtime.pool is pool and pool.shared is shared  # the shared view survives
        await runtime.link.settle()
        await pool.sync()
        # kept (a) and new (c): the other replica's cooldown holds here
        assert pool.health["a"].cooldown_until == until
        assert pool.health["c"].cooldown_until == until
        assert pool.health["c"].last_error == "boom from B"
        # changed (b): afresh, here and for the other replicas
        assert pool.health["b"].failures == 0 and pool.health["b"].cooldown_until == 0
        assert json.loads(other.hget(HEALTH, "b"))["failures"] == 0
        assert json.loads(other.hget(HEALTH, "c"))["last_error"] == "boom from B"
        # a provider built by the reload shares tokens through Redis
        assert isinstance(pool.providers["cp"].tokens.store, RedisTokens)
        # and what this replica learns after the swap reaches the others
        pool.mark_failure("cp", "refused")
        await runtime.link.settle()
        assert json.loads(other.hget(HEALTH, "cp"))["last_error"] == "refused"
        await runtime.aclose()

    try:
        asyncio.run(main())
    finally:
        other.close()
