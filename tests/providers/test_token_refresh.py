"""The one token-refresh mechanism (tokn.auth.tokens.Refresher): single flight,
"refresh only if still the failed token", forced refreshes collapsed, a soft
fallback, a store shared by rebuilt providers, and the cross-process lock a
single-use Kiro refresh token needs (two real processes against FakeKiro)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.fakes.kiro import FakeKiro
from tests.helpers import account, write_config
from tokn import paths, state
from tokn.auth.tokens import LocalTokens, Refresher, Token, bearer_of
from tokn.errors import ToknError


class Source:
    """A TokenSource whose upstream hands out tok-1, tok-2... (optionally slowly)."""

    def __init__(self, *, ttl: float = 3600, delay: float = 0.0, fail: bool = False) -> None:
        self.ttl = ttl
        self.delay = delay
        self.fail = fail
        self.fetches = 0
        self.saved: list[str] = []

    async def fetch_token(self, current: Token | None) -> Token:
        self.fetches += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ToknError("upstream refused", status=502)
        now = time.time()
        return Token(f"tok-{self.fetches}", now + self.ttl, now + self.ttl - 300)

    def token_from_record(self, record: dict[str, Any] | None) -> Token | None:
        if not record:
            return None
        return Token(record["access"], record["expires_at"], record["refresh_at"],
                     owner=record.get("owner", ""))

    def token_record(self, token: Token) -> dict[str, Any]:
        return {"access": token.access, "expires_at": token.expires_at,
                "refresh_at": token.refresh_at, "owner": token.owner}

    def token_saved(self, token: Token) -> None:
        self.saved.append(token.access)


def refresher(source: Source, store: LocalTokens | None = None, **kw: Any) -> Refresher:
    return Refresher("test-tokens", "acc", source, store=store or LocalTokens(), **kw)


def test_fifty_waiters_one_fetch_and_a_fresh_token_is_served_without_io():
    source = Source(delay=0.1)

    async def go():
        r = refresher(source)
        tokens = await asyncio.gather(*(r.token() for _ in range(50)))
        again = await r.token()
        return tokens, again

    tokens, again = asyncio.run(go())
    assert {t.access for t in tokens} == {"tok-1"} and again.access == "tok-1"
    assert source.fetches == 1 and source.saved == ["tok-1"]
    assert state.read("test-tokens")["acc"]["access"] == "tok-1"   # persisted, 0600 file


def test_a_rejected_token_is_refreshed_once_however_many_saw_it_fail():
    source = Source(delay=0.05)

    async def go():
        r = refresher(source)
        first = await r.token()
        # twenty requests had sent tok-1 and were all rejected
        after = await asyncio.gather(*(r.token(failed=first.access) for _ in range(20)))
        # a late rejection of the old token does not refresh again
        late = await r.token(failed=first.access)
        return after, late

    after, late = asyncio.run(go())
    assert {t.access for t in after} == {"tok-2"} and late.access == "tok-2"
    assert source.fetches == 2


def test_a_token_replaced_elsewhere_within_the_same_second_is_taken_up_not_renewed_again():
    """Upstreams give expiry in whole seconds: another process's replacement of a
    rejected token can carry the same expiry as the one it replaced."""
    source = Source()
    expiry = float(int(time.time()) + 1800)

    async def fixed_expiry(current: Token | None) -> Token:
        source.fetches += 1
        return Token(f"tok-{source.fetches}", expiry, expiry - 300)

    source.fetch_token = fixed_expiry   # type: ignore[method-assign]

    async def go():
        a, b = refresher(source, LocalTokens()), refresher(source, LocalTokens())
        first = await a.token()
        assert (await b.token()).access == first.access      # B read A's token
        replaced = await a.token(failed=first.access)         # A's request was rejected
        return replaced, await b.token(failed=first.access)   # so was B's, a moment later

    replaced, seen_by_b = asyncio.run(go())
    assert replaced.access == "tok-2" and seen_by_b.access == "tok-2"
    assert source.fetches == 2


def test_forced_refreshes_that_waited_for_one_collapse_into_it():
    source = Source(delay=0.05)

    async def go():
        r = refresher(source)
        await r.token()
        await asyncio.gather(*(r.token(refresh=True) for _ in range(10)))

    asyncio.run(go())
    assert source.fetches == 2


def test_renewal_ahead_of_expiry_that_fails_keeps_the_valid_token():
    source = Source(ttl=200)   # refresh_at is already past: every call wants a renewal

    async def go():
        r = refresher(source)
        first = await r.token()
        source.fail = True
        kept = await r.token()                       # soft: still valid for ~200 s
        with pytest.raises(ToknError, match="refused"):
            await r.token(failed=first.access)       # rejected upstream: no fallback
        return first, kept

    first, kept = asyncio.run(go())
    assert kept.access == first.access


def test_a_rebuilt_provider_keeps_the_token_unless_its_credential_changed():
    store = LocalTokens()
    source = Source()

    async def go():
        a = await refresher(source, store, owner="gh-1").token()
        b = await refresher(Source(), store, owner="gh-1").token()     # rebuilt: same account
        c = await refresher(source, store, owner="gh-2").token()       # a new GitHub token
        return a, b, c

    a, b, c = asyncio.run(go())
    assert a.access == b.access == "tok-1"
    assert c.access == "tok-2" and source.fetches == 2


def test_a_waiter_cancelled_on_the_file_lock_releases_it_when_acquired():
    """The cross-process lock is taken in a thread; a request cancelled while it
    waits (client gone, timeout) must not leave the lock held forever."""
    store = LocalTokens()
    lock = paths.state_dir() / "test-tokens.acc.refresh"

    async def go():
        with paths.locked(lock):                      # "another process" holds it
            waiter = asyncio.ensure_future(refresher(Source(), store, single_use=True).token())
            await asyncio.sleep(0.2)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        await asyncio.sleep(0.3)                      # the thread gets it, then lets go
        return await asyncio.wait_for(
            refresher(Source(), store, single_use=True).token(), 10)

    assert asyncio.run(go()).access == "tok-1"


def test_bearer_of():
    assert bearer_of({"authorization": "Bearer abc"}) == "abc"
    assert bearer_of({"authorization": "token abc"}) is None
    assert bearer_of({}) is None


# --- two real processes, one single-use Kiro refresh token ---------------------------------

CHILD = """
import asyncio, json, pathlib, sys, time

