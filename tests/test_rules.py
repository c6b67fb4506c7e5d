"""``[[rules]]`` request shaping (pure): matching, system prompts per format,
defaults and overrides, stripping; validation with one-line errors."""

from __future__ import annotations

import pytest

from tokn.config import ConfigError, parse_config
from tokn.rules import Rule, matching, parse_rules, shape, strip


def test_matching_by_model_glob_account_and_provider_in_file_order():
    rules = parse_rules([
        {"model": "claude-*", "system_append": "a"},
        {"account": "work-*", "system_append": "b"},
        {"provider": "github-copilot", "system_append": "c"},
        {"model": "gpt-*", "provider": "openai", "system_append": "d"},
    ])
    got = matching(rules, ("claude-opus-4-8[1m]", "claude-opus-4.5"), "work-1", "openai")
    assert [r.system_append for r in got] == ["a", "b"]
    got = matching(rules, ("gpt-6", "gpt-5"), "home", "openai")
    assert [r.system_append for r in got] == ["d"]
    # the served id matches too (an unserved Opus served by a Sonnet)
    got = matching(rules, ("claude-opus-9", "claude-sonnet-4.5"), "x", "github-copilot")
    assert [r.system_append for r in got] == ["a", "c"]
    assert matching(rules, ("llama",), "home", "kiro") == []


def test_system_prompt_in_chat():
    body = {"model": "m", "messages": [{"role": "system", "content": "agent"},
                                       {"role": "user", "content": "hi"},
                                       {"role": "system", "content": "mid"}]}
    out = shape("chat", body, [Rule(system_prepend="P", system_append="A")])
    assert [(m["role"], m["content"]) for m in out["messages"]] == [
        ("system", "P"), ("system", "agent"), ("system", "A"), ("user", "hi"),
        ("system", "mid")]
    out = shape("chat", body, [Rule(system="only")])
    assert [(m["role"], m["content"]) for m in out["messages"]] == [
        ("system", "only"), ("user", "hi")]
    assert body["messages"][0]["content"] == "agent"  # the client's body is left alone


def test_system_prompt_in_messages_keeps_blocks_and_their_cache_markers():
    blocks = [{"type": "text", "text": "agent", "cache_control": {"type": "ephemeral"}}]
    out = shape("messages", {"system": blocks}, [Rule(system_prepend="P", system_append="A")])
    assert out["system"] == [{"type": "text", "text": "P"}, *blocks,
                             {"type": "text", "text": "A"}]
    assert shape("messages", {"system": "agent"}, [Rule(system_append="A")])["system"] == \
        "agent\n\nA"
    assert shape("messages", {}, [Rule(system_append="A")])["system"] == "A"
    assert shape("messages", {"system": blocks}, [Rule(system="S")])["system"] == "S"


def test_system_prompt_in_responses():
    body = {"instructions": "agent", "input": [
        {"type": "message", "role": "developer", "content": "dev"},
        {"type": "message", "role": "user", "content": "hi"}]}
    out = shape("responses", body, [Rule(system_prepend="P", system_append="A")])
    assert out["instructions"] == "P\n\nagent\n\nA" and len(out["input"]) == 2
    out = shape("responses", body, [Rule(system="S")])
    assert out["instructions"] == "S" and [i["role"] for i in out["input"]] == ["user"]


