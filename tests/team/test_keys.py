"""People's keys: stored hashed (0600), noticed by the running tokn at once,
resolved at both front doors; limits and their counters."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from tests.security.helpers import basic
from tokn import keys, limits, usage
from tokn.cli import app
from tokn.config import Config
from tokn.errors import ToknError
from tokn.identity import ADMIN, ANONYMOUS, Identity
from tokn.limits import Limiter, LocalCounters, model_allowed
from tokn.mitm.access import ConnState, authorize
from tokn.recorder import Recorder
from tokn.usage import UsageRow
from tokn.usage_query import query


def ring() -> keys.KeyRing:
    return keys.KeyRing(keys.default_path())


def later(r: keys.KeyRing) -> None:
    """Past the ring's re-check interval."""
    time.sleep(keys.RECHECK_SECS + 0.05)


def test_a_key_is_stored_hashed_in_a_private_file():
    key = keys.create("alice", rpm=5, models=("gpt-4o*",))
    assert key.startswith("tokn_") and len(key) >= 45
    path = keys.default_path()
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert key not in text and key[len("tokn_"):] not in text
    (record,) = json.loads(text)["keys"]
    assert record["digest"] == keys.digest(key) and record["rpm"] == 5
    person = ring().person(key)
    assert person == Identity("alice", admin=False, rpm=5, models=("gpt-4o*",),
                              digest=keys.digest(key))
    assert keys.create("bob") != keys.create("carol")  # fresh randomness each time


@pytest.mark.parametrize("name", ["Alice", "-x", "a:b", "a b", "", "x" * 41, "admin", "tokn",
                                  "switch", "anonymous", "proxy"])
def test_names_that_cannot_be_keys(name):
    with pytest.raises(ToknError):
        keys.create(name)


def test_a_name_is_taken_once():
    keys.create("alice")
    with pytest.raises(ToknError, match="exists already"):
        keys.create("alice")


def test_revoke_and_rotate_take_effect_in_a_running_ring():
    key = keys.create("alice")
    r = ring()
    assert r.person(key) is not None
    keys.revoke("alice")
    later(r)
    assert r.person(key) is None
    assert r.describe(key) == "key 'alice' (revoked)"
    new = keys.rotate("alice")
    later(r)
    assert r.person(key) is None and r.person(new).name == "alice"
    assert r.describe("tokn_nope") is None and r.describe(None) is None
    with pytest.raises(ToknError, match="no key named 'zed'"):
        keys.revoke("zed")


def test_an_identity_admitted_before_a_rotation_is_no_longer_current():
    key = keys.create("alice")
    r = ring()
    before = r.person(key)
    assert r.current(before) == before
    keys.rotate("alice")
    later(r)
    assert r.current(before) is None
    assert r.current(ADMIN) is ADMIN


def test_expired_keys_are_refused():
    key = keys.create("alice", expires=time.time() + 3600)
    r = ring()
    assert r.person(key) is not None
    r.clock = lambda: time.time() + 7200
    assert r.person(key) is None and r.describe(key) == "key 'alice' (expired)"


def test_who_is_calling():
    key = keys.create("alice")
    r = ring()
    assert r.identify("admin-k", "admin-k") is ADMIN
    assert r.identify("admin-k", key).name == "alice"
    assert r.identify("admin-k", "wrong") is None and r.identify("admin-k", None) is None
    assert r.identify("", None) is ANONYMOUS  # no admin key: loopback, everyone
    assert r.identify("", key).name == "alice"  # ...but a person is still named


def test_proxy_basic_user_is_the_key_name():
    key = keys.create("alice")
    other = keys.create("bob")
    r = ring()
    state = ConnState()
    assert not authorize("admin-k", r, state, basic(user="alice", password=other))
    assert authorize("admin-k", r, state, basic(user="alice", password=key))
    assert state.identity.name == "alice" and state.user is None
    switch = ConnState()  # a route mode as user, with a person's key: that mode
    assert authorize("admin-k", r, switch, basic(user="switch", password=key))
    assert switch.user == "switch" and switch.identity.name == "alice"
    keys.revoke("alice")
    later(r)
    assert not authorize("admin-k", r, state, None)  # the open connection is cut
    assert not state.authed


