"""``tokn start | status | reload | stop | restart`` as real processes on real ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, free_port, tokn_process, wait_for_rows, write_config
from tests.lifecycle.helpers import kill_leftover, one_line, tokn, wait_for
from tokn import instance, paths
from tokn.ports import accepts

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
pytestmark = pytest.mark.skipif(os.name == "nt", reason="tokn start is POSIX only")


@pytest.fixture(autouse=True)
def _no_tokn_left_running(tokn_home):
    yield
    kill_leftover()


def _config(fake: FakeLLM | None = None, **extra) -> tuple[int, int]:
    api, proxy = free_port(), free_port()
    data = {"server": {"port": api}, "proxy_mode": {"port": proxy}, **extra}
    if fake is not None:
        data["accounts"] = [account("acct", "openai-compatible", base_url=fake.url + "/v1")]
    write_config(data)
    return api, proxy


def _status() -> tuple[int, dict]:
    result = tokn("status", "--json")
    return result.returncode, json.loads(result.stdout)


def test_start_serves_reports_reloads_refuses_twins_and_stops(tokn_home):
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        api, proxy = _config(fake)
        started = tokn("start")
        assert started.returncode == 0, started.stderr
        # it returned once both ports accept connections, and says where they are
        assert accepts("127.0.0.1", api) and accepts("127.0.0.1", proxy)
        out = started.stdout
        assert f"http://127.0.0.1:{api}" in out and f"http://127.0.0.1:{proxy}" in out
        assert 'eval "$(tokn proxy env)"' in out
        assert str(tokn_home / "state" / "tokn.log") in out
        found = instance.running()
        assert found is not None and found.ready
        pid = found.pid
        assert (tokn_home / "state" / "tokn.pid").read_text().strip() == str(pid)
        for name in ("tokn.pid", "tokn.status.json", "tokn.log"):
            assert oct((tokn_home / "state" / name).stat().st_mode & 0o777) == "0o600"

        # it serves, detached from this test (its own session, not our child)
        assert os.getsid(pid) == pid
        resp = httpx.post(f"http://127.0.0.1:{api}/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200
        fake.fail_next(429, retry_after=300)
        resp = httpx.post(f"http://127.0.0.1:{api}/v1/chat/completions", json=CHAT)
        assert resp.status_code == 429
        assert len(wait_for_rows(2)) == 2

        # status: pid, uptime, version, URLs, accounts with health, the last hour
        code, st = _status()
        assert code == 0 and st["schema"] == 1
        assert st["running"] and st["ready"] and st["pid"] == pid
        assert st["version"] == st["cli_version"] and st["supervisor"] == "start"
        assert st["uptime_secs"] >= 0 and st["started"]["iso"].endswith("Z")
        assert st["listener"] == {"url": f"http://127.0.0.1:{api}", "host": "127.0.0.1",
                                  "port": api, "bind": "127.0.0.1", "accepting": True}
        assert st["proxy"]["port"] == proxy and st["proxy"]["accepting"]
        [acct] = st["accounts"]
        assert acct["id"] == "acct" and acct["health"] == "cooling_down"
        assert acct["until"]["epoch_s"] > time.time() + 200 and acct["failures"] == 1
        assert st["last_hour"]["requests"] == 2 and st["last_hour"]["errors"] == 1
        assert st["last_hour"]["input_tokens"] > 0
        assert st["log_file"] == str(tokn_home / "state" / "tokn.log")
        human = tokn("status")
        assert human.returncode == 0
        assert f"is running (pid {pid}, up " in human.stdout
        assert "started by `tokn start`" in human.stdout
        assert "cooling down until" in human.stdout
        assert "last hour: 2 requests, 1 error (50.0%)" in human.stdout

        # a second start, or serve on its ports: one line naming the fix
        line = one_line(tokn("start"))
        assert line.startswith(f"error: tokn is already running (pid {pid}, ")
        assert "`tokn status`" in line and "`tokn restart`" in line
        line = one_line(tokn("serve"))
        assert line.startswith(f"error: the listener cannot listen on 127.0.0.1:{api}: the port "
                               f"is in use: tokn is already running there (pid {pid})")
        assert "`tokn stop`" in line and "--port" in line
        line = one_line(tokn("serve", "--port", str(free_port()), "--with-proxy"))
        assert line.startswith(f"error: the proxy cannot listen on 127.0.0.1:{proxy}")
        assert "--proxy-port" in line

        # reload: SIGHUP; it keeps running and says what the reload did
        reloaded = tokn("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout == f"tokn reloaded (pid {pid}): no changes\n"
        os.kill(pid, signal.SIGHUP)  # as a closed terminal or `systemctl reload` would
        wait_for(lambda: _status()[1]["reload"]["count"] == 2, what="the second reload")
        assert instance.running().pid == pid
        assert httpx.post(f"http://127.0.0.1:{api}/v1/chat/completions",
                          json=CHAT).status_code in (200, 429, 503)

        # stop: exit 0 once stopped; the ports are closed and status says so
        stopped = tokn("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert f"tokn stopped (pid {pid})" in stopped.stdout
        assert instance.running() is None
        assert not accepts("127.0.0.1", api) and not accepts("127.0.0.1", proxy)
        code, st = _status()
        assert code == 3 and not st["running"] and st["pid"] is None
        assert not (tokn_home / "state" / "tokn.status.json").exists()
        again = tokn("stop")
        assert again.returncode == 0 and "tokn is not running" in again.stdout

    # the log is there without any config, with each request's served model / reason
    logs = tokn("logs", "-n", "100")
    assert logs.returncode == 0, logs.stderr
    text = logs.stdout
    assert f"started tokn {st['cli_version']} (pid {pid})" in text
    assert "openai-compatible/acct m1 -> m1 200" in text
    assert "openai-compatible/acct m1 -> - 429" in text and " reason: " in text
    assert text.count("reload requested (SIGHUP)") == 2
    assert f"stopped (pid {pid})" in text


def test_a_taken_port_fails_start_in_one_line_and_leaves_nothing_running():
    api, proxy = _config()
    for busy, door, flag in ((proxy, "proxy", "--proxy-port"), (api, "listener", "--port")):
        holder = socket.socket()
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        try:
            result = tokn("start")
        finally:
            holder.close()
        assert result.returncode == 1
        line = one_line(result)
        assert line.startswith(f"error: the {door} cannot listen on 127.0.0.1:{busy}: the port "
                               "is in use (by another program")
        assert line.endswith(f"choose another port with {flag}.")
        assert instance.holder() is None  # nothing left behind


def test_restart_keeps_the_ports_it_was_started_with_unless_told_otherwise():
    _config()
    api, proxy = free_port(), free_port()
    assert tokn("start", "--port", str(api), "--proxy-port", str(proxy)).returncode == 0
    first = instance.running().pid
    result = tokn("restart")
    assert result.returncode == 0, result.stderr
    second = instance.running()
    assert second.pid != first
    assert second.address("listener") == ("127.0.0.1", api)
    assert second.address("proxy") == ("127.0.0.1", proxy)
    assert f"tokn stopped (pid {first})" in result.stdout
    other = free_port()
    assert tokn("restart", "--port", str(other)).returncode == 0
    third = instance.running()
    assert third.address("listener") == ("127.0.0.1", other)
    assert third.address("proxy") == ("127.0.0.1", proxy)
    assert accepts("127.0.0.1", other) and not accepts("127.0.0.1", api)


def test_nothing_running(tokn_home):
    _config()
    stopped = tokn("stop")
    assert stopped.returncode == 0 and stopped.stdout == "tokn is not running.\n"
    assert "tokn is not running" in one_line(tokn("reload"))
    code, st = _status()
    assert code == 3 and st["running"] is False and st["listener"] is None
    human = tokn("status")
    assert human.returncode == 3
    assert f"tokn is not running (TOKN_HOME={tokn_home}): start it with `tokn start`." \
        in human.stdout
    result = tokn("restart")  # starts it
    assert result.returncode == 0 and "tokn was not running; starting it." in result.stdout
    assert instance.running() is not None


def test_a_killed_instance_leaves_stale_files_that_do_not_count(tokn_home):
    """The lock, not the pid, says whether tokn runs: a PID file left by a killed
    tokn, or naming a live process that is not tokn, is not a running tokn."""
    _config()
    assert tokn("start").returncode == 0
    pid = instance.running().pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: instance.holder() is None, what="the lock to go with the process")
    state = tokn_home / "state"
    assert (state / "tokn.status.json").exists()  # left behind, and ignored
    assert _status()[0] == 3
    (state / "tokn.pid").write_text(f"{os.getpid()}\n")  # a live pid that is not tokn
    assert instance.running() is None and _status()[0] == 3
    assert tokn("stop").stdout == "tokn is not running.\n"  # and signalled nobody
    result = tokn("start")
    assert result.returncode == 0, result.stderr
    assert instance.running().pid != pid


def test_two_homes_are_two_independent_instances(tmp_path):
    _config()
    other = dict(os.environ, TOKN_HOME=str(tmp_path / "second home"))
    subprocess.run([sys.executable, "-c", "from tests.helpers import free_port, write_config; "
                    "write_config({'server': {'port': free_port()}, 'proxy_mode': "
                    "{'port': free_port()}})"], env=other, check=True, timeout=60)
    try:
        assert tokn("start").returncode == 0
        assert tokn("start", env=other).returncode == 0
        mine, theirs = _status()[1], json.loads(tokn("status", "--json", env=other).stdout)
        assert mine["pid"] != theirs["pid"] and theirs["running"]
        assert mine["listener"]["port"] != theirs["listener"]["port"]
        assert tokn("stop").returncode == 0
        assert _status()[0] == 3
        assert tokn("status", env=other).returncode == 0  # the other one still runs
        assert tokn("stop", env=other).returncode == 0
    finally:
        kill_leftover(other)


def test_stop_lets_a_request_in_flight_finish():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"], chunk_delay=0.25) as fake:
        api, _ = _config(fake)
        assert tokn("start").returncode == 0
        got: dict = {}

        def stream() -> None:
            body = {**CHAT, "stream": True,
                    "messages": [{"role": "user", "content": "one two three four five six"}]}
            with httpx.stream("POST", f"http://127.0.0.1:{api}/v1/chat/completions", json=body,
                              timeout=60) as resp:
                got["status"] = resp.status_code
                got["text"] = "".join(resp.iter_text())

        thread = threading.Thread(target=stream)
        thread.start()
        wait_for(lambda: fake.requests_to("/v1/chat/completions"), what="the request upstream")
        started = time.monotonic()
        stopped = tokn("stop")
        thread.join(60)
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - started >= 1.0  # it waited for the stream (8 chunks x 0.25 s)
    assert got["status"] == 200 and "data: [DONE]" in got["text"]
    assert "six" in got["text"]


def test_a_terminal_s_serve_survives_sighup_and_shows_in_status():
    """SIGHUP (the terminal closed) used to kill `tokn serve`; now it is a reload
    request.  A foreground serve is the home's instance too: `tokn status`
    and `tokn stop` see it."""
    _config()
    with tokn_process(with_proxy=True) as proc:
        pid = proc.proc.pid
        wait_for(lambda: instance.running() and instance.running().ready, what="status")
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload requested (SIGHUP)" in proc.output(), what="the reload line")
        assert proc.proc.poll() is None
        assert httpx.get(proc.api_url + "/healthz").status_code == 200
        code, st = _status()
        assert code == 0 and st["pid"] == pid and st["supervisor"] == "foreground"
        assert "started by in a terminal (`tokn serve`)" in tokn("status").stdout
        assert tokn("stop").returncode == 0
        assert proc.proc.wait(30) == 0
    assert (paths.state_dir() / "tokn.pid").read_text() == ""


def test_proxy_env_follows_the_running_proxy():
    _, configured = _config()
    actual = free_port()
    assert tokn("start", "--proxy-port", str(actual)).returncode == 0
    env = tokn("proxy", "env", "--shell", "bash")
    assert f"export HTTPS_PROXY='http://127.0.0.1:{actual}'\n" in env.stdout
    assert env.returncode == 0 and env.stderr == ""
    asked = tokn("proxy", "env", "--shell", "fish", "--port", str(configured))
    assert f"set -gx HTTPS_PROXY 'http://127.0.0.1:{configured}'" in asked.stdout
    assert asked.stderr.splitlines() == [
        f"warning: nothing accepts connections on 127.0.0.1:{configured} (the running tokn's "
        f"proxy is on 127.0.0.1:{actual}); clients in this shell fail until something does."]
    assert tokn("stop").returncode == 0
    # nothing runs: the configured port, a warning on stderr, a block that still evaluates
    script = f'eval "$({sys.executable} -m tokn proxy env)" && echo "$HTTPS_PROXY"'
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           env=dict(os.environ, SHELL="/bin/bash"), timeout=60)
    assert shell.returncode == 0 and shell.stdout == f"http://127.0.0.1:{configured}\n"
    assert "(tokn is not running: start it with `tokn start`)" in shell.stderr
