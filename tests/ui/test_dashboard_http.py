"""The dashboard over plain HTTP: the gate (host, key, cookie, CSRF, origin),
the same numbers as ``tokn usage``, the live stream, account actions in the
running pool and the config file, secrets masked, headers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import httpx

from tests.helpers import wait_for_rows
from tests.ui.env import SCRIPT, XSS, chat, csrf_of, dashboard
from tokn import state
from tokn.config import load_config

KEY = "sk-dashboard-key-123456"


def client(tokn, **kw) -> httpx.Client:
    return httpx.Client(base_url=tokn.api_url, timeout=30, **kw)


def test_pages_are_escaped_and_sent_with_strict_headers():
    with dashboard() as tokn:
        chat(tokn, XSS, text=SCRIPT)
        wait_for_rows(1)
        with client(tokn) as c:
            page = c.get("/ui/requests")
            assert page.status_code == 200
            assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and XSS not in page.text
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["cache-control"] == "no-store"
            rid = re.search(r'href="/ui/requests/([0-9a-f]+)"', page.text).group(1)
            detail = c.get(f"/ui/requests/{rid}").text
            assert "&lt;script&gt;alert(2)&lt;/script&gt;" in detail and SCRIPT not in detail
            usage = c.get("/ui/usage").text
            assert XSS not in usage and "&lt;img src=x" in usage  # chart labels and tables
            assert c.get("/ui/requests/nope").status_code == 404
            assert c.get("/ui/no-such-page").status_code == 404
            assert c.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
            assert c.get("/ui/static/..%2fweb.py").status_code == 404


def test_the_usage_page_shows_the_numbers_tokn_usage_prints():
    with dashboard() as tokn:
        for model in ("m-a", "m-b", "m-b", "gpt-4.1", "nope"):
            chat(tokn, model, text="counting words for tokens " * 3)
        wait_for_rows(5)
        html = client(tokn).get("/ui/usage", params={"since": "1h"}).text
        cli = subprocess.run([sys.executable, "-m", "tokn", "usage", "--since", "1h", "--json"],
                             capture_output=True, text=True, timeout=60, check=True)
        totals = json.loads(cli.stdout)["totals"]

        def card(label: str) -> str:
            found = re.search(rf">{re.escape(label)}</div><strong>([^<]*)</strong>", html)
            assert found, label
            return found.group(1)

        assert card("requests") == f"{totals['requests']:,}" == "5"
        assert card("errors") == f"{totals['errors']:,}" == "1"
        assert card("input / output tokens") == \
            f"{totals['input_tokens']:,} / {totals['output_tokens']:,}"
        assert card("p50 / p95 latency") == \
            f"{totals['median_latency_ms']:,.0f} ms / {totals['p95_latency_ms']:,.0f} ms"
        by_model = re.search(r'id="by-model".*?</section>', html, re.S).group(0)
        assert re.search(r"<td>m-b</td><td class=\"num\">2</td>", by_model)


def test_without_a_key_only_loopback_names_and_own_pages():
    with dashboard() as tokn, client(tokn) as c:
        assert c.get("/ui/", headers={"host": "rebound.example"}).status_code == 403
        page = c.get("/ui/accounts")
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert httpx.get(tokn.api_url + "/ui/", headers={"host": "localhost:1"}).status_code == 200
        token = csrf_of(page.text)
        url = "/ui/accounts/local/disable"
        refused = [
            c.post(url, data={"do": "disable"}),  # no token
            c.post(url, data={"csrf": "guess"}),
            c.post(url, data={"csrf": token}, headers={"origin": "http://127.0.0.1:1"}),
            c.post(url, data={"csrf": token}, headers={"origin": "null"}),
            c.post(url, data={"csrf": token}, headers={"sec-fetch-site": "same-site"}),
            c.post(url, data={"csrf": token}, headers={"host": "rebound.example"}),
            httpx.post(tokn.api_url + url, data={"csrf": token}),  # the token without its session
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert c.post(url, json={"csrf": token}).status_code == 415
        assert c.post(url, content=b"csrf=" + b"x" * 70000,
                      headers={"content-type": "application/x-www-form-urlencoded"}
                      ).status_code == 413
        assert "local" in tokn.runtime.pool.providers
        origin = tokn.api_url
        done = c.post(url, data={"csrf": token}, headers={"origin": origin,
                                                          "sec-fetch-site": "same-origin"})
        assert done.status_code == 303 and done.headers["location"] == "/ui/accounts"
        assert "local" not in tokn.runtime.pool.providers


def test_with_a_key_sign_in_first_or_present_the_key():
    with dashboard(api_key=KEY) as tokn, client(tokn) as c:
        first = c.get("/ui/usage?since=1h")
        assert first.status_code == 303
        assert first.headers["location"] == "/ui/login?next=%2Fui%2Fusage%3Fsince%3D1h"
        assert c.get("/ui/events").status_code == 303
        assert client(tokn, headers={"x-api-key": KEY}).get("/ui/").status_code == 200
        assert c.get("/ui/", headers={"authorization": "Bearer wrong"}).status_code == 303
        # a script holding the key may act without a form token
        assert httpx.post(tokn.api_url + "/ui/accounts/local/disable", data={},
                          headers={"authorization": f"Bearer {KEY}"}).status_code == 303
        assert "local" not in tokn.runtime.pool.providers

        login = c.get(first.headers["location"])
        token = csrf_of(login.text)
        before = c.cookies["tokn_ui"]
        bad = c.post("/ui/login", data={"csrf": token, "key": "nope", "next": "/ui/usage"})
        assert bad.status_code == 401 and "not the API key" in bad.text
        # a sign-in from another page is refused even with the right key
        assert c.post("/ui/login", data={"csrf": token, "key": KEY},
                      headers={"origin": "http://evil.example"}).status_code == 403
        ok = c.post("/ui/login", data={"csrf": token, "key": KEY, "next": "//evil.example/x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
        assert c.cookies["tokn_ui"] != before  # a new session id once signed in
        assert c.get("/ui/usage").status_code == 200
        token = csrf_of(c.get("/ui/accounts").text)
        assert c.post("/ui/accounts/local/enable", data={"csrf": token}).status_code == 303
        assert "local" in tokn.runtime.pool.providers
        assert c.post("/ui/logout", data={"csrf": token}).status_code == 303
        assert c.get("/ui/").status_code == 303


def test_enable_disable_remove_reach_the_pool_and_the_file():
    with dashboard() as tokn, client(tokn) as c:
        state.update("health", "local", {"failures": 1})
        token = csrf_of(c.get("/ui/accounts").text)
        c.post("/ui/accounts/local/disable", data={"csrf": token})
        assert load_config().account("local").enabled is False
        assert "disabled" in c.get("/ui/").text
        assert chat(tokn, "m-a").status_code == 404
        c.post("/ui/accounts/local/enable", data={"csrf": token})
        assert load_config().account("local").enabled is True
        assert "enabled" not in (tokn.runtime.cfg.path.read_text().split("[[accounts]]")[2])
        assert chat(tokn, "m-a").status_code == 200
        page = c.post("/ui/accounts/nobody/disable", data={"csrf": token},
                      follow_redirects=True)
        assert "no account &#39;nobody&#39;" in page.text

        c.post("/ui/accounts/local/remove", data={"csrf": token})
        assert load_config().account("local") is None
        assert "local" not in state.read("health")
        assert "local" not in tokn.runtime.pool.providers
        assert [a.id for a in tokn.runtime.cfg.accounts] == ["copilot"]
        assert chat(tokn, "m-a").status_code == 404


def test_test_now_is_a_recorded_request_through_the_pipeline():
    with dashboard() as tokn, client(tokn) as c:
        token = csrf_of(c.get("/ui/accounts").text)
        c.post("/ui/accounts/copilot/test", data={"csrf": token})
        flash = re.search(r'class="flash (\w+)"[^>]*>([^<]*)', c.get("/ui/accounts").text)
        assert flash.group(1) == "ok" and "HTTP 200" in flash.group(2), flash.group(0)
        rows = wait_for_rows(1)
        assert rows[-1]["front_door"] == "dashboard" and rows[-1]["account"] == "copilot"
        assert rows[-1]["status"] == 200 and rows[-1]["model_served"] == "gpt-4.1"
        assert tokn.copilot_api.requests_to("/chat/completions")
        # a failing account says why
        tokn.local.fail_next(500, count=5)
        c.post("/ui/accounts/local/test", data={"csrf": token})
        flash = re.search(r'class="flash (\w+)"[^>]*>([^<]*)', c.get("/ui/accounts").text)
        assert flash.group(1) == "error" and "HTTP 500" in flash.group(2)


def test_config_view_masks_secrets():
    extra = {"proxy": {"url": "http://bob:hunter2-secret@127.0.0.1:9"},
             "server": {"api_key": ""}}
    with dashboard(extra=extra) as tokn:
        html = client(tokn).get("/ui/config").text
        for secret in ("gho_dashboardtest", "sk-local-secret-0001", "hunter2-secret"):
            assert secret not in html
        assert "sk-l…0001" in html and "http://bob:hunt…cret@127.0.0.1:9" in html


def read_events(tokn, params: dict, n: int, out: list, headers: dict | None = None) -> None:
    with httpx.stream("GET", tokn.api_url + "/ui/events", params=params, timeout=15,
                      headers=headers or {}) as r:
        out.append(r.headers["content-type"])
        for line in r.iter_lines():
            if line.startswith(("id:", "data:")):
                out.append(line)
            if sum(item.startswith("data:") for item in out[1:]) >= n:
                return


def test_event_stream_filters_replays_and_ends_on_drain():
    with dashboard() as tokn:
        got: list = []
        reader = threading.Thread(target=read_events,
                                  args=(tokn, {"status": "error"}, 1, got), daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while tokn.runtime.usage.feed.subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        chat(tokn, "m-a")  # not an error: left out
        chat(tokn, "gone-model")
        reader.join(15)
        assert got[0].startswith("text/event-stream")
        events = [json.loads(x[5:]) for x in got if x.startswith("data:")]
        assert [e["model_requested"] for e in events] == ["gone-model"]
        assert "request_body" not in events[0]

        # a reconnect with Last-Event-ID gets what came after, from the backlog
        first_id = int(next(x for x in got if x.startswith("id:"))[3:])
        replay: list = []
        read_events(tokn, {}, 2, replay, headers={"last-event-id": str(first_id - 2)})
        assert [json.loads(x[5:])["model_requested"] for x in replay
                if x.startswith("data:")] == ["m-a", "gone-model"]

        # shutdown does not wait for a live tail
        with httpx.stream("GET", tokn.api_url + "/ui/events", timeout=15) as r:
            started = time.monotonic()
            tokn.runtime.state.drain.draining = True
            for _ in r.iter_lines():
                pass
            assert time.monotonic() - started < 3


def test_usage_recording_off():
    with dashboard(extra={"usage": {"enabled": False}}) as tokn, client(tokn) as c:
        assert "usage recording is off" in c.get("/ui/requests").text
        assert c.get("/ui/events").status_code == 204
        assert "Usage recording is off" in c.get("/ui/usage").text