import httpx

from tokn import config
from tokn.providers.kiro.provider import KiroProvider

ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])


async def main():
    async with httpx.AsyncClient(timeout=30) as client:
        provider = KiroProvider(config.load_config().accounts[0], client)
        ready.touch()
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        up = await provider.send("chat", {"model": "claude-sonnet-4.5", "messages": [
            {"role": "user", "content": "hi"}]}, {}, stream=False)
        body = await up.read()
        print(json.dumps({"status": up.status, "refreshes": provider.refresh_count,
                          "body": body.decode()[:300]}))


asyncio.run(main())
"""


@pytest.mark.parametrize("idc", [False, True], ids=["social", "idc"])
def test_two_processes_refreshing_at_once_rotate_the_token_exactly_once(tmp_path, idc):
    """Both processes find the access token expired at the same moment.  The
    refresh token is single-use: had both refreshed, the second would be
    refused (401, the account locked out until a new sign-in).  One refreshes;
    the other waits on the account's lock, re-reads the stored token and uses
    the rotated one."""
    with FakeKiro(refresh_delay=1.0) as kiro:
        fields = {"base_url": kiro.url, "access_token": "aoa-initial",
                  "refresh_token": "aor-initial", "expires_at": "2000-01-01T00:00:00Z"}
        if idc:
            fields.update(auth_method="idc", client_id=kiro.client_id,
                          client_secret=kiro.client_secret, refresh_url=kiro.url + "/token")
        else:
            fields.update(auth_method="social", refresh_url=kiro.url + "/refreshToken",
                          profile_arn=kiro.profile_arn)
        write_config({"accounts": [account("kiro", "kiro", **fields)]})
        go = tmp_path / "go"
        procs, outs = [], []
        for n in range(2):
            out = (tmp_path / f"out-{n}.txt").open("w+")
            outs.append(out)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CHILD, str(tmp_path / f"ready-{n}"), str(go)],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)))
        try:
            deadline = time.monotonic() + 60
            while not all((tmp_path / f"ready-{n}").exists() for n in range(2)):
                assert time.monotonic() < deadline, "children did not start"
                assert all(p.poll() is None for p in procs), [Path(o.name).read_text()
                                                              for o in outs]
                time.sleep(0.01)
            go.touch()
            codes = [p.wait(60) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        texts = [Path(o.name).read_text() for o in outs]
        for out in outs:
            out.close()
        assert codes == [0, 0], texts
        results = [__import__("json").loads(t.strip().splitlines()[-1]) for t in texts]
        assert [r["status"] for r in results] == [200, 200], texts
        assert sorted(r["refreshes"] for r in results) == [0, 1]
        assert [b["refreshToken"] for b in kiro.refresh_bodies] == ["aor-initial"]
        bearers = {r.bearer() for r in kiro.requests_to("/generateAssistantResponse")}
        assert bearers == {"aoa-1"}
    saved = tomlkit.parse(paths.config_file().read_text()).unwrap()["accounts"][0]
    assert saved["refresh_token"] == "aor-1"                  # the live one, in the file
    assert state.read("kiro-tokens")["kiro"]["refresh_token"] == "aor-1"
