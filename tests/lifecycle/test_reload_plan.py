"""What a changed config means for a running tokn: the pure diff
(:func:`tokn.reload.plan`) and its application to a real in-process runtime
(:func:`tokn.live.reload`): providers kept or rebuilt, health kept, settings
read through the config in force, restart keys held, a bad file refused."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from tests.helpers import account, write_config
from tokn import live, paths
from tokn.config import AccountConfig, Config, load_config, parse_config
from tokn.reload import Plan, in_force, plan
from tokn.runtime import Runtime


def _acc(account_id: str, **kw) -> AccountConfig:
    return AccountConfig(id=account_id, provider="openai-compatible",
                         base_url="http://127.0.0.1:9/v1", **kw)


def test_plan_names_what_changed_and_what_needs_a_restart():
    old = Config(accounts=[_acc("a"), _acc("b"), _acc("c")])
    new = Config(accounts=[_acc("a"), _acc("b", enabled=False), _acc("d")])
    new.models.aliases = {"fast": "m1"}
    new.pool.strategy = "fill_first"
    new.server.port = 5000
    new.proxy_mode.intercept_hosts = ["api.example.com"]
    got = plan(old, new)
    assert got.added == ("d",) and got.removed == ("c",) and got.changed == ("b",)
    assert got.keys == ("server.port", "proxy_mode.intercept_hosts", "pool.strategy",
                        "models.aliases")
    assert got.restart == ("server.port",)
    assert got.ca_keys == ("proxy_mode.intercept_hosts",)
    assert got.summary() == (
        "account(s) added: d; account(s) removed: c; account(s) changed: b; applied: "
        "proxy_mode.intercept_hosts, pool.strategy, models.aliases; needs `tokn restart`: "
        "server.port")
    assert plan(old, old).empty and plan(old, old).summary() == "no changes"


def test_plan_is_generic_over_sections_it_does_not_know():
    @dataclass
    class Later(Config):  # a config with a section added by a later version
        extra: list = field(default_factory=list)

    got = plan(Later(), Later(extra=[{"match": "gpt-*", "to": "m1"}]))
    assert got == Plan(keys=("extra",))
    # and the sections it never names: [[rules]], [models] fallback
    new = parse_config({"rules": [{"model": "gpt-*", "system_prepend": "Hi."}],
                        "models": {"fallback": "strict"}})
    assert plan(Config(), new).keys == ("models.fallback", "rules")


def test_in_force_keeps_the_running_value_of_restart_keys():
    old, new = Config(), Config()
    new.server.port, new.pool.strategy = 5000, "fill_first"
    running = in_force(old, new, plan(old, new).restart)
    assert running.server.port == old.server.port == 4141
    assert running.pool.strategy == "fill_first" and new.server.port == 5000


@pytest.fixture
def runtime(tokn_home):
    write_config({"accounts": [account("a", "openai-compatible", base_url="http://127.0.0.1:9/v1"),
                               account("b", "openai-compatible", base_url="http://127.0.0.1:9/v1")]})
    rt = Runtime(load_config(), usage=False)
    yield rt
    asyncio.run(rt.aclose())


def _edit(data: dict) -> None:
    write_config(data)


def test_a_reload_keeps_unchanged_accounts_and_their_health(runtime, caplog):
    pool = runtime.pool
    a, b = pool.providers["a"], pool.providers["b"]
    pool.mark_failure("a", "boom")
    pool.mark_failure("b", "boom")
    until = pool.health["a"].cooldown_until
    _edit({"pool": {"strategy": "fill_first", "failure_cooldown_secs": 5.0},
           "models": {"aliases": {"fast": "m1"}},
           "accounts": [account("a", "openai-compatible", base_url="http://127.0.0.1:9/v1"),
                        account("b", "openai-compatible", base_url="http://127.0.0.1:8/v1"),
                        account("c", "openai-compatible", base_url="http://127.0.0.1:9/v1")]})
    with caplog.at_level(logging.INFO, logger="tokn"):
        outcome = asyncio.run(runtime.reload("test"))
    assert outcome.applied and outcome.restart == ()
    assert "account(s) added: c; account(s) changed: b" in outcome.message
    assert list(pool.providers) == ["a", "b", "c"]
    assert pool.providers["a"] is a and pool.health["a"].cooldown_until == until
    assert pool.providers["b"] is not b and pool.health["b"].failures == 0  # changed: afresh
    assert b.account.base_url.startswith("http://127.0.0.1:9")  # in-flight keeps the old one
    # everything reading the config in force sees the new one
    assert runtime.pipeline.cfg is runtime.cfg is pool.cfg
    assert pool.cfg.pool.strategy == "fill_first" and pool.cfg.models.aliases == {"fast": "m1"}
    assert pool.mark_failure("c", "x") == 5.0  # the new cooldown
    assert outcome.digest == runtime.config_digest != ""
    assert any("config reloaded (test): account(s) added: c" in r.message
               for r in caplog.records)
    # the same content again: the watcher has nothing to do
    assert asyncio.run(runtime.reload("file", force=False)) is None


def test_a_file_that_does_not_load_keeps_the_running_config(runtime, caplog):
    before = runtime.cfg
    paths.config_file().write_text("[pool]\nstrategy = 'fastest'\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tokn"):
        outcome = asyncio.run(runtime.reload("file", force=False))
    assert not outcome.applied and "pool.strategy" in outcome.message
    assert runtime.cfg is before and list(runtime.pool.providers) == ["a", "b"]
    lines = [r.getMessage() for r in caplog.records if "config not reloaded" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    # seen once: the watcher does not say it again for the same content
    assert asyncio.run(runtime.reload("file", force=False)) is None
    # an account whose provider does not exist: refused before anything changed
    write_config({"accounts": [account("a", "no-such-provider")]})
    outcome = asyncio.run(runtime.reload("test"))
    assert not outcome.applied and "no-such-provider" in outcome.message
    assert runtime.cfg is before and list(runtime.pool.providers) == ["a", "b"]


@pytest.fixture
def tokn_logger():
    """setup_logging changes the process's "tokn" logger: put it back after."""
    root = logging.getLogger("tokn")
    saved = (list(root.handlers), root.level, root.propagate)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.handlers[:], root.level, root.propagate = saved


