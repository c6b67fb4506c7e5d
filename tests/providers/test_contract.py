"""The provider contract: every hook the pipeline, the proxy and the CLI use is
declared on the base class; setup options are declared and taken exactly; a
provider's hosts are its rows of the one host table."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from tokn import hosts
from tokn.config import AccountConfig
from tokn.providers import (
    DEFAULT_PROVIDER,
    ModelInfo,
    Provider,
    import_sources,
    provider_class,
    provider_classes,
)
from tokn.providers.kiro.provider import KiroProvider
from tokn.providers.setup import Setup

CLASSES = provider_classes()

# What the pipeline, pool, proxy, dashboard and CLI call on a provider.
HOOKS = (
    "credentials", "can_refresh", "should_refresh", "authorized", "prepare", "send",
    "static_headers", "call_headers", "resolved_headers", "switch_headers", "initiator",
    "initiator_mode", "models", "list_models", "model_from_listing", "model_formats",
    "format_refused", "dialect", "failure_kind", "quota_reset", "describe", "login",
    "import_", "verify", "same_account", "id_hint", "cached_facts", "forget",
    "forget_tokens", "login_options", "import_sources", "import_options", "hosts",
    "token_state", "state_files", "shows_identity", "chat_stream_quirks",
)


def test_every_hook_is_declared_on_the_base_class():
    missing = [name for name in HOOKS if not hasattr(Provider, name)]
    assert missing == []


def _keywords(fn) -> set[str]:
    params = inspect.signature(fn).parameters.values()
    assert not any(p.kind is p.VAR_KEYWORD for p in params), f"{fn} swallows keywords"
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize("cls", CLASSES, ids=[c.id for c in CLASSES])
def test_setup_hooks_take_exactly_the_declared_options(cls):
    assert _keywords(cls.login) == {o.name for o in cls.login_options}
    assert _keywords(cls.import_) == {o.name for o in cls.import_options}


def test_a_misspelled_option_is_an_error_not_ignored():
    with pytest.raises(TypeError, match="metod"):
        asyncio.run(KiroProvider.login(Setup(), metod="idc"))
    with pytest.raises(TypeError, match="method"):
        asyncio.run(provider_class("openai").login(Setup(), method="idc"))


def test_import_sources_each_have_one_reader():
    sources = import_sources()
    assert sources["env"] is None
    for source, cls in sources.items():
        if cls is not None:
            assert [c for c in CLASSES if source in c.import_sources] == [cls]
    assert provider_class(DEFAULT_PROVIDER).id == DEFAULT_PROVIDER


def test_provider_hosts_are_their_rows_of_the_one_host_table():
    table_ids = {pid for _, _, pid in hosts.HOST_PROVIDERS}
    for pid in table_ids:
        cls = provider_class(pid)
        assert set(cls.hosts) == {p for p, _, owner in hosts.HOST_PROVIDERS if owner == pid}
    for cls in CLASSES:
        if cls.id not in table_ids:
            assert cls.hosts == ()
    assert set(hosts.BUILTIN_INTERCEPT) == {p for cls in CLASSES for p in cls.hosts}
    assert provider_class("github-copilot").hosts == ("api.githubcopilot.com",
                                                      "api.*.githubcopilot.com")


def test_a_provider_cannot_declare_hosts_of_its_own():
    with pytest.raises(TypeError, match="tokn/hosts.py"):
        type("Rogue", (Provider,), {"id": "rogue", "hosts": ("evil.example",)})


def test_a_format_refused_for_a_model_is_remembered_without_touching_the_listing():
    cls = provider_class("openai-compatible")
    p = cls(AccountConfig(id="x", provider="openai-compatible", base_url="http://x",
                          settings={"formats": ["chat", "responses"]}), None)  # type: ignore
    codex = ModelInfo("gpt-5-codex", formats=frozenset({"chat", "responses"}))
    assert p.format_refused(400, "model_not_found", "chat", codex) is None
    assert p.format_refused(400, "unsupported_api_for_model", "chat", codex) == "responses"
    assert p.model_formats(codex) == {"responses"}
    assert codex.formats == {"chat", "responses"}          # the cached listing is untouched
    plain = provider_class("anthropic")(AccountConfig(id="a", provider="anthropic"),
                                        None)  # type: ignore[arg-type]
    assert plain.format_refused(400, "unsupported_api_for_model", "messages", codex) is None
