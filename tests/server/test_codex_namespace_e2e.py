"""Codex's namespace tools (its real ``multi_agent_v1`` sub-agent tools) through an
Anthropic-format upstream: flattened into tools there, calls mapped back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config

CODEX = json.loads((Path(__file__).parents[1] / "convert" / "agent_bodies" /
                    "codex_turn1.json").read_text())


def _codex_body(**extra):
    body = dict(CODEX.get("body", CODEX))
    # the sub-agent tool first, so the fake's tool call picks it
    namespace = next(t for t in body["tools"] if t["type"] == "namespace")
    spawn = next(t for t in namespace["tools"] if t["name"] == "spawn_agent")
    body["tools"] = [{**namespace, "tools": [spawn]},
                     *[t for t in body["tools"] if t is not namespace]]
    body["input"] = [{"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "weather? ask a sub-agent"}]}]
    return {**body, "model": "claude-sonnet-4.5", **extra}


def test_codex_sub_agent_tools_through_an_anthropic_upstream():
    with FakeLLM(formats={"messages"}, models=["claude-sonnet-4.5"]) as ant:
        write_config({"accounts": [account("ant", "anthropic", api_key="k",
                                           base_url=ant.url)]})
        with running_tokn() as tokn:
            whole = httpx.post(tokn.api_url + "/v1/responses", json=_codex_body(stream=False),
                               timeout=20)
            with httpx.stream("POST", tokn.api_url + "/v1/responses", timeout=20,
                              json=_codex_body(stream=True)) as resp:
                events = [json.loads(line[6:]) for line in resp.iter_lines()
                          if line.startswith("data: ")]
    assert whole.status_code == 200, whole.text
    sent = ant.requests_to("/v1/messages")[0].json
    names = [t["name"] for t in sent["tools"]]
    assert names[0] == "multi_agent_v1__spawn_agent"
    assert {"exec_command", "get_goal"} <= set(names) and "web_search" not in names
    (call,) = [i for i in whole.json()["output"] if i["type"] == "function_call"]
    assert (call["namespace"], call["name"]) == ("multi_agent_v1", "spawn_agent")
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"
            and e["item"]["type"] == "function_call"]
    assert [(i["namespace"], i["name"]) for i in done] == [("multi_agent_v1", "spawn_agent")]
