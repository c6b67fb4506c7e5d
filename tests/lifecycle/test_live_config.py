"""Live config against a real background tokn (``tokn start``) on real ports:
accounts imported and aliases set while it runs are served at once, SIGHUP and
``tokn reload`` force a reload, an invalid edit keeps it serving, a change only
a restart applies is said so, and a stream in flight survives a reload that
removes its account."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, wait_for_rows, write_config
from tests.lifecycle.helpers import kill_leftover, tokn, wait_for
from tokn import instance, paths

CHATS = "/v1/chat/completions"
pytestmark = pytest.mark.skipif(os.name == "nt", reason="tokn start is POSIX only")


@pytest.fixture(autouse=True)
def _no_tokn_left_running(tokn_home):
    yield
    kill_leftover()


def _chat(api: int, model: str, **extra) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{api}/v1/chat/completions", timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                            **extra})


def _config_status() -> dict:
    return instance.read_status().get("config") or {}


def _log() -> str:
    return (paths.state_dir() / "tokn.log").read_text(encoding="utf-8")


def test_changes_made_while_it_runs_are_served_and_reported(monkeypatch):
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as one, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m2"],
                    auth=["sk-second-key-123456"]) as two:
        api, proxy = free_port(), free_port()
        write_config({"server": {"port": api}, "proxy_mode": {"port": proxy},
                      "accounts": [account("acct", "openai-compatible",
                                           base_url=one.url + "/v1")]})
        assert tokn("start").returncode == 0
        pid = instance.running().pid
        wait_for(lambda: _config_status().get("applied"), what="the first look at the file")
        assert _chat(api, "m1").status_code == 200
        assert _chat(api, "m2").status_code == 404

        # an account imported while it runs: the command says it was taken up,
        # and it is served within 5 s of the file being written (the command
        # waited for it)
        env = {**os.environ, "MY_KEY": "sk-second-key-123456"}
        imported = tokn("import", "--from", "env", "--provider", "openai", "--env-var",
                        "MY_KEY", "--base-url", two.url + "/v1", env=env)
        assert imported.returncode == 0, imported.stderr
        assert f"the running tokn (pid {pid}) applied it." in imported.stdout
        written = paths.config_file().stat().st_mtime
        resp = _chat(api, "m2")
        assert resp.status_code == 200, resp.text
        assert time.time() - written < 5
        assert two.requests[-1].headers.get("authorization") == "Bearer sk-second-key-123456"

        # an alias set while it runs
        aliased = tokn("config", "set", "models.aliases", '{"fast": "m2"}')
        assert aliased.returncode == 0, aliased.stderr
        assert f"the running tokn (pid {pid}) applied it." in aliased.stdout
        served = two.request_count[CHATS]
        assert _chat(api, "fast").status_code == 200
        assert two.request_count[CHATS] == served + 1

        # a change only a restart applies: said so, and the listener stays put
        moved = tokn("config", "set", "server.port", str(free_port()))
        assert moved.returncode == 0, moved.stderr
        assert (f"the running tokn (pid {pid}) applied it, except server.port: "
                "`tokn restart` applies those.") in moved.stdout
        assert _chat(api, "m1").status_code == 200
        status = json.loads(tokn("status", "--json").stdout)["config"]
        assert status["applied"] is True and status["restart"] == ["server.port"]
        assert "changed settings wait for `tokn restart`: server.port" in tokn("status").stdout

        # an invalid edit (made by hand: the CLI refuses to write one) keeps it
        # serving, with one log line saying why
        path = paths.config_file()
        good = path.read_text(encoding="utf-8")
        path.write_text(good + "\n[pool]\nstrategy = 'fastest'\n", encoding="utf-8")
        wait_for(lambda: _config_status().get("applied") is False, what="the refused edit")
        refused = [line for line in _log().splitlines() if "config not reloaded" in line]
        assert len(refused) == 1 and "pool.strategy" in refused[0], refused
        assert _chat(api, "m1").status_code == 200 and _chat(api, "fast").status_code == 200
        shown = tokn("logs", "-n", "50")  # the log still reads, from the running tokn's file
        assert shown.returncode == 0 and "config not reloaded" in shown.stdout, shown.stderr
        hup = tokn("reload")  # forcing it does not help either, and says why
        assert hup.returncode == 1 and "still running, unchanged" in hup.stderr
        assert "pool.strategy" in hup.stderr

        # fixed again: taken up by the watcher, without being asked
        path.write_text(good.replace('fast = "m2"', 'fast = "m1"'), encoding="utf-8")
        wait_for(lambda: _config_status().get("applied"), timeout=5, what="the fixed file")
        served = one.request_count[CHATS]
        assert _chat(api, "fast").status_code == 200 and one.request_count[CHATS] == served + 1

        # SIGHUP (a closed terminal, `systemctl reload`) and `tokn reload` force it
        count = instance.read_status()["reload"]["count"]
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: instance.read_status()["reload"]["count"] == count + 1,
                 what="the SIGHUP reload")
        assert instance.read_status()["reload"]["applied"] is True
        forced = tokn("reload")
        assert forced.returncode == 0, forced.stderr
        assert f"tokn reloaded (pid {pid}): " in forced.stdout
        assert "needs `tokn restart`: server.port" in forced.stdout  # still pending
        assert instance.running().pid == pid

        # disabled and enabled again from the CLI
        off = tokn("account", "disable", "acct")
        assert off.returncode == 0, off.stderr
        assert off.stdout.startswith("disabled account acct in ") and "applied it" in off.stdout
        assert _chat(api, "m1").status_code == 404
        assert tokn("account", "disable", "acct").stdout == "account acct is already disabled\n"
        on = tokn("account", "enable", "acct")
        assert on.returncode == 0 and "applied it" in on.stdout, on.stderr
        assert _chat(api, "m1").status_code == 200

        # removing the imported account stops it being served
        removed = tokn("account", "remove", "openai", "--yes")
        assert removed.returncode == 0, removed.stderr
        assert (f"the running tokn (pid {pid}) applied it, except server.port: "  # pending
                "`tokn restart` applies those.") in removed.stdout
        assert _chat(api, "m2").status_code == 404
        status = json.loads(tokn("status", "--json").stdout)
        assert status["pid"] == pid and [a["id"] for a in status["accounts"]] == ["acct"]
    text = _log()
    assert "config reloaded (file): account(s) added: openai" in text
    assert "config reloaded (SIGHUP)" in text


def test_a_stream_in_flight_survives_a_reload_that_removes_its_account():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"], chunk_delay=0.5) as fake:
        api, proxy = free_port(), free_port()
        write_config({"server": {"port": api}, "proxy_mode": {"port": proxy},
                      "accounts": [account("acct", "openai-compatible",
                                           base_url=fake.url + "/v1")]})
        assert tokn("start").returncode == 0
        got: dict = {}
        story = " ".join(f"word{i}" for i in range(16))  # echoed back, a word each 0.5 s

        def stream() -> None:
            with httpx.stream("POST", f"http://127.0.0.1:{api}/v1/chat/completions",
                              timeout=60, json={"model": "m1", "stream": True, "messages": [
                                  {"role": "user", "content": story}]}) as r:
                got["status"] = r.status_code
                got["lines"] = [line for line in r.iter_lines() if line]

        reader = threading.Thread(target=stream)
        reader.start()
        wait_for(lambda: fake.request_count[CHATS] >= 1, what="the stream to start")
        removed = tokn("account", "remove", "acct", "--yes")
        assert removed.returncode == 0, removed.stderr
        assert "applied it." in removed.stdout
        assert reader.is_alive()  # the account went while its stream was under way
        # new requests no longer find the account, while the stream goes on
        assert _chat(api, "m1").status_code == 503
        reader.join(60)
        assert got["status"] == 200 and got["lines"][-1] == "data: [DONE]"
        content = "".join(
            (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for line in got["lines"][:-1])
        assert content == f"echo: {story}"  # the whole answer arrived
        rows = wait_for_rows(2)
        first = next(r for r in rows if r["stream"])
        assert first["status"] == 200 and first["account"] == "acct", first
        # a config file broken while it runs does not keep it from stopping
        paths.config_file().write_text("[server\n", encoding="utf-8")
        stopped = tokn("stop")
        assert stopped.returncode == 0 and "tokn stopped" in stopped.stdout, stopped.stderr
        assert "not valid TOML" in stopped.stderr and instance.running() is None
