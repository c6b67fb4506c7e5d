"""GitHub device flow: polling states, RFC 8628 slow_down, deadlines, errors."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.fakes.github import FakeGitHub
from tokn.auth import github
from tokn.auth.github import DeviceCode, api_url_for, poll_for_token, start_device_flow
from tokn.errors import ToknError


class Recorder:
    """An injectable sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def scripted(answers: list[dict], seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport answering successive token polls from ``answers``."""
    it = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/login/device/code":
            return httpx.Response(200, json={
                "device_code": "dc", "user_code": "ABCD-EFGH",
                "verification_uri": "https://github.com/login/device",
                "expires_in": 900, "interval": 5})
        return httpx.Response(200, json=next(it))

    return httpx.MockTransport(handler)


def device(**kw) -> DeviceCode:
    base = {"device_code": "dc", "user_code": "ABCD-EFGH",
            "verification_uri": "https://github.com/login/device", "expires_in": 900,
            "interval": 5, "github_url": "https://gh.test"}
    base.update(kw)
    return DeviceCode(**base)


def test_start_device_flow_request_shape():
    seen: list[httpx.Request] = []
    dc = asyncio.run(start_device_flow(github_url="https://gh.test/",
                                       transport=scripted([], seen)))
    assert dc.user_code == "ABCD-EFGH" and dc.interval == 5 and dc.expires_in == 900
    req = seen[0]
    assert str(req.url) == "https://gh.test/login/device/code"
    assert req.headers["accept"] == "application/json"
    assert json.loads(req.content) == {"client_id": "Iv1.b507a08c87ecfe98", "scope": "read:user"}


def test_poll_pending_slow_down_success_waits():
    seen: list[httpx.Request] = []
    sleep = Recorder()
    statuses: list[str] = []
    answers = [{"error": "authorization_pending"}, {"error": "slow_down"},
               {"error": "authorization_pending"}, {"access_token": "ghu_tok"}]
    token = asyncio.run(poll_for_token(device(), sleep=sleep, on_status=statuses.append,
                                       transport=scripted(answers, seen)))
    assert token == "ghu_tok"
    # interval 5, then slow_down without an interval -> +5 s for this and later polls
    assert sleep.waits == [5, 5, 10, 10]
    assert statuses == ["pending", "slow_down", "pending", "authorized"]
    body = json.loads(seen[0].content)
    assert body["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert body["device_code"] == "dc" and body["client_id"] == "Iv1.b507a08c87ecfe98"
    assert str(seen[0].url) == "https://gh.test/login/oauth/access_token"


def test_slow_down_uses_interval_github_returns():
    sleep = Recorder()
    answers = [{"error": "slow_down", "interval": 12}, {"access_token": "ghu_x"}]
    asyncio.run(poll_for_token(device(), sleep=sleep, transport=scripted(answers, [])))
    assert sleep.waits == [5, 12]


@pytest.mark.parametrize(("error", "needle"), [
    ("expired_token", "expired"),
    ("access_denied", "denied"),
    ("device_flow_disabled", "device_flow_disabled"),
])
def test_poll_terminal_errors(error, needle):
    answers = [{"error": "authorization_pending"},
               {"error": error, "error_description": error}]
    with pytest.raises(ToknError) as info:
        asyncio.run(poll_for_token(device(), sleep=Recorder(), transport=scripted(answers, [])))
    assert needle in info.value.message
    assert "tokn login" in info.value.message or error == "device_flow_disabled"


def test_poll_deadline_never_loops_forever():
    sleep = Recorder()
    answers = [{"error": "authorization_pending"}] * 1000
    with pytest.raises(ToknError) as info:
        asyncio.run(poll_for_token(device(expires_in=30, interval=5), sleep=sleep,
                                   transport=scripted(answers, [])))
    assert info.value.code == "expired_token"
    assert sum(sleep.waits) <= 30 and len(sleep.waits) == 6


def test_unreachable_github_is_a_clear_error():
    def boom(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ToknError, match="cannot reach https://gh.test/login/device/code"):
        asyncio.run(start_device_flow(github_url="https://gh.test",
                                      transport=httpx.MockTransport(boom)))


def test_api_url_for():
    assert api_url_for("https://github.com") == "https://api.github.com"
    assert api_url_for("https://acme.ghe.com/") == "https://api.acme.ghe.com"
    assert api_url_for("https://ghe.corp.example") == "https://ghe.corp.example/api/v3"


def test_device_flow_against_fake_github(monkeypatch):
    sleep = Recorder()
    monkeypatch.setattr(github, "_sleep", sleep)  # the module-level default sleep
    with FakeGitHub(interval=0, poll_script=["authorization_pending", "slow_down",
                                             "authorization_pending", "success"]) as fake:
        async def flow():
            dc = await start_device_flow(github_url=fake.url)
            return dc, await poll_for_token(dc)

        dc, token = asyncio.run(flow())
        assert dc.user_code == fake.user_code
        assert token == fake.issued_github_tokens[-1]
        assert fake.poll_answers == ["authorization_pending", "slow_down",
                                     "authorization_pending", "success"]
    # interval 0; GitHub's slow_down answer carries the new interval (0 + 5)
    assert sleep.waits == [0, 0, 5, 5]


def test_fake_github_denied_and_expired(monkeypatch):
    monkeypatch.setattr(github, "_sleep", Recorder())
    for script, needle in ((["authorization_pending", "access_denied"], "denied"),
                           (["expired_token"], "expired")):
        with FakeGitHub(interval=0, poll_script=script) as fake:
            async def flow(url=fake.url):
                return await poll_for_token(await start_device_flow(github_url=url))

            with pytest.raises(ToknError, match=needle):
                asyncio.run(flow())
