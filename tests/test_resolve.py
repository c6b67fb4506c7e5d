"""Model resolution as a table: what an agent's default id resolves to, and why."""

from __future__ import annotations

import pytest

from tokn.resolve import Served, glob_alias, resolve, shape, strip_variant
from tokn.rules import glob_match

COPILOT = [
    Served("claude-sonnet-4", frozenset({"chat"})),
    Served("claude-sonnet-4.5", frozenset({"chat", "messages"})),
    Served("claude-opus-4.1", frozenset({"chat"})),
    Served("claude-opus-4.5", frozenset({"chat", "messages"})),
    Served("claude-haiku-4.5", frozenset({"chat", "messages"})),
    Served("claude-3.7-sonnet", frozenset({"chat"})),
    Served("gpt-4o", frozenset({"chat"})),
    Served("gpt-4.1", frozenset({"chat"})),
    Served("gpt-5", frozenset({"chat", "responses"})),
    Served("gpt-5-mini", frozenset({"chat", "responses"})),
    Served("gpt-5.1-codex", frozenset({"responses"})),
    Served("gpt-5.1-codex-mini", frozenset({"responses"})),
    Served("gpt-5.2", frozenset({"chat"})),
    Served("text-embedding-3-small", frozenset({"embeddings"})),
    Served("gemini-2.5-pro", frozenset({"chat"})),
]
SONNETS = [Served("claude-sonnet-4"), Served("claude-sonnet-4.5"), Served("claude-haiku-4.5")]
MINI = [Served("gpt-4o-mini", frozenset({"chat"})), Served("gpt-5-nano", frozenset({"chat"})),
        Served("gpt-4.1", frozenset({"chat"}))]
NEAREST, STRICT = "nearest", "strict"


@pytest.mark.parametrize("requested,served,fallback,fmt,model,how", [
    # served, loosely: variant suffixes, dates, dots and dashes
    ("claude-opus-4.5", COPILOT, NEAREST, "messages", "claude-opus-4.5", "served"),
    ("claude-opus-4-5[1m]", COPILOT, NEAREST, "messages", "claude-opus-4.5", "served"),
    ("claude-sonnet-4-5-20250929", COPILOT, STRICT, "messages", "claude-sonnet-4.5", "served"),
    # an unserved Opus: the newest served Opus, whatever its suffix
    ("claude-opus-4-8[1m]", COPILOT, NEAREST, "messages", "claude-opus-4.5", "nearest"),
    ("claude-opus-5", COPILOT, NEAREST, "chat", "claude-opus-4.5", "nearest"),
    ("claude-opus-9", [Served("claude-opus-41"), Served("claude-opus-4.5")], NEAREST, "chat",
     "claude-opus-4.5", "nearest"),
    # no Opus served: the best Claude (Sonnet before Haiku, newest first)
    ("claude-opus-4-8[1m]", SONNETS, NEAREST, "messages", "claude-sonnet-4.5", "nearest"),
    # an unserved Sonnet / Haiku: the newest of its tier
    ("claude-sonnet-4-7", COPILOT, NEAREST, "messages", "claude-sonnet-4.5", "nearest"),
    ("claude-3-5-haiku-20241022", COPILOT, NEAREST, "messages", "claude-haiku-4.5", "nearest"),
    # an unserved GPT: the best GPT for the caller's API (Codex speaks responses)
    ("gpt-6.2-sol", COPILOT, NEAREST, "responses", "gpt-5.1-codex", "nearest"),
    ("gpt-6.2-sol", COPILOT, NEAREST, "chat", "gpt-5.2", "nearest"),
    ("gpt-6-codex", COPILOT, NEAREST, "chat", "gpt-5.1-codex", "nearest"),
    ("gpt-6-codex-mini", COPILOT, NEAREST, "responses", "gpt-5.1-codex-mini", "nearest"),
    ("codex-mini-latest", COPILOT, NEAREST, "responses", "gpt-5.1-codex-mini", "nearest"),
    ("gpt-9", [Served("gpt-oss-120b"), Served("gpt-4.1")], NEAREST, "chat", "gpt-4.1",
     "nearest"),
    # full models before mini before nano
    ("gpt-9", MINI, NEAREST, "chat", "gpt-4.1", "nearest"),
    ("gpt-9-nano", MINI, NEAREST, "chat", "gpt-5-nano", "nearest"),
    ("gemini-3-pro", COPILOT, NEAREST, "chat", "gemini-2.5-pro", "nearest"),
    # strict, unknown families, nothing of the family: no model
    ("claude-opus-4-8[1m]", COPILOT, STRICT, "messages", None, "none"),
    ("gpt-6.2-sol", SONNETS, NEAREST, "responses", None, "none"),
    ("llama-3-70b", COPILOT, NEAREST, "chat", None, "none"),
    ("text-embedding-9", COPILOT, NEAREST, "embeddings", None, "none"),
])
def test_resolve(requested, served, fallback, fmt, model, how):
    got = resolve(requested, served, {}, fallback, fmt)
    assert (got.model, got.how) == (model, how), got.why


