"""Config (and state) writes from several processes merge: none is lost, and the
server's own save of a rotated Kiro refresh token survives concurrent CLI edits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import httpx
import tomlkit

from tests.fakes.kiro import FakeKiro
from tests.helpers import account, tokn_process, write_config
from tokn import paths, state


def _config_set(key: str, value: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tokn", "config", "set", key, value],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def _saved() -> dict:
    return tomlkit.parse(paths.config_file().read_text()).unwrap()


def test_twenty_concurrent_config_sets_keep_all_twenty_values():
    write_config({"server": {"port": 4141}})
    procs = [_config_set(f"models.aliases.alias{i}", f"model-{i}") for i in range(20)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    aliases = _saved()["models"]["aliases"]
    assert aliases == {f"alias{i}": f"model-{i}" for i in range(20)}
    assert _saved()["server"] == {"port": 4141}
    assert oct(paths.config_file().stat().st_mode & 0o777) == "0o600"


def test_concurrent_state_updates_from_threads_and_processes_keep_every_key():
    code = ("import sys; from tokn import state; "
            "[state.update('health', f'p{sys.argv[1]}-{i}', {'n': i}) for i in range(10)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], env=dict(os.environ))
             for n in range(4)]
    threads = [threading.Thread(target=lambda n=n: [state.update("health", f"t{n}-{i}", {"n": i})
                                                     for i in range(10)]) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(p.wait(120) == 0 for p in procs)
    saved = state.read("health")
    assert len(saved) == 80
    assert saved["p3-9"] == {"n": 9} and saved["t0-0"] == {"n": 0}


def test_rotated_kiro_refresh_token_survives_concurrent_cli_writes():
    # every request refreshes (a 60 s token is inside the 300 s refresh margin),
    # and every refresh rotates the single-use refresh token
    with FakeKiro(expires_in=60) as kiro:
        write_config({"accounts": [account(
            "kiro", "kiro", base_url=kiro.url, refresh_url=kiro.url + "/refreshToken",
            auth_method="social", access_token="aoa-initial", refresh_token="aor-initial",
            expires_at="2000-01-01T00:00:00Z", profile_arn=kiro.profile_arn)]})
        body = {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}]}
        with tokn_process() as tokn:
            failures: list[str] = []

            def ask() -> None:
                for _ in range(12):
                    resp = httpx.post(tokn.api_url + "/v1/chat/completions", json=body,
                                      timeout=60)
                    if resp.status_code != 200:
                        failures.append(resp.text)

            asker = threading.Thread(target=ask)
            asker.start()
            outputs = []
            for i in range(12):  # a user editing the config meanwhile
                proc = _config_set(f"models.aliases.k{i}", f"v{i}")
                outputs.append(proc.communicate(timeout=60)[0].decode())
                assert proc.returncode == 0, outputs[-1]
            asker.join(120)
            assert failures == []
        saved = _saved()
        assert len(kiro.refresh_bodies) >= 12
        # the config holds the refresh token that is live upstream (not an older one)
        assert saved["accounts"][0]["refresh_token"] in kiro.refresh_tokens
        assert saved["models"]["aliases"] == {f"k{i}": f"v{i}" for i in range(12)}
