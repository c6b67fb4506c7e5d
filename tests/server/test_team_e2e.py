"""Team mode end to end: three people's keys (alice, bob, carol; carol revoked
mid-test) and the admin key, through both front doors with the official
OpenAI and Anthropic SDKs, against a loopback fake upstream.

Checked: attribution in usage rows, requests-per-minute and tokens-per-day
limits hit (429 with Retry-After, in the caller's format) and recovered,
model globs (403 naming the allowed ones), revocation within a second (also
on a proxy connection already open), counters surviving a restart, what a
person's key may not do, and no key in clear in the config, the keys file,
the counters, the logs, the usage database or a script served to anyone but
its owner.
"""

from __future__ import annotations

import json
import logging
import signal
import ssl
import time
from pathlib import Path
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, tokn_process, usage_rows, write_config
from tokn import limits, paths
from tokn.ca import ensure_ca
from tokn.cli import app

ADMIN = "admin-key-for-the-team-test-0123"


class Clock:
    """The limiter's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def create(name: str, *options: str) -> str:
    key = cli("keys", "create", name, *options).strip().splitlines()[0]
    assert key.startswith("tokn_") and len(key) >= 40
    return key


def proxy_url(tokn, user: str, key: str) -> str:
    return tokn.proxy_url.replace("://", f"://{quote(user)}:{quote(key, safe='')}@")


def ca_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ensure_ca().cert_path))


def oai_listener(tokn, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=tokn.api_url + "/v1", api_key=key, max_retries=0)


def oai_proxy(tokn, user: str, key: str) -> openai.OpenAI:
    # the person's own key goes to the proxy; the SDK's api_key never leaves it
    return openai.OpenAI(api_key="sk-unused", max_retries=0, http_client=openai.DefaultHttpxClient(
        proxy=proxy_url(tokn, user, key), verify=ca_context()))


def ant_listener(tokn, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=tokn.api_url, api_key=key, max_retries=0)


def ant_proxy(tokn, user: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-unused", max_retries=0,
                               http_client=anthropic.DefaultHttpxClient(
                                   proxy=proxy_url(tokn, user, key), verify=ca_context()))


def chat(client: openai.OpenAI, model: str = "gpt-4o-mini", text: str = "hi") -> str:
    resp = client.chat.completions.create(model=model,
                                          messages=[{"role": "user", "content": text}])
    return resp.choices[0].message.content


def message(client: anthropic.Anthropic, model: str = "gpt-4o-mini", text: str = "hi") -> str:
    resp = client.messages.create(model=model, max_tokens=50,
                                  messages=[{"role": "user", "content": text}])
    return resp.content[0].text


@pytest.fixture
def team(tokn_home):
    """The fake upstream, the config (admin key) and three people's keys."""
    with FakeLLM(formats={"chat"}, path_prefix="/v1",
                 models=["gpt-4o-mini", "gpt-4o", "claude-sonnet-4.5"]) as fake:
        write_config({"server": {"api_key": ADMIN},
                      "accounts": [account("pool", "openai-compatible",
                                           base_url=fake.url + "/v1", api_key="sk-upstream")]})
        keys = {"alice": create("alice", "--rpm", "3", "--models", "gpt-4o*"),
                "bob": create("bob", "--tokens-per-day", "40"),
                "carol": create("carol")}
        log = tokn_home / "team-test.log"
        handler = logging.FileHandler(log)
        handler.setLevel(logging.DEBUG)
        # every logger: tokn's may not propagate once its logging was set up
        loggers = [logging.getLogger(), logging.getLogger("tokn")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.DEBUG)
            lg.addHandler(handler)
        try:
            yield fake, keys, log
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.removeHandler(handler)
                lg.setLevel(level)
            handler.close()