def test_order_of_served_does_not_change_the_answer():
    for requested, fmt in (("claude-opus-4-8[1m]", "messages"), ("gpt-6.2-sol", "responses"),
                           ("claude-sonnet-9", "chat"), ("gpt-9", "chat")):
        first = resolve(requested, COPILOT, {}, NEAREST, fmt).model
        assert resolve(requested, COPILOT[::-1], {}, NEAREST, fmt).model == first
        assert resolve(requested, sorted(COPILOT, key=lambda m: m.id), {}, NEAREST,
                       fmt).model == first


def test_exact_aliases_beat_globs_and_served_ids_beat_aliases():
    aliases = {"claude-opus-*": "claude-sonnet-4.5", "claude-opus-4-8": "claude-haiku-4.5",
               "fast": "gpt-5-mini", "gpt-4o": "gpt-5"}
    got = resolve("claude-opus-4-8[1m]", COPILOT, aliases)
    assert (got.model, got.how) == ("claude-haiku-4.5", "alias")
    got = resolve("claude-opus-4-9", COPILOT, aliases)
    assert (got.model, got.how) == ("claude-sonnet-4.5", "glob")
    assert 'glob alias "claude-opus-*"' in got.why
    # a served Opus stays itself: a glob alias redirects only what is not served
    assert resolve("claude-opus-4.5", COPILOT, aliases).model == "claude-opus-4.5"
    assert resolve("fast", COPILOT, aliases).model == "gpt-5-mini"
    assert resolve("gpt-4o", COPILOT, aliases).how == "served"


def test_glob_alias_to_an_unserved_model_falls_back_to_its_nearest():
    got = resolve("claude-opus-4-9", COPILOT, {"claude-opus-*": "claude-sonnet-9"})
    assert (got.model, got.how) == ("claude-sonnet-4.5", "nearest")
    assert "no account serves" in got.why
    got = resolve("claude-opus-4-9", COPILOT, {"claude-opus-*": "claude-sonnet-9"}, STRICT)
    assert got.model is None and "strict" in got.why


def test_the_most_specific_glob_wins_then_file_order():
    aliases = {"claude-*": "a", "claude-opus-*": "b", "claude-opus-4-?": "c", "x*": "d"}
    assert glob_alias("claude-opus-4-8[1m]", aliases) == ("claude-opus-4-?", "c")
    assert glob_alias("claude-opus-5", aliases) == ("claude-opus-*", "b")
    assert glob_alias("claude-sonnet", aliases) == ("claude-*", "a")
    assert glob_alias("gpt-5", aliases) is None
    assert glob_alias("a", {"?": "one", "*": "two"}) == ("?", "one")


def test_glob_match_takes_brackets_literally():
    assert glob_match("claude-opus-4-8[1m]", "claude-opus-4-8[1m]")
    assert not glob_match("claude-opus-4-8[1m]", "claude-opus-4-81")
    assert glob_match("Claude-*", "claude-x") and not glob_match("claude-?", "claude-xy")


@pytest.mark.parametrize("model,family,tier,version", [
    ("claude-opus-4-8[1m]", "claude", "opus", (4, 8)),
    ("claude-3-5-sonnet-20241022", "claude", "sonnet", (3, 5)),
    ("claude-3.7-sonnet-thought", "claude", "sonnet", (3, 7)),
    ("claude-opus-41", "claude", "opus", (4, 1)),  # Copilot's spelling of Opus 4.1
    ("gpt-oss-120b", "gpt", "oss-size", ()),  # a size is no version
    ("gpt-4o-mini", "gpt", "o-mini", (4,)),
    ("gpt-5.1-codex-max", "gpt", "codex-max", (5, 1)),
    ("gpt-3.5-turbo-0125", "gpt", "turbo", (3, 5)),
    ("gemini-2.5-flash-lite", "gemini", "flash-lite", (2, 5)),
])
def test_shape(model, family, tier, version):
    s = shape(model)
    assert (s.family, s.tier, s.version) == (family, tier, version)


def test_shape_of_non_chat_and_unknown_ids_is_none():
    assert shape("text-embedding-3-small") is None
    assert shape("my-local-model") is None
    assert strip_variant("claude-opus-4-8[1m]") == "claude-opus-4-8"