def test_a_broken_keys_file_keeps_the_last_good_view(caplog):
    key = keys.create("alice")
    r = ring()
    assert r.person(key) is not None
    keys.default_path().write_text("{not json")
    later(r)
    assert r.person(key) is not None
    assert "cannot read the keys file" in caplog.text


# --- limits ---------------------------------------------------------------------------

def test_model_globs():
    assert model_allowed("anything", ())
    assert model_allowed("gpt-4o-mini", ("gpt-4o*",))
    assert model_allowed("openai/GPT-4o", ("gpt-4o*",))  # a provider prefix, any case
    assert not model_allowed("claude-sonnet-4.5", ("gpt-4o*", "o3"))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counters_expire_and_survive_a_restart(tmp_path):
    clock = Clock(1_000_000.0)
    path = tmp_path / "state" / "limits.json"

    async def main() -> None:
        c = LocalCounters(path, clock)
        assert await c.add("a", 2, 1_000_060.0) == 2 and await c.add("a", 3, 1_000_060.0) == 5
        await c.add("b", 1, 1_000_010.0)
        c.close()
        assert path.stat().st_mode & 0o777 == 0o600
        again = LocalCounters(path, clock)
        assert await again.get("a") == 5 and await again.get("b") == 1
        clock.now += 30
        assert await again.get("b") == 0 and await again.get("a") == 5  # b expired, a not yet
        clock.now += 60
        assert await LocalCounters(path, clock).get("a") == 0
        path.write_text("garbage")
        assert await LocalCounters(path, clock).get("a") == 0  # from zero, not a crash

    asyncio.run(main())


def test_the_counters_file_is_written_once_for_a_burst(tmp_path):
    path = tmp_path / "state" / "limits.json"
    expires = time.time() + 3600

    async def main() -> None:
        c = LocalCounters(path, write_every=0.3)
        for _ in range(200):  # a burst of counted requests: no file I/O on their path
            await c.add("rpm:alice:1", 1, expires)
        assert c.writes == 0 and not path.exists()
        await asyncio.sleep(0.6)
        assert c.writes == 1  # one write for the whole burst, a moment later
        assert path.stat().st_mode & 0o777 == 0o600
        assert await LocalCounters(path).get("rpm:alice:1") == 200  # what a restart reads
        await c.add("rpm:alice:1", 5, expires)
        c.close()  # a graceful stop writes what is pending at once
        assert c.writes == 2
        c.close()  # nothing changed since: no write
        assert c.writes == 2

    asyncio.run(main())
    assert asyncio.run(LocalCounters(path).get("rpm:alice:1")) == 205


def test_requests_per_minute():
    clock = Clock(60 * 1000 + 15.0)  # 15 s into a minute
    limiter = Limiter(LocalCounters(None, clock), clock)
    alice = Identity("alice", rpm=2)

    async def main() -> None:
        assert await limiter.admit(alice, "m") is None and await limiter.admit(alice, "m") is None
        refused = await limiter.admit(alice, "m")
        assert refused.status == 429 and refused.retry_after == 45.0
        assert (await limiter.admit(alice, "m")).status == 429  # refusals do not count...
        clock.now += 45
        assert await limiter.admit(alice, "m") is None  # ...so the next minute starts fresh
        assert await limiter.admit(ADMIN, "m") is None
        assert await limiter.admit(Identity("bob"), "m") is None

    asyncio.run(main())


def test_tokens_per_day_and_model_globs():
    clock = Clock(time.time())
    limiter = Limiter(LocalCounters(None, clock), clock)
    bob = Identity("bob", tokens_per_day=100, models=("gpt-*",))

    async def main() -> None:
        refused = await limiter.admit(bob, "claude-x")
        assert refused.status == 403 and "gpt-*" in refused.message
        assert await limiter.admit(bob, "gpt-4o") is None
        limiter.spend("bob", 60)
        assert await limiter.admit(bob, "gpt-4o") is None
        limiter.spend("bob", 60)
        # not applied yet (no background task here), and still counted by admit
        assert await limiter.counters.get(f"tpd:bob:{limits.day_window(clock.now)[0]}") == 0
        refused = await limiter.admit(bob, "gpt-4o")
        assert refused.status == 429 and refused.code == "tokens_per_day_exceeded"
        await limiter.flush()
        assert not limiter.pending and await limiter.tokens_today("bob") == 120
        refused = await limiter.admit(bob, "gpt-4o")
        assert refused.status == 429 and "(120 so far)" in refused.message
        _, midnight = limits.day_window(clock.now)
        assert refused.retry_after == pytest.approx(midnight - clock.now)
        clock.now = midnight + 1
        assert await limiter.admit(bob, "gpt-4o") is None
        limiter.spend("admin", 10**9)  # not a person: nothing counted
        limiter.spend("anonymous", 10**9)
        assert await limiter.tokens_today("admin") == 0 and not limiter.pending

    asyncio.run(main())


