"""``tokn models`` and ``tokn models resolve`` against fake upstreams."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, write_config
from tokn.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["models", *args])


def _setup(fa, fb, **models):
    write_config({"models": models, "accounts": [
        account("a", "openai-compatible", base_url=fa.url + "/v1"),
        account("b", "openai-compatible", base_url=fb.url + "/v1",
                settings={"formats": ["messages"]})]})


def test_models_lists_accounts_aliases_and_the_fallback():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-5", "gpt-4.1"]) as fa, \
            FakeLLM(formats={"messages"}, path_prefix="/v1", models_style="openai",
                    models=["claude-opus-4.5"]) as fb:
        _setup(fa, fb, aliases={"fast": "gpt-4.1", "claude-opus-*": "claude-opus-4.5",
                                "gone": "nothing"})
        out = _invoke("--json")
        assert out.exit_code == 0, out.output
        data = json.loads(out.stdout)
        text = _invoke()
    assert [(x["account"], [m["id"] for m in x["models"]]) for x in data["accounts"]] == [
        ("a", ["gpt-5", "gpt-4.1"]), ("b", ["claude-opus-4.5"])]
    assert data["accounts"][1]["models"][0]["formats"] == ["messages"]
    assert data["aliases"] == [
        {"alias": "fast", "target": "gpt-4.1", "glob": False, "resolves_to": "gpt-4.1"},
        {"alias": "claude-opus-*", "target": "claude-opus-4.5", "glob": True,
         "resolves_to": None},
        {"alias": "gone", "target": "nothing", "glob": False, "resolves_to": None}]
    assert data["fallback"] == "nearest"
    assert text.exit_code == 0 and "claude-opus-4.5" in text.stdout
    assert "not served" in text.stdout and "fallback: nearest" in text.stdout


def test_models_resolve_says_what_and_why():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-5", "gpt-4.1"]) as fa, \
            FakeLLM(formats={"messages"}, path_prefix="/v1", models_style="openai",
                    models=["claude-opus-4.5", "claude-sonnet-4.5"]) as fb:
        _setup(fa, fb)
        got = json.loads(_invoke("resolve", "claude-opus-4-8[1m]", "--json").stdout)
        assert (got["model"], got["how"], got["accounts"]) == ("claude-opus-4.5", "nearest",
                                                                ["b"])
        text = _invoke("resolve", "gpt-6.2-sol", "--format", "responses")
        assert text.exit_code == 0
        assert "gpt-6.2-sol -> gpt-5" in text.stdout and "nearest" in text.stdout
        missing = _invoke("resolve", "llama-9")
        assert missing.exit_code == 1 and "does not resolve" in missing.stdout
        _setup(fa, fb, fallback="strict")
        strict = json.loads(_invoke("resolve", "claude-opus-4-8[1m]", "--json").stdout)
        assert strict["model"] is None and "strict" in strict["why"]
        bad = _invoke("resolve", "x", "--format", "nope")
        assert bad.exit_code == 1 and "--format" in bad.output


def test_models_names_an_account_that_cannot_list():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-5"]) as fa:
        write_config({"accounts": [account("a", "openai-compatible", base_url=fa.url + "/v1"),
                                   account("down", "openai-compatible",
                                           base_url="http://127.0.0.1:9/v1")]})
        data = json.loads(_invoke("--json", "--timeout", "5").stdout)
        got = _invoke("resolve", "gpt-5")
    down = next(x for x in data["accounts"] if x["account"] == "down")
    assert down["models"] == [] and "cannot reach" in down["error"]
    assert got.exit_code == 0 and "down could not list" in got.stdout
