"""Pool health bookkeeping and its messages (pure, with a fake clock)."""

from __future__ import annotations

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
