"""The real Claude Code and Codex CLIs, configured as a user would (``eval
"$(tokn proxy env)"``, or their base-URL settings for the listener), with no
model flag, against a loopback fake speaking the real wire formats:

* their answers, through the proxy and against the listener;
* the time to their first model turn through the proxy is at most 1 s more
  than against the listener (side calls answered at once, Codex's WebSocket
  served instead of refused);
* every request they send to an intercepted host gets a deliberate answer: a
  model endpoint (a usage row), or a side call of the table in
  ``tokn.mitm.sidecalls`` passed to the host with the client's own key, or
  answered at once when the host cannot be reached; nothing refused;
* a multi-turn task where the model calls one of their tools and answers from
  the result.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.agents.clis import CLIENT_KEY, LogLines, Run, claude, claude_listener_env, codex
from tests.fakes.base import Exchange, FakeServer
from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, proxy_env, running_tokn, usage_rows, write_config
from tokn.mitm import sidecalls

POOLED_KEY = "sk-pooled-account-key"
# none is the CLIs' own default (an Opus with "[1m]", Codex's newest GPT):
# model resolution serves each from its family's nearest model
SERVED = ["claude-opus-4.5", "claude-sonnet-4.5", "gpt-5", "gpt-5-mini"]
SLACK = 1.0  # the bound: first turn through the proxy vs against the listener
SIDE_LINE = re.compile(r"proxy: ([A-Z]+) ([^/ ]+)(/\S*) \((.*?)\): ((?:passed|answered) .*)$")


class AnthropicSite(FakeServer):
    """api.anthropic.com's non-model paths as a client with a key it does not
    know sees them: 401 ``authentication_error`` (a tokn user's shell holds a
    placeholder key); telemetry is accepted."""

    def route(self, ex: Exchange) -> bool:
        if ex.req.path.startswith("/api/event_logging/"):
            ex.send_json(200, {})
        else:
            ex.send_json(401, {"type": "error", "error": {"type": "authentication_error",
                                                          "message": "invalid x-api-key"}})
        return True


@pytest.fixture
def upstream():
    with FakeLLM(formats={"chat", "messages", "responses"}, path_prefix="/v1", models=SERVED,
                 auth={POOLED_KEY}) as fake:
        yield fake


def _configure(fake: FakeLLM, proxy_port: int, **proxy_mode) -> None:
    write_config({"proxy_mode": {"port": proxy_port, **proxy_mode},
                  "accounts": [account("pool", "openai-compatible", base_url=fake.url + "/v1",
                                       api_key=POOLED_KEY,
                                       settings={"formats": ["chat", "messages", "responses"]})]})


def _offline() -> dict[str, str]:
    """The agents' hosts unreachable: connections are refused (a closed port)."""
    closed = f"127.0.0.1:{free_port()}"
    return {"api.anthropic.com": closed, "api.openai.com": closed}


@pytest.fixture
def offline_tokn(upstream):
    """tokn with its proxy, the agents' own hosts unreachable: (handle, the
    env block of `tokn proxy env`, the log lines)."""
    proxy_port = free_port()
    _configure(upstream, proxy_port, upstream_overrides=_offline())
    env = proxy_env()
    with running_tokn(with_proxy=True, proxy_port=proxy_port) as tokn, LogLines() as lines:
        yield tokn, env, lines


def _rows(tokn) -> list[dict]:
    tokn.runtime.usage.flush()
    return usage_rows(tokn.runtime.usage.path)


def _first_turn(fake: FakeLLM, path: str, run: Run, since: int) -> float:
    calls = [r for r in fake.requests[since:] if r.method == "POST" and r.path.endswith(path)]
    assert calls, f"no model call reached the fake: {run.stderr[-3000:]}"
    return calls[0].time - run.started


def _side_calls(lines: LogLines) -> list[tuple[str, str, str, str]]:
    """(method, path, what, outcome) of every side-call line."""
    out = []
    for line in lines.lines:
        found = SIDE_LINE.match(line)
        if found:
            out.append((found[1], found[3], found[4], found[5]))
    return out


def _assert_deliberate(lines: LogLines, host: str) -> list[tuple[str, str, str, str]]:
    """No request was refused, and every side call is a row of the table."""
    assert not lines.matching("proxy: refused"), lines.matching("proxy: refused")
    calls = _side_calls(lines)
    for method, path, what, _ in calls:
        row = sidecalls.side_call(host, method, path)
        assert row is not sidecalls.DEFAULT, f"{method} {path}: not in the side-call table"
        assert row.what == what
    return calls


