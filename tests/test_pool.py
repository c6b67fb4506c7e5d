"""Pool health bookkeeping and its messages (pure, with a fake clock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tokn import config, state
from tokn.errors import ToknError
from tokn.pool import LAST_OK_SAVE_SECS, Pool


def _pool(now: list[float], *accounts: dict) -> Pool:
    cfg = config.parse_config({"accounts": list(accounts)})
    return Pool(lambda: cfg, httpx.AsyncClient(), clock=lambda: now[0])


def test_last_ok_is_saved_at_most_once_a_minute(monkeypatch):
    writes = []
    monkeypatch.setattr(state, "update", lambda name, key, value: writes.append(value))
    now = [1000.0]
    pool = _pool(now, {"id": "o", "provider": "openai", "api_key": "k"})
    pool.mark_success("o")
    now[0] += 1
    pool.mark_success("o")
    assert [w["last_ok"] for w in writes] == [1000.0]   # the first success is saved at once
    now[0] += LAST_OK_SAVE_SECS
    pool.mark_success("o")
    assert [w["last_ok"] for w in writes] == [1000.0, 1000.0 + 1 + LAST_OK_SAVE_SECS]


def test_switch_without_an_account_names_the_provider_plainly():
    pool = _pool([0.0])
    with pytest.raises(ToknError) as info:
        pool.switch_account("openai")
    assert "needs an account of provider openai" in info.value.message
    assert "tokn login --provider openai" in info.value.message


def _listing_pool(pool_cfg: dict, models_cfg: dict) -> Pool:
    """Accounts ``a`` (openai: claude-sonnet-4.5) and ``b`` (openai-compatible:
    claude-opus-4.5, gpt-5), their listings answered by a mock transport."""
    lists = {"a.test": ["claude-sonnet-4.5"], "b.test": ["claude-opus-4.5", "gpt-5"]}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": m} for m in lists[request.url.host]]})

    cfg = config.parse_config({"pool": pool_cfg, "models": models_cfg, "accounts": [
        {"id": "a", "provider": "openai", "api_key": "k", "base_url": "http://a.test/v1"},
        {"id": "b", "provider": "openai-compatible", "base_url": "http://b.test/v1"}]})
    return Pool(lambda: cfg, httpx.AsyncClient(transport=httpx.MockTransport(answer)))


def _served_by(pool: Pool, model: str) -> list[tuple[str, str]]:
    found = asyncio.run(pool.candidates(model, fmt="messages"))
    return [(c.account_id, c.served_model) for c in found]


def test_unserved_models_resolve_in_the_documented_order(tokn_home):
    pool = _listing_pool({}, {})
    assert _served_by(pool, "claude-opus-4-8[1m]") == [("b", "claude-opus-4.5")]
    # a provider/ prefix resolves among that provider's models only
    assert _served_by(pool, "openai/claude-opus-4-8") == [("a", "claude-sonnet-4.5")]
    # the default provider goes before the nearest model; a glob alias before both
    pool = _listing_pool({"default_provider": "openai"}, {})
    assert _served_by(pool, "claude-opus-4-8[1m]") == [("a", "claude-opus-4-8[1m]")]
    pool = _listing_pool({"default_provider": "openai"},
                         {"aliases": {"claude-opus-*": "claude-opus-4.5"}})
    assert _served_by(pool, "claude-opus-4-8[1m]") == [("b", "claude-opus-4.5")]
    pool = _listing_pool({}, {"fallback": "strict"})
    with pytest.raises(ToknError) as info:
        asyncio.run(pool.candidates("claude-opus-4-8[1m]", fmt="messages"))
    assert info.value.status == 404 and 'fallback = "strict"' in info.value.message