def test_logging_level_and_format_apply_live(runtime, tokn_logger):
    from tokn.logs import setup_logging

    setup_logging(runtime.cfg)
    root = tokn_logger
    assert root.level == logging.INFO
    _edit({"logging": {"level": "debug", "format": "json"},
           "accounts": [account("a", "openai-compatible", base_url="http://127.0.0.1:9/v1"),
                        account("b", "openai-compatible", base_url="http://127.0.0.1:9/v1")]})
    outcome = asyncio.run(runtime.reload("test"))
    assert outcome.message == "applied: logging.level, logging.format"
    assert root.level == logging.DEBUG
    assert all(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers)


def test_the_watcher_takes_up_an_edit_once_it_holds_still(runtime):
    seen: list = []
    runtime.on_reload = lambda outcome, source: seen.append((source, outcome))

    async def main() -> None:
        task = asyncio.create_task(live.watch(runtime, every=0.05))
        try:
            for _ in range(200):  # the first look records the file as it is
                if seen:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # and nothing more while it holds still
            assert [(s, o.applied, o.message) for s, o in seen] == [("file", True, "no changes")]
            _edit({"models": {"aliases": {"x": "y"}}})
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(main())
    assert len(seen) == 2 and seen[1][1].applied
    assert "account(s) removed: a, b" in seen[1][1].message
    assert runtime.cfg.models.aliases == {"x": "y"} and runtime.pool.providers == {}


def test_intercepted_hosts_reach_the_running_proxy_and_name_the_ca_fix(tokn_home, caplog):
    import re

    from tests.helpers import running_tokn
    from tests.lifecycle.helpers import wait_for

    write_config({})
    with running_tokn(with_proxy=True) as tokn:
        master = tokn.runtime.proxy.master

        def opened(host: str) -> bool:
            return any(re.search(p, f"{host}:443") for p in master.options.allow_hosts)

        assert not opened("llm.example.org") and opened("api.openai.com")

        def reloaded() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if "config reloaded" in r.getMessage()]

        with caplog.at_level(logging.INFO, logger="tokn"):
            write_config({"proxy_mode": {"intercept_hosts": ["llm.example.org"],
                                         "passthrough_hosts": ["api.openai.com"]}})
            # the watcher of the serving tokn takes it up, unasked
            wait_for(reloaded, timeout=5, what="the reload")
        assert opened("llm.example.org")
        assert not opened("api.openai.com")
        assert reloaded() == [
            "config reloaded (file): applied: proxy_mode.intercept_hosts, "
            "proxy_mode.passthrough_hosts; the CA's name constraints do not cover "
            "llm.example.org; before the proxy can intercept them: run `tokn proxy ca "
            "regenerate`, trust the new CA, then `tokn restart`"]
        # the router decides with the config in force too: a route mode set now
        router = master.addons.get("tokn_router")
        assert router.settings().default_mode == "route"
        write_config({"proxy_mode": {"intercept_hosts": ["llm.example.org"],
                                     "passthrough_hosts": ["api.openai.com"],
                                     "route_mode": "passthrough"}})
        wait_for(lambda: router.settings().default_mode == "passthrough", timeout=5,
                 what="the new route mode")


def test_model_listings_stay_with_their_account_when_a_reload_swaps_mid_listing(tokn_home):
    import httpx

    from tests.fakes.llm import FakeLLM
    from tokn.pool import Pool

    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["from-a"]) as a, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["from-b"]) as b:
        a.mode, a.slow_delay = "slow", 0.5
        write_config({"accounts": [account("a", "openai-compatible", base_url=a.url + "/v1"),
                                   account("b", "openai-compatible", base_url=b.url + "/v1")]})
        live_cfg = [load_config()]

        async def main() -> list[tuple[str, str]]:
            async with httpx.AsyncClient() as client:
                pool = Pool(lambda: live_cfg[0], client)
                listing = asyncio.create_task(pool.all_models())
                await asyncio.sleep(0.2)  # b has answered, a not yet
                live_cfg[0] = Config(accounts=[live_cfg[0].account("b")])  # a removed
                pool.swap(pool.build(live_cfg[0].accounts, keep=pool.providers))
                return [(p.account_id, m.id) for p, m in await listing]

        assert sorted(asyncio.run(main())) == [("a", "from-a"), ("b", "from-b")]