def test_three_keys_through_both_doors(team, tokn_home):
    fake, keys, log = team
    clock = Clock()
    with running_tokn(with_proxy=True, api_key=ADMIN) as tokn:
        tokn.runtime.limiter.clock = clock
        # --- alice: 3 requests a minute, gpt-4o* only, both doors, both SDKs -------------
        # pin the clock to the start of a minute so the three fit in one window
        clock.offset = 60 - time.time() % 60 + 1
        assert chat(oai_listener(tokn, keys["alice"]), text="a1") == "echo: a1"
        assert chat(oai_proxy(tokn, "alice", keys["alice"]), text="a2") == "echo: a2"
        assert message(ant_proxy(tokn, "alice", keys["alice"]), text="a3") == "echo: a3"
        with pytest.raises(openai.RateLimitError) as err:  # 4th: 429 in OpenAI's format
            chat(oai_proxy(tokn, "alice", keys["alice"]), text="a4")
        retry = int(err.value.response.headers["retry-after"])
        assert 1 <= retry <= 60
        assert "3 request(s) per minute" in err.value.message
        assert err.value.body["code"] == "rate_limit_exceeded"
        with pytest.raises(anthropic.RateLimitError) as aerr:  # and in Anthropic's
            message(ant_listener(tokn, keys["alice"]), text="a5")
        assert aerr.value.body["error"]["type"] == "rate_limit_error"
        assert int(aerr.value.response.headers["retry-after"]) >= 1
        clock.offset += retry  # the next minute: recovered
        assert chat(oai_listener(tokn, keys["alice"]), text="a6") == "echo: a6"
        # a model outside her globs: 403 naming the allowed ones, through both doors
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            message(ant_listener(tokn, keys["alice"]), model="claude-sonnet-4.5")
        assert "gpt-4o*" in denied.value.message and "claude-sonnet-4.5" in denied.value.message
        with pytest.raises(openai.PermissionDeniedError) as denied2:
            chat(oai_proxy(tokn, "alice", keys["alice"]), model="claude-sonnet-4.5")
        assert "gpt-4o*" in denied2.value.message
        # her model list shows only what she may use
        listed = {m.id for m in oai_listener(tokn, keys["alice"]).models.list()}
        assert listed == {"gpt-4o-mini", "gpt-4o"}

        # --- bob: 40 tokens a day, through the proxy with the Anthropic SDK ---------------
        bob = ant_proxy(tokn, "bob", keys["bob"])
        sent = 0
        with pytest.raises(anthropic.RateLimitError) as berr:
            for i in range(40):
                message(bob, model="claude-sonnet-4.5", text=f"bob says {i} words here")
                sent += 1
        assert sent >= 1
        spent = sum(r["input_tokens"] + r["output_tokens"] for r in _rows(tokn)
                    if r["key_name"] == "bob" and r["status"] == 200)
        assert spent >= 40  # refused only once the day's tokens were used up
        assert "40 tokens for today" in berr.value.message
        until_midnight = int(berr.value.response.headers["retry-after"])
        assert 1 <= until_midnight <= 25 * 3600
        with pytest.raises(openai.RateLimitError):  # the other door, the other SDK: same day
            chat(oai_listener(tokn, keys["bob"]))

        # --- carol: works through both doors, then is revoked mid-test -----------------
        carol_proxy = oai_proxy(tokn, "carol", keys["carol"])  # one connection, kept open
        assert chat(carol_proxy, text="c1") == "echo: c1"
        assert chat(oai_listener(tokn, keys["carol"]), text="c2") == "echo: c2"
        cli("keys", "revoke", "carol")
        revoked_at = time.monotonic()
        listener = oai_listener(tokn, keys["carol"])

        def refused(door: str) -> bool:
            try:
                chat(listener if door == "listener" else carol_proxy, text="again")
            except openai.AuthenticationError:  # the listener: 401
                return door == "listener"
            except openai.APIStatusError as exc:  # her open proxy connection: 407
                return door == "proxy" and exc.status_code == 407
            return False

        # every request sent a second or more after the revocation is refused (one
        # sent before may still pass: the ring re-reads the file every 0.2 s)
        refused_after: dict[str, float] = {}
        while len(refused_after) < 2:
            for door in ("listener", "proxy"):
                if door in refused_after:
                    continue
                sent = time.monotonic() - revoked_at
                if refused(door):
                    refused_after[door] = sent
                else:
                    assert sent < 1.0, f"{door}: carol's request sent {sent:.2f} s after " \
                        "the revocation went through"
        with pytest.raises(openai.APIConnectionError):  # a new connection: refused too
            chat(oai_proxy(tokn, "carol", keys["carol"]))

        # --- what a person's key may not do; the admin key may ----------------------------
        alice_h = {"authorization": f"Bearer {keys['alice']}"}
        admin_h = {"authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=tokn.api_url, timeout=30) as http:
            mine = http.get("/v1/usage", headers=alice_h, params={"by": "key"}).json()
            assert [g["key"] for g in mine["groups"]] == ["alice"]
            assert http.get("/v1/usage", headers=alice_h,
                            params={"key": "bob"}).status_code == 403
            gone = http.delete("/v1/usage", headers=alice_h, params={"confirm": "true"})
            assert gone.status_code == 403 and "admin key" in gone.json()["error"]["message"]
            # the dashboard is the admin's: a person's key is sent to its login page
            page = http.get("/ui/", headers=alice_h, follow_redirects=False)
            assert page.status_code in (302, 303) and "/ui/login" in page.headers["location"]
            assert http.get("/ui/", headers=admin_h).status_code == 200
            # ...where the usage page breaks usage down per key
            usage_page = http.get("/ui/usage", headers=admin_h, params={"since": "1d"}).text
            per_key = usage_page[usage_page.index('id="by-key"'):]
            assert "<td>alice</td>" in per_key and "<td>bob</td>" in per_key
            everyone = http.get("/v1/usage", headers=admin_h, params={"by": "key"}).json()
            counts = {g["key"]: g["requests"] for g in everyone["groups"]}
            bobs = http.get("/v1/usage", headers=admin_h, params={"key": "bob"}).json()
            assert bobs["totals"]["requests"] == counts["bob"]
            scripts = {who: http.get("/-/lan/env", params={"shell": "bash"}, headers={
                "authorization": f"Bearer {key}"}) for who, key in
                [("alice", keys["alice"]), ("bob", keys["bob"])]}
            assert scripts["alice"].status_code == scripts["bob"].status_code == 200
            admin_script = http.get("/-/lan/env", headers=admin_h).text

    # --- attribution: every row names its caller, the doors it came through ---------------
    rows = usage_rows()
    by_key: dict[str, set[str]] = {}
    for row in rows:
        by_key.setdefault(row["key_name"], set()).add(row["front_door"])
    assert by_key["alice"] == {"listener", "proxy"} and by_key["carol"] == {"listener", "proxy"}
    assert "proxy" in by_key["bob"] and "listener" in by_key["bob"]
    assert counts["alice"] == sum(r["key_name"] == "alice" for r in rows)
    statuses = {(r["key_name"], r["status"]) for r in rows}
    assert {("alice", 429), ("alice", 403), ("bob", 429)} <= statuses
    assert not any(r["key_name"] == "carol" and r["status"] != 200 for r in rows)  # 401: logged

    # --- the CLI: usage by key, keys list ------------------------------------------------
    report = json.loads(cli("usage", "--by", "key", "--json"))
    assert {g["key"]: g["requests"] for g in report["groups"]} == counts
    listing = {k["name"]: k for k in json.loads(cli("keys", "list", "--json"))["keys"]}
    assert listing["carol"]["state"] == "revoked" and listing["alice"]["state"] == "active"
    assert listing["alice"]["rpm"] == 3 and listing["alice"]["models"] == ["gpt-4o*"]
    assert listing["bob"]["tokens_per_day"] == 40 and listing["bob"]["tokens_today"] >= 40
    assert listing["alice"]["last_used"] is not None

    # --- no key in clear anywhere but its owner's script ----------------------------------
    assert keys["alice"] in scripts["alice"].text and keys["bob"] in scripts["bob"].text
    assert f"alice:{quote(keys['alice'], safe='')}@" in scripts["alice"].text
    for who, script in scripts.items():
        for other, key in keys.items():
            if other != who:
                assert key not in script.text
        assert ADMIN not in script.text
    for key in keys.values():
        assert key not in admin_script
    log_text = log.read_text()
    assert "refused POST /v1/chat/completions" in log_text  # the listener's line
    assert "401 no valid API key (key 'carol' (revoked))" in log_text
    assert "407 user 'carol' with key 'carol' (revoked)" in log_text  # the proxy's
    assert "407 key 'carol' is no longer valid" in log_text  # her open connection, cut
    secrets_ = [*keys.values(), *(quote(k, safe="") for k in keys.values())]
    for path in _files(tokn_home):
        data = path.read_bytes()
        for key in secrets_:
            assert key.encode() not in data, f"a key in clear in {path}"
    keys_file = paths.config_dir() / "keys.json"
    assert keys_file.stat().st_mode & 0o777 == 0o600


def test_counters_survive_a_restart_and_the_day_recovers(team):
    fake, keys, _ = team
    clock = Clock()
    with running_tokn(api_key=ADMIN) as tokn:
        tokn.runtime.limiter.clock = clock
        with pytest.raises(openai.RateLimitError):
            for _ in range(40):
                chat(oai_listener(tokn, keys["bob"]), text="many words to use up the day")
    with running_tokn(api_key=ADMIN) as tokn:  # a new process' worth of state
        tokn.runtime.limiter.clock = clock
        with pytest.raises(openai.RateLimitError) as err:
            chat(oai_listener(tokn, keys["bob"]))
        assert "tokens for today" in err.value.message
        # the next day (the limiter's clock past midnight): recovered
        clock.offset += int(err.value.response.headers["retry-after"]) + 1
        assert chat(oai_listener(tokn, keys["bob"]), text="new day") == "echo: new day"


def turn(ws, model: str, text: str) -> list[dict]:
    """One Responses ``response.create`` over a WebSocket: its events until the
    response completed or failed, or an error."""
    ws.send(json.dumps({"type": "response.create", "model": model, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}))
    events = []
    while True:
        events.append(json.loads(ws.recv(timeout=30)))
        if events[-1]["type"] in ("response.completed", "response.failed", "error"):
            return events


def said(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def test_a_persons_limits_hold_on_the_responses_websocket(team):
    from websockets.sync.client import connect

    dave = create("dave", "--rpm", "2", "--models", "gpt-4o*")
    erin = create("erin", "--tokens-per-day", "30")
    clock = Clock()
    with running_tokn(api_key=ADMIN) as tokn:
        tokn.runtime.limiter.clock = clock
        clock.offset = 60 - time.time() % 60 + 1  # the start of a minute
        url = tokn.api_url.replace("http://", "ws://") + "/v1/responses"

        def socket(key: str):
            return connect(url, proxy=None, additional_headers={"authorization": f"Bearer {key}"})

        with socket(dave) as ws:  # one connection, many requests: each one admitted
            assert said(turn(ws, "gpt-4o", "d1")) == "echo: d1"
            assert said(turn(ws, "gpt-4o", "d2")) == "echo: d2"
            over = turn(ws, "gpt-4o", "d3")
            assert [(e["type"], e["status"], e["error"]["code"]) for e in over] == [
                ("error", 429, "rate_limit_exceeded")]
            assert "2 request(s) per minute" in over[0]["error"]["message"]
            denied = turn(ws, "claude-sonnet-4.5", "d4")
            assert [(e["status"], e["error"]["code"]) for e in denied] == [
                (403, "model_not_allowed")]
            assert "gpt-4o*" in denied[0]["error"]["message"]
            clock.offset += 60  # the next minute, on the same connection
            assert said(turn(ws, "gpt-4o", "d5")) == "echo: d5"
        with socket(erin) as ws:
            for i in range(30):
                events = turn(ws, "gpt-4o", f"erin says {i} words here")
                if events[-1]["type"] == "error":
                    break
            assert 1 <= i < 30
            assert (events[-1]["status"], events[-1]["error"]["code"]) == (
                429, "tokens_per_day_exceeded")
            assert "30 tokens for today" in events[-1]["error"]["message"]
        rows = [r for r in _rows(tokn) if r["key_name"] == "erin" and r["status"] == 200]
        spent = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
        assert len(rows) == i and spent >= 30  # refused once her day was used up
        assert tokn.call(tokn.runtime.limiter.tokens_today("erin")) == spent
    # upstream: dave's three admitted requests and erin's; nothing refused went there
    sent = team[0].requests_to("/chat/completions", "POST")
    assert [r.json["model"] for r in sent] == ["gpt-4o"] * (3 + i)


def test_tokn_stop_keeps_every_count_and_a_kill_loses_at_most_the_last_second(team):
    fake, _, _ = team
    frank = create("frank", "--tokens-per-day", "1000000000")
    counter = f"tpd:frank:{limits.day_window(time.time())[0]}"

    def ask(tokn, text: str) -> None:
        resp = httpx.post(f"{tokn.api_url}/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {frank}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user",
                                                                 "content": text}]})
        assert resp.status_code == 200, resp.text

    def saved() -> int:
        return json.loads(limits.default_path().read_text())[counter][0]

    with tokn_process() as tokn:
        for i in range(3):
            ask(tokn, f"before a stop {i}")
        assert tokn.stop(signal.SIGTERM) == 0  # `tokn stop` at once: nothing left behind
    counted = fake.reported_usage["total_tokens"]
    assert counted > 0 and saved() == counted
    with tokn_process() as tokn:
        ask(tokn, "after the restart")
        time.sleep(limits.WRITE_EVERY_SECS + 0.5)  # the file is at most a second behind...
        tokn.stop(signal.SIGKILL)  # ...so a crash now loses nothing
    assert saved() == fake.reported_usage["total_tokens"] > counted


def test_lan_url_for_a_person_carries_only_their_key(team):
    _, keys, _ = team
    out = cli("lan", "url", "--key", "alice", "--api-key", keys["alice"], "--host", "192.0.2.5")
    assert keys["alice"] in out and keys["bob"] not in out and ADMIN not in out
    res = CliRunner().invoke(app, ["lan", "url", "--key", "alice", "--api-key", keys["bob"]])
    assert res.exit_code != 0 and "not alice's current key" in res.output
    assert keys["bob"] not in res.output


def _rows(tokn) -> list[dict]:
    tokn.runtime.usage.flush()
    return usage_rows()


def _files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()]
