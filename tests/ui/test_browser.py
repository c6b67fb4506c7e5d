"""The dashboard in a real headless Chromium: every page loads without console
errors, charts draw, the live tail shows a request made meanwhile, write
actions need the key and the dashboard's own pages, attacker text stays text."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from tests.helpers import wait_for_rows
from tests.ui.env import SCRIPT, XSS, chat, dashboard
from tests.ui.png import ink
from tokn.config import load_config

KEY = "sk-dashboard-key-123456"
PAGES = ("/ui/", "/ui/usage", "/ui/usage?since=30d&metric=tokens", "/ui/requests",
         "/ui/requests?status=error", "/ui/accounts", "/ui/accounts/local/remove", "/ui/config")


def no_errors(page) -> None:
    assert page.console.errors == [], page.console.errors
    assert page.console.dialogs == [], f"a script ran: {page.console.dialogs}"


def test_every_page_loads_clean_charts_draw_and_attacker_text_stays_text(page):
    with dashboard() as tokn:
        for model in ("m-a", "m-a", "m-b", "gpt-4.1"):
            assert chat(tokn, model).status_code == 200
        assert chat(tokn, XSS, text=SCRIPT).status_code == 404  # the model's name is in the error
        wait_for_rows(5)
        for path in PAGES:
            response = page.goto(tokn.api_url + path)
            assert response.status == 200, path
            assert page.locator("h1").first.is_visible()
            no_errors(page)

        page.goto(tokn.api_url + "/ui/")
        page.wait_for_selector("text=213 of 300 left")  # Copilot's quota, fetched in the background
        assert page.locator("meter").first.get_attribute("value") == "71.0"
        no_errors(page)

        page.goto(tokn.api_url + "/ui/usage?since=7d&metric=requests")
        for chart in ("#chart-day svg", "#by-model svg", "#by-account svg"):
            shot = page.locator(chart).screenshot()
            assert ink(shot) > 0.01, f"{chart} drew nothing"
        # m-a, m-b, gpt-4.1 and the refused attacker's model, its name drawn as text
        assert page.locator("#by-model svg rect.bar").count() == 4
        assert XSS in page.locator("#by-model svg").text_content()
        no_errors(page)

        # the attacker's text as text: in the list, the error, the detail and its bodies
        page.goto(tokn.api_url + "/ui/requests?status=error")
        row = page.locator("#tail tbody tr").first
        assert XSS in row.inner_text()
        assert page.locator("#tail img").count() == 0
        row.locator("a").first.click()
        page.wait_for_selector("text=Attempt 1")
        assert XSS in page.locator(".flash.error").first.inner_text()
        assert SCRIPT in page.locator("pre.body").first.inner_text()
        assert page.locator("main img, main script").count() == 0
        no_errors(page)


def test_dark_theme_renders(browser):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        with dashboard() as tokn:
            page.goto(tokn.api_url + "/ui/usage")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(20, 22, 27)"
    finally:
        context.close()


def test_live_tail_shows_a_request_made_during_the_test(page):
    with dashboard() as tokn:
        page.goto(tokn.api_url + "/ui/requests")
        page.wait_for_selector("#live-status[data-state=on]")
        assert page.locator("#tail tbody tr").count() == 0
        assert chat(tokn, "m-b", "live one").status_code == 200
        row = page.locator("#tail tbody tr").first
        row.wait_for()
        text = row.inner_text()
        assert "m-b" in text and "200" in text and "local" in text
        # attacker text arriving live is text too
        assert chat(tokn, XSS).status_code == 404
        page.wait_for_selector("#tail tbody tr:nth-child(2)")
        assert XSS in page.locator("#tail tbody tr").first.inner_text()
        assert page.locator("#tail img").count() == 0
        # a filtered tail leaves out what does not match
        page.goto(tokn.api_url + "/ui/requests?status=error")
        page.wait_for_selector("#live-status[data-state=on]")
        before = page.locator("#tail tbody tr").count()
        assert chat(tokn, "m-a").status_code == 200
        assert chat(tokn, "no-such-model").status_code == 404
        page.wait_for_selector("text=no-such-model")
        assert page.locator("#tail tbody tr").count() == before + 1
        no_errors(page)


class ForeignSite:
    """A page on another loopback port whose form posts to the dashboard (CSRF)."""

    def __init__(self, target: str) -> None:
        body = (f'<!doctype html><form id="f" method="post" action="{target}">'
                '<input name="csrf" value="guessed"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_write_actions_need_the_key_and_the_dashboards_own_pages(page):
    with dashboard(api_key=KEY) as tokn:
        target = tokn.api_url + "/ui/accounts/local/disable"
        foreign = ForeignSite(target)
        try:
            # signed out: the page is not shown, the action refused
            page.goto(tokn.api_url + "/ui/accounts")
            assert page.url.startswith(tokn.api_url + "/ui/login")
            response = page.request.post(target, form={"csrf": "x"})
            assert response.status == 403
            with page.expect_navigation():
                page.goto(foreign.url)
            assert "Refused" in page.content()
            assert "local" in tokn.runtime.pool.providers

            # the wrong key, then the right one
            page.goto(tokn.api_url + "/ui/accounts")
            page.fill("input[name=key]", "not-the-key")
            page.click("button[type=submit]")
            assert "not the API key" in page.content()
            page.fill("input[name=key]", KEY)
            page.click("button[type=submit]")
            page.wait_for_url(tokn.api_url + "/ui/accounts")
            cookie = next(c for c in page.context.cookies() if c["name"] == "tokn_ui")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"

            # signed in, a foreign page's post still fails (no token, foreign Origin)
            page.goto(foreign.url)
            page.wait_for_selector("text=Refused")
            assert "local" in tokn.runtime.pool.providers
            assert load_config().account("local").enabled
            # the browser logged only those refusals (403) and the wrong key (401)
            assert page.console.errors and all(
                "status of 403" in e or "status of 401" in e for e in page.console.errors)
            page.console.errors.clear()

            # the dashboard's own button works, in the pool and in the file
            page.goto(tokn.api_url + "/ui/accounts")
            page.click("#account-local button[value=disable]")
            page.wait_for_selector(".flash.ok >> text=local disabled (config saved and applied)")
            assert "local" not in tokn.runtime.pool.providers
            assert load_config().account("local").enabled is False
            assert chat(tokn, "m-a", key=KEY).status_code == 404  # nobody serves it now
            page.click("#account-local button[value=enable]")
            page.wait_for_selector("text=local enabled")
            assert chat(tokn, "m-a", key=KEY).status_code == 200

            # test now: one real request, recorded with front door "dashboard"
            started = time.time()
            page.click("#account-local button[value=test]")
            page.wait_for_selector(".flash.ok >> text=HTTP 200")
            rows = [r for r in wait_for_rows(3) if r["front_door"] == "dashboard"]
            assert rows and rows[-1]["account"] == "local" and rows[-1]["ts"] >= started
            no_errors(page)
        finally:
            foreign.close()


def test_remove_asks_first_then_removes(page):
    with dashboard() as tokn:
        page.goto(tokn.api_url + "/ui/accounts")
        page.click("#account-local a.button")
        page.wait_for_selector("text=Remove account local?")
        assert "local" in tokn.runtime.pool.providers
        page.click("button.danger")
        page.wait_for_selector("text=local removed")
        assert page.locator("#account-local").count() == 0
        assert load_config().account("local") is None
        assert "local" not in tokn.runtime.pool.providers
        no_errors(page)


@pytest.mark.parametrize("path", ["/ui/", "/ui/requests"])
def test_a_rebound_host_name_gets_nothing(page, path):
    with dashboard() as tokn:
        port = tokn.api_url.rsplit(":", 1)[1]
        response = page.request.get(f"http://127.0.0.1:{port}{path}",
                                    headers={"host": f"attacker.example:{port}"})
        assert response.status == 403
        assert "loopback" in response.text()