def test_system_prompt_in_gemini():
    body = {"systemInstruction": {"role": "user", "parts": [{"text": "agent"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    out = shape("gemini", body, [Rule(system_prepend="P", system_append="A")])
    assert out["systemInstruction"] == {"role": "user", "parts": [
        {"text": "P"}, {"text": "agent"}, {"text": "A"}]}
    assert shape("gemini", body, [Rule(system="S")])["systemInstruction"]["parts"] == [
        {"text": "S"}]
    assert shape("gemini", {"contents": []}, [Rule(system_append="A")])[
        "systemInstruction"] == {"parts": [{"text": "A"}]}
    assert body["systemInstruction"]["parts"] == [{"text": "agent"}]


@pytest.mark.parametrize("fmt,client,expected", [
    ("gemini", {"generationConfig": {"temperature": 0.2}},
     {"generationConfig": {"temperature": 0.2, "maxOutputTokens": 4096,
                           "thinkingConfig": {"thinkingLevel": "high"}}}),
    ("chat", {}, {"max_tokens": 4096, "reasoning_effort": "high"}),
    ("chat", {"max_completion_tokens": 9}, {"max_completion_tokens": 9,
                                            "reasoning_effort": "high"}),
    ("responses", {"reasoning": {"summary": "auto"}},
     {"max_output_tokens": 4096, "reasoning": {"summary": "auto", "effort": "high"}}),
    ("responses", {"max_output_tokens": 5, "reasoning": {"effort": "low"}},
     {"max_output_tokens": 5, "reasoning": {"effort": "low"}}),
    ("messages", {"max_tokens": 7}, {"max_tokens": 7, "output_config": {"effort": "high"}}),
])
def test_defaults_only_where_the_client_set_nothing(fmt, client, expected):
    rule = Rule(defaults={"max_tokens": 4096, "reasoning_effort": "high"})
    assert shape(fmt, client, [rule]) == expected


def test_override_wins_and_other_keys_are_fields_of_the_callers_format():
    rule = Rule(override={"max_tokens": 100, "service_tier": "flex", "text.verbosity": "low"})
    assert shape("chat", {"max_completion_tokens": 9}, [rule]) == {
        "max_tokens": 100, "service_tier": "flex", "text": {"verbosity": "low"}}
    assert shape("responses", {"max_output_tokens": 9}, [rule])["max_output_tokens"] == 100


def test_strip_removes_fields_from_the_upstream_body():
    body = {"model": "m", "service_tier": "x", "metadata": {"user_id": "u", "keep": 1}}
    rules = [Rule(strip=("service_tier",)), Rule(strip=("metadata.user_id", "absent.x"))]
    assert strip(body, rules) == {"model": "m", "metadata": {"keep": 1}}
    assert body == {"model": "m", "service_tier": "x", "metadata": {"user_id": "u", "keep": 1}}


def test_shaping_never_changes_the_clients_body():
    body = {"reasoning": {"summary": "auto"}, "instructions": "agent",
            "input": [{"type": "message", "role": "developer", "content": "d"}],
            "messages": [{"role": "system", "content": "s"}], "system": [{"type": "text"}]}
    before = repr(body)
    rule = Rule(system="S", system_append="A", defaults={"reasoning_effort": "low"},
                override={"text.verbosity": "low"})
    for fmt in ("chat", "messages", "responses"):
        shape(fmt, body, [rule, rule])
    assert repr(body) == before


@pytest.mark.parametrize("raw,message", [
    ([{"modle": "x"}], "rules[0].modle is not a rule key"),
    ([{"model": 3}], "rules[0].model must be a string"),
    ([{}, {"defaults": 5}], "rules[1].defaults must be a table"),
    ([{"override": {"model": "x"}}], "rules[0].override.model: a rule cannot set model"),
    ([{"strip": "metadata"}], "rules[0].strip must be an array of field names"),
    ([{"strip": ["stream"]}], "rules[0].strip: a rule cannot strip model or stream"),
    ({"model": "x"}, "`rules` must be an array of tables"),
])
def test_bad_rules_are_one_line_config_errors(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"rules": raw}, "config.toml")
    text = str(err.value)
    assert text.startswith("config.toml: ") and message in text and "\n" not in text


def test_rules_parse_from_config():
    cfg = parse_config({"rules": [{"model": "claude-*", "system_append": "Be brief.",
                                   "defaults": {"max_tokens": 1000}, "strip": ["metadata"]}]})
    assert cfg.rules == [Rule(model="claude-*", system_append="Be brief.",
                              defaults={"max_tokens": 1000}, strip=("metadata",))]