def _race(fake: FakeLLM, path: str, direct, proxied) -> tuple[list[Run], list[Run]]:
    """Both ways twice, alternating; asserts the quickest first model turn
    through the proxy is at most SLACK later than the quickest against the
    listener (the best of two: the machine is shared, one run can stall)."""
    runs: dict[str, list[tuple[Run, float]]] = {"listener": [], "proxy": []}
    for i in range(2):
        for name, start in (("listener", direct), ("proxy", proxied)):
            mark = len(fake.requests)
            run = start(i)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
            runs[name].append((run, _first_turn(fake, path, run, mark)))
    listener = min(t for _, t in runs["listener"])
    proxy = min(t for _, t in runs["proxy"])
    assert proxy <= listener + SLACK, runs
    return [r for r, _ in runs["listener"]], [r for r, _ in runs["proxy"]]


def test_claude_code_offline_side_calls_and_first_turn(upstream, offline_tokn, tmp_path):
    tokn, env, lines = offline_tokn
    direct, proxied = _race(
        upstream, "/messages",
        lambda i: claude(tmp_path / f"l{i}", "say hi", claude_listener_env(tokn.api_url)),
        lambda i: claude(tmp_path / f"p{i}", "say hi", env))
    rows = _rows(tokn)
    for run in (*direct, *proxied):
        # the fake echoes the last user turn (Claude Code adds its context blocks to it)
        assert run.stdout.startswith("echo: ") and "say hi" in run.stdout, run.stdout[-500:]
    calls = _assert_deliberate(lines, "api.anthropic.com")
    seen = {path.split("?")[0] for _, path, _, _ in calls}
    # the two Claude Code waits for before its first turn (retried on a 5xx)
    assert {"/api/claude_code/policy_limits", "/api/claude_code/settings"} <= seen
    for method, path, _, outcome in calls:
        row = sidecalls.side_call("api.anthropic.com", method, path)
        assert re.fullmatch(rf"answered {row.offline} at once \(\d+ ms\): api\.anthropic\.com "
                            r"is unreachable .*", outcome), (path, outcome)
    served = [(r["front_door"], r["status"], r["model_requested"], r["model_served"])
              for r in rows if r["inbound_format"] == "messages"]
    assert {s[:2] for s in served} == {("listener", 200), ("proxy", 200)}, rows
    # Claude Code's own default (an Opus, no model flag) served by the served Opus
    assert {s[3] for s in served} == {"claude-opus-4.5"}, served