def test_spent_tokens_are_applied_in_the_background_and_on_close(tmp_path):
    path = tmp_path / "limits.json"
    counter = f"tpd:bob:{limits.day_window(time.time())[0]}"

    async def main() -> None:
        limiter = Limiter(LocalCounters(path))
        limiter.start()
        limiter.spend("bob", 7)  # returns at once: the task applies it just after
        assert limiter.pending and await limiter.counters.get(counter) == 0
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not limiter.pending:
                break
        assert await limiter.counters.get(counter) == 7
        limiter.spend("bob", 5)  # queued when the process stops gracefully...
        await limiter.aclose()  # ...counted and written, not lost
        assert not limiter.pending

    asyncio.run(main())
    assert asyncio.run(LocalCounters(path).get(counter)) == 12


def test_the_recorder_spends_a_persons_tokens_but_not_passthrough():
    clock = Clock(time.time())
    limiter = Limiter(LocalCounters(None, clock), clock)
    recorder = Recorder(None, Config, limiter)
    for mode in ("route", "switch", "passthrough"):
        recorder.record(UsageRow(key_name="bob", route_mode=mode, input_tokens=3,
                                 output_tokens=4, status=200))
    assert asyncio.run(limiter.tokens_today("bob")) == 14


# --- the usage store ---------------------------------------------------------------------

def test_an_older_store_gets_the_key_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(usage.MIGRATIONS[0])
    conn.execute("INSERT INTO requests (ts, status) VALUES (1.0, 200)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    conn = usage.connect(path)
    conn.execute("INSERT INTO requests (ts, status, key_name) VALUES (2.0, 200, 'alice')")
    report = query(conn, by="key")
    assert {g.key: g.totals.requests for g in report.groups} == {"alice": 1, "-": 1}
    assert query(conn, key="alice").totals.requests == 1
    conn.close()


# --- the CLI -------------------------------------------------------------------------------

def test_keys_cli_errors_are_one_line():
    runner = CliRunner()
    res = runner.invoke(app, ["keys", "create", "Bad Name"])
    assert res.exit_code == 1 and "lowercase letters" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["keys", "create", "x", "--rpm", "0"])
    assert res.exit_code == 2 and "--rpm must be at least 1" in res.output
    res = runner.invoke(app, ["keys", "create", "x", "--expires", "yesterday"])
    assert res.exit_code == 2 and "--expires" in res.output
    res = runner.invoke(app, ["keys", "create", "x", "--expires", "2001-01-01"])
    assert res.exit_code == 2 and "in the past" in res.output
    res = runner.invoke(app, ["keys", "revoke", "nobody"])
    assert res.exit_code == 1 and "no key named 'nobody'" in res.output
    assert not keys.default_path().exists() or keys.read(keys.default_path()) == []


def test_keys_cli_create_list_rotate():
    runner = CliRunner()
    assert "No keys yet" in runner.invoke(app, ["keys", "list"]).output
    res = runner.invoke(app, ["keys", "create", "alice", "--tokens-per-day", "5000",
                              "--models", "gpt-4o*,o3", "--expires", "30d"])
    assert res.exit_code == 0, res.output
    key = res.stdout.splitlines()[0]
    assert "shown this once" in res.stderr and key in res.stderr  # with their setup line
    table = runner.invoke(app, ["keys", "list"], env={"COLUMNS": "200"}).output
    assert "alice" in table and "5,000" in table and "gpt-4o*,o3" in table
    assert key not in table
    rotated = runner.invoke(app, ["keys", "rotate", "alice"]).stdout.splitlines()[0]
    assert rotated != key and ring().person(rotated).name == "alice"
    (row,) = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)["keys"]
    assert row["expires"]["epoch_s"] > time.time() + 29 * 86400
    assert row["tokens_today"] == 0 and row["last_used"] is None