def test_claude_code_side_calls_reach_the_host_with_the_clients_own_key(
        upstream, tmp_path, public_ca, tls_context_for):
    _, root = public_ca
    with AnthropicSite(ssl_context=tls_context_for("api.anthropic.com")) as site:
        proxy_port = free_port()
        _configure(upstream, proxy_port, upstream_ca_bundle=str(root),
                   upstream_overrides={"api.anthropic.com": f"127.0.0.1:{site.port}"})
        env = proxy_env()
        with running_tokn(with_proxy=True, proxy_port=proxy_port), LogLines() as lines:
            run = claude(tmp_path, "say hi", env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("echo: ") and "say hi" in run.stdout
    calls = _assert_deliberate(lines, "api.anthropic.com")
    assert calls and len(calls) == len(site.requests), (calls, site.requests)
    for req in site.requests:
        # the client's own key (the MCP registry is public: it sends none), never a pooled one
        assert req.headers.get("x-api-key") in (CLIENT_KEY, None), req.path
        assert POOLED_KEY not in json.dumps(req.headers.to_dict())
    assert [r for r in site.requests if r.headers.get("x-api-key") == CLIENT_KEY]
    for _, path, _, outcome in calls:
        expected = 200 if path.startswith("/api/event_logging/") else 401
        assert re.fullmatch(rf"passed to the host, which answered {expected} \(\d+ ms\)",
                            outcome), (path, outcome)
    # the model turn itself was served from the pool, not sent to the host
    assert not [r for r in site.requests if r.path.endswith("/messages")]


def test_codex_websocket_and_first_turn(upstream, offline_tokn, tmp_path):
    tokn, env, lines = offline_tokn
    direct, proxied = _race(
        upstream, "/responses",
        lambda i: codex(tmp_path / f"l{i}", "say hi", {}, listener=tokn.api_url),
        lambda i: codex(tmp_path / f"p{i}", "say hi", env))
    rows = _rows(tokn)
    for run in (*direct, *proxied):
        assert "echo: say hi" in run.stdout, run.stderr[-3000:]
        # served over its WebSocket at once: no refusals retried, no fallback
        assert "Reconnecting" not in run.stderr and "Falling back" not in run.stderr, \
            run.stderr[-3000:]
    assert not _side_calls(lines)  # Codex makes no other call to api.openai.com
    _assert_deliberate(lines, "api.openai.com")
    sockets = lines.matching("listener: WebSocket /v1/responses from")
    assert any(line.endswith("(proxy, route)") for line in sockets), sockets
    assert any(line.endswith("(listener, route)") for line in sockets), sockets
    served = [(r["front_door"], r["route_mode"], r["status"], r["model_served"]) for r in rows
              if r["inbound_format"] == "responses"]
    assert {s[:3] for s in served} == {("proxy", "route", 200), ("listener", "route", 200)}, rows
    # Codex's own default (its newest GPT, no model flag) served by the best served GPT
    assert {s[3] for s in served} == {"gpt-5"}, served


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_multi_turn_tool_task_through_the_proxy(agent, upstream, offline_tokn, tmp_path):
    """The model asks for one of the agent's tools; the agent runs it and sends
    the result back; the model's last answer quotes it."""
    if agent == "claude":
        upstream.tool_name = "Bash"
        upstream.tool_arguments = {"command": "echo tokn-$((6*7))",
                                   "description": "Print a marker"}
    else:  # its default model's tools: JavaScript in the freeform `exec` tool
        upstream.tool_name = "exec"
        upstream.tool_arguments = {"input": 'const r = await tools.exec_command('
                                            '{cmd: "echo tokn-$((6*7))"});\ntext(r.output);'}
    tokn, env, lines = offline_tokn
    prompt = "What is the weather? Use your shell."
    if agent == "claude":
        run = claude(tmp_path, prompt, env, tools="Bash")
    else:
        run = codex(tmp_path, prompt, env)
    rows = _rows(tokn)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "tool said:" in run.stdout and "tokn-42" in run.stdout, run.stdout[-2000:]
    turns = [r for r in upstream.requests if r.method == "POST" and r.meta.get("api")]
    assert any(r.meta.get("tool_call") for r in turns)  # turn 1: the model called the tool
    assert len(turns) >= 2
    _assert_deliberate(lines, "api.anthropic.com" if agent == "claude" else "api.openai.com")
    model_rows = [r for r in rows if r["inbound_format"] in ("messages", "responses")]
    assert len(model_rows) >= 2 and all(r["status"] == 200 for r in model_rows), rows


def test_codex_tools_reach_a_chat_upstream_and_its_calls_run(tmp_path):
    """Codex's default model sends its tools in an ``additional_tools`` input
    item (``tools`` empty). Served by a chat-only upstream (as Copilot is), the
    listener makes them chat tools; the model's chat call of ``exec`` goes back
    as the ``custom_tool_call`` Codex runs, and its result reaches the model."""
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=SERVED, auth={POOLED_KEY},
                 tool_name="exec") as fake:
        fake.tool_arguments = {"input": 'const r = await tools.exec_command('
                                        '{cmd: "echo tokn-$((6*7))"});\ntext(r.output);'}
        write_config({"accounts": [account("pool", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key=POOLED_KEY,
                                           settings={"formats": ["chat"]})]})
        with running_tokn() as tokn:
            run = codex(tmp_path, "What is the weather? Use your shell.", {},
                        listener=tokn.api_url)
            rows = _rows(tokn)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    turns = [r for r in fake.requests
             if r.method == "POST" and r.path.endswith("/chat/completions")]
    assert len(turns) >= 2, run.stderr[-3000:]
    first = turns[0].json
    names = [t["function"]["name"] for t in first.get("tools") or []]
    assert "exec" in names and "wait" in names, names  # Codex's tools, as chat tools
    assert turns[0].meta.get("tool_call")  # the model called `exec`
    # the CLI ran it: its output came back as the chat tool result
    results = [m for m in turns[-1].json["messages"] if m.get("role") == "tool"]
    assert results and "tokn-42" in results[-1]["content"], results
    assert "tool said:" in run.stdout and "tokn-42" in run.stdout, run.stdout[-2000:]
    served = [(r["inbound_format"], r["upstream_format"], r["status"]) for r in rows]
    assert served and set(served) == {("responses", "chat", 200)}, rows
