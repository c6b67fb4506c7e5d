"""`tokn login`, `tokn import`, `tokn account list|show|remove`, `tokn headers` through
the real typer app, against FakeGitHub / FakeLLM on loopback."""

from __future__ import annotations

import json
import sys
import time

import pytest
from typer.testing import CliRunner

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeLLM
from tokn import config, state
from tokn.accounts import health_of
from tokn.auth import github as gh_auth
from tokn.cli import app

runner = CliRunner()
GH_TOKEN = "ghu_importedtoken123456"


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(gh_auth, "_sleep", rec)
    return rec


@pytest.fixture
def github():
    with FakeGitHub(interval=0) as fake:
        yield fake


def invoke(*args: str, input: str | None = None, width: int | None = None):
    env = {"COLUMNS": str(width)} if width else None
    return runner.invoke(app, list(args), input=input, env=env)


def accounts() -> dict[str, dict]:
    doc = config.load_document().unwrap()
    return {a["id"]: a for a in doc.get("accounts", [])}


def save_accounts(*values: dict) -> None:
    doc = config.load_document()
    for v in values:
        config.add_account(doc, v)
    config.save_document(doc)


# --- login: GitHub device flow ---------------------------------------------------------------

def test_device_flow_login(github, sleeps):
    github.poll_script = ["authorization_pending", "slow_down", "success"]
    result = invoke("login", "--github-url", github.url, "--github-api-url", github.url,
                    "--no-browser")
    assert result.exit_code == 0, result.output
    assert github.user_code in result.output
    assert "https://github.com/login/device" in result.output
    assert "saved account copilot" in result.output and "octocat" in result.output
    token = github.issued_github_tokens[-1]
    assert token not in result.output
    acc = accounts()["copilot"]
    assert acc["provider"] == "github-copilot" and acc["github_token"] == token
    assert acc["github_api_url"] == github.url and acc["github_base_url"] == github.url
    assert acc["github_login"] == "octocat"
    # verified with exactly one exchange, whose token is cached for the pool
    assert github.exchange_count == 1
    assert state.read("copilot-tokens")["copilot"]["token"] == github.last_copilot_token
    # polls: interval 0, then GitHub's slow_down answer (+5 s) for later polls
    assert github.poll_answers == ["authorization_pending", "slow_down", "success"]
    assert sleeps.waits == [0, 0, 5]


def test_second_login_gets_its_own_id_same_user_reuses(github, sleeps):
    args = ("login", "--github-url", github.url, "--github-api-url", github.url, "--no-browser")
    assert invoke(*args).exit_code == 0
    github.login = "alice"
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert set(accounts()) == {"copilot", "copilot-alice"}
    result = invoke(*args)                        # alice again: updated in place
    assert set(accounts()) == {"copilot", "copilot-alice"}
    assert accounts()["copilot-alice"]["github_token"] == github.issued_github_tokens[-1]
    result = invoke(*args, "--id", "work")
    assert result.exit_code == 0 and "work" in accounts()


@pytest.mark.parametrize(("script", "needle"), [
    (["authorization_pending", "access_denied"], "denied"),
    (["expired_token"], "expired"),
])
def test_device_flow_login_errors(github, sleeps, script, needle):
    github.poll_script = script
    result = invoke("login", "--github-url", github.url, "--github-api-url", github.url,
                    "--no-browser")
    assert result.exit_code == 1
    assert needle in result.output and "Traceback" not in result.output
    assert accounts() == {}


def test_login_without_copilot_subscription(github, sleeps):
    github.fail_next(403, endpoint="/copilot_internal/v2/token")
    result = invoke("login", "--github-url", github.url, "--github-api-url", github.url,
                    "--no-browser")
    assert result.exit_code == 1
    assert "no Copilot subscription" in result.output
    assert accounts() == {}


# --- login: API keys -----------------------------------------------------------------------------

@pytest.fixture
def openai_fake():
    with FakeLLM(path_prefix="/v1", auth={"sk-good-key-123456"}) as fake:
        yield fake


def test_api_key_login_accepted(openai_fake):
    result = invoke("login", "--provider", "openai", "--base-url", openai_fake.url + "/v1",
                    "--key-stdin", input="sk-good-key-123456\n")
    assert result.exit_code == 0, result.output
    assert "saved account openai" in result.output and "3 models" in result.output
    assert "sk-good-key-123456" not in result.output
    acc = accounts()["openai"]
    assert acc["api_key"] == "sk-good-key-123456" and acc["base_url"] == openai_fake.url + "/v1"
    assert openai_fake.requests_to("/v1/models")[0].bearer() == "sk-good-key-123456"


def test_api_key_login_rejected(openai_fake):
    result = invoke("login", "--provider", "openai", "--base-url", openai_fake.url + "/v1",
                    "--key-stdin", input="sk-bad-key-000000\n")
    assert result.exit_code == 1
    assert f"the key was rejected by {openai_fake.url}/v1/models" in result.output
    assert accounts() == {}


def test_api_key_login_unreachable_and_no_verify():
    dead = "http://127.0.0.1:9/v1"
    result = invoke("login", "-p", "openai", "--base-url", dead, "--key-stdin",
                    input="sk-x-123456789\n")
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "--no-verify" in result.output
    result = invoke("login", "-p", "openai", "--base-url", dead, "--key-stdin", "--no-verify",
                    "--id", "later", input="sk-x-123456789\n")
    assert result.exit_code == 0, result.output
    assert accounts()["later"]["api_key"] == "sk-x-123456789"


def test_api_key_login_hidden_prompt(openai_fake):
    result = invoke("login", "-p", "openai", "--base-url", openai_fake.url + "/v1",
                    input="sk-good-key-123456\n")
    assert result.exit_code == 0, result.output
    assert "sk-good-key-123456" not in result.output      # hidden input is not echoed


def test_login_unknown_provider_lists_known():
    result = invoke("login", "--provider", "nope")
    assert result.exit_code == 1
    assert "unknown provider 'nope'" in result.output and "github-copilot" in result.output


def test_kiro_login_goes_through_the_generic_command(monkeypatch):
    """`tokn login --provider kiro` hands exactly Kiro's declared options to its
    sign-in and saves through the one save path (id, base URL, fields)."""
    from tokn.auth import kiro as kiro_auth

    calls = []

    async def sign_in(client, method, *, say, open_browser, region, start_url):
        calls.append({"method": method, "region": region, "start_url": start_url,
                      "browser": open_browser is not None})
        return {"access_token": "aoa-1", "refresh_token": "aor-123456789",
                "expires_at": 4102444800, "auth_method": "idc", "region": region,
                "client_id": "cid", "client_secret": "csecret", "start_url": start_url}

    monkeypatch.setattr(kiro_auth, "sign_in", sign_in)
    result = invoke("login", "--provider", "kiro", "--id", "k1", "--method", "idc",
                    "--start-url", "https://x.awsapps.com/start", "--region", "eu-west-1",
                    "--no-browser", "--base-url", "https://runtime.eu-west-1.kiro.dev")
    assert result.exit_code == 0, result.output
    assert calls == [{"method": "idc", "region": "eu-west-1",
                      "start_url": "https://x.awsapps.com/start", "browser": False}]
    assert "saved account k1 (kiro)" in result.output
    acc = accounts()["k1"]
    assert acc["refresh_token"] == "aor-123456789" and acc["client_secret"] == "csecret"
    assert acc["base_url"] == "https://runtime.eu-west-1.kiro.dev"
    assert acc["expires_at"] == "2100-01-01T00:00:00Z" and acc["region"] == "eu-west-1"
    # the same sign-in again updates that account instead of adding one
    assert invoke("login", "-p", "kiro", "--method", "idc", "--start-url",
                  "https://x.awsapps.com/start", "--region", "eu-west-1").exit_code == 0
    assert list(accounts()) == ["k1"]


def test_an_option_the_provider_does_not_take_is_an_error(openai_fake):
    """Nothing is silently dropped: an option of another provider's sign-in, or a
    misspelled one, stops the command before anything is asked or saved."""
    result = invoke("login", "-p", "openai", "--method", "idc", "--key-stdin",
                    input="sk-good-key-123456\n")
    assert result.exit_code == 1
    assert "--method does not apply to `tokn login --provider openai`" in result.output
    assert "--key-stdin" in result.output                   # what it does take
    result = invoke("login", "-p", "kiro", "--methd", "idc")
    assert result.exit_code == 2 and "No such option" in result.output and "--methd" in \
        result.output
    result = invoke("import", "--from", "kiro", "--host", "github.com")
    assert result.exit_code == 1 and "--host does not apply" in result.output
    result = invoke("import", "--from", "gh", "--provider", "openai")
    assert result.exit_code == 1 and "--from gh imports a github-copilot account" in \
        result.output
    assert accounts() == {}


def test_import_from_gh(github, tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text(
        f"github.com:\n    oauth_token: {GH_TOKEN}\n    user: octocat\n")
    monkeypatch.setenv("GH_CONFIG_DIR", str(tmp_path))
    result = invoke("import", "--from", "gh", "--github-api-url", github.url)
    assert result.exit_code == 0, result.output
    assert "gh CLI" in result.output and GH_TOKEN not in result.output
    acc = accounts()["copilot"]
    assert acc["github_token"] == GH_TOKEN and acc["github_login"] == "octocat"
    assert github.exchange_count == 1


def test_import_from_gh_rejected_token_hint(github, tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text(f"github.com:\n    oauth_token: {GH_TOKEN}\n")
    monkeypatch.setenv("GH_CONFIG_DIR", str(tmp_path))
    github.fail_next(404, endpoint="/copilot_internal/v2/token")
    result = invoke("import", "--from", "gh", "--github-api-url", github.url)
    assert result.exit_code == 1
    assert "not always accepted by Copilot" in result.output
    assert accounts() == {}


def test_import_from_copilot_plugin(github, tmp_path, monkeypatch):
    d = tmp_path / "github-copilot"
    d.mkdir()
    (d / "apps.json").write_text(json.dumps({"github.com:Iv1.b507a08c87ecfe98": {
        "user": "octocat", "oauth_token": GH_TOKEN}}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    result = invoke("import", "--from", "copilot-plugin", "--github-api-url", github.url,
                    "--id", "plug")
    assert result.exit_code == 0, result.output
    assert accounts()["plug"]["github_token"] == GH_TOKEN


def test_import_from_env_copilot_and_api_key(github, openai_fake, monkeypatch):
    monkeypatch.setenv("COPILOT_GITHUB_TOKEN", GH_TOKEN)
    result = invoke("import", "--from", "env", "--github-api-url", github.url)
    assert result.exit_code == 0, result.output
    assert "COPILOT_GITHUB_TOKEN" in result.output
    assert accounts()["copilot"]["github_token"] == GH_TOKEN

    monkeypatch.setenv("MY_OPENAI", "sk-good-key-123456")
    result = invoke("import", "--from", "env", "--provider", "openai", "--env-var", "MY_OPENAI",
                    "--base-url", openai_fake.url + "/v1")
    assert result.exit_code == 0, result.output
    assert accounts()["openai"]["api_key"] == "sk-good-key-123456"


def test_import_errors(tmp_path, monkeypatch):
    result = invoke("import", "--from", "env")
    assert result.exit_code == 1 and "GH_TOKEN, GITHUB_TOKEN, COPILOT_GITHUB_TOKEN" in \
        result.output
    result = invoke("import", "--from", "somewhere")
    assert result.exit_code == 1 and "unknown source" in result.output
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    result = invoke("import", "--from", "copilot-plugin")
    assert result.exit_code == 1 and "no Copilot editor plugin token" in result.output


# --- account list / show / remove -----------------------------------------------------------------

def test_health_of():
    now = 1_000_000.0
    assert health_of(None, now=now)["status"] == "ok"
    assert health_of({"failures": 0, "last_ok": now}, now=now)["text"] == "ok"
    cool = health_of({"cooldown_until": now + 60, "failures": 2}, now=now)
    assert cool["status"] == "cooling_down" and cool["text"].startswith("cooling down until ")
    assert health_of({"cooldown_until": now - 1, "failures": 3, "last_error": "HTTP 500"},
                     now=now)["text"] == "failing (3x): HTTP 500"
    assert health_of({"exhausted_until": now + 10}, now=now)["status"] == "exhausted"
    assert health_of({}, enabled=False, now=now)["status"] == "disabled"


def _seed():
    save_accounts(
        {"id": "copilot", "provider": "github-copilot", "github_token": GH_TOKEN},
        {"id": "oa", "provider": "openai", "api_key": "sk-secret-abcdefghijkl"},
        {"id": "down", "provider": "openai", "api_key": "sk-other-abcdefghijkl"},
        {"id": "off", "provider": "openai", "api_key": "sk-third-abcdefghijkl",
         "enabled": False},
    )
    now = time.time()
    state.write("health", {
        "oa": {"cooldown_until": now + 120, "failures": 1, "last_error": "HTTP 429",
               "last_ok": now - 5, "exhausted_until": None},
        "down": {"cooldown_until": now - 10, "failures": 4, "last_error": "connect timeout",
                 "last_ok": None, "exhausted_until": None},
    })
    state.update("account-info", "copilot", {"plan": "business"})


def test_account_list_table_and_json():
    _seed()
    result = invoke("account", "list", width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("copilot", "business", "cooling down until", "failing (4x)",
                   "connect timeout", "disabled", "ghu_…3456", "sk-s…ijkl"):
        assert needle in out, needle
    for secret in (GH_TOKEN, "sk-secret-abcdefghijkl"):
        assert secret not in out
    rows = {r["id"]: r for r in json.loads(invoke("account", "list", "--json").output)}
    assert rows["copilot"]["plan"] == "business"
    assert rows["copilot"]["health"]["status"] == "ok"
    assert rows["oa"]["health"]["status"] == "cooling_down"
    assert rows["down"]["health"]["status"] == "failing"
    assert rows["off"]["health"]["status"] == "disabled"
    assert rows["oa"]["credential"] == "sk-s…ijkl"


def test_account_list_empty():
    result = invoke("account", "list")
    assert result.exit_code == 0 and "no accounts yet" in result.output


def test_account_show_live(github):
    save_accounts({"id": "copilot", "provider": "github-copilot", "github_token": GH_TOKEN,
                   "github_api_url": github.url, "settings": {"initiator_mode": "always_user"}})
    github.set_quota("premium_interactions", remaining=75, entitlement=300)
    result = invoke("account", "show", "copilot")
    assert result.exit_code == 0, result.output
    out = result.output
    assert GH_TOKEN not in out and "ghu_…3456" in out
    assert "always_user" in out and "individual" in out
    assert "75/300 left (25%)" in out and "unlimited" in out
    data = json.loads(invoke("account", "show", "copilot", "--json").output)
    assert data["fields"]["github_token"] == "ghu_…3456"
    assert data["live"]["plan"] == "individual"


def test_account_show_fails_soft():
    save_accounts({"id": "copilot", "provider": "github-copilot", "github_token": GH_TOKEN,
                   "github_api_url": "http://127.0.0.1:9"})
    result = invoke("account", "show", "copilot", "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert "unavailable" in result.output and "cannot reach" in result.output
    result = invoke("account", "show", "copilot", "--no-live")
    assert result.exit_code == 0 and "unavailable" not in result.output
    result = invoke("account", "show", "nope")
    assert result.exit_code == 1 and "no account with id 'nope'" in result.output


def test_account_remove():
    _seed()
    state.update("copilot-tokens", "copilot", {"token": "tid=x", "expires_at": 1})
    result = invoke("account", "remove", "copilot", input="n\n")
    assert result.exit_code == 1 and "copilot" in accounts()
    result = invoke("account", "remove", "copilot", "--yes")
    assert result.exit_code == 0, result.output
    assert "copilot" not in accounts() and "oa" in accounts()
    assert "copilot" not in state.read("copilot-tokens")
    assert "copilot" not in state.read("account-info")
    result = invoke("account", "remove", "oa", "-y")
    assert "oa" not in state.read("health") and "down" in state.read("health")
    result = invoke("account", "remove", "ghost", "--yes")
    assert result.exit_code == 1 and "no account with id 'ghost'" in result.output


def test_account_remove_of_a_kiro_account_drops_its_tokens():
    """A removed Kiro account leaves no refresh token behind in the state dir."""
    save_accounts({"id": "k", "provider": "kiro", "refresh_token": "aor-1234567890"},
                  {"id": "k2", "provider": "kiro", "refresh_token": "aor-other-123456"})
    for account_id in ("k", "k2"):
        state.update("kiro-tokens", account_id, {"access_token": "aoa-x",
                                                 "refresh_token": f"aor-live-{account_id}"})
    state.update("health", "k", {"failures": 1})
    result = invoke("account", "remove", "k", "--yes")
    assert result.exit_code == 0, result.output
    assert "k" not in accounts() and "k2" in accounts()
    assert "k" not in state.read("kiro-tokens") and "k" not in state.read("health")
    assert state.read("kiro-tokens")["k2"]["refresh_token"] == "aor-live-k2"


# --- headers ---------------------------------------------------------------------------------

def test_headers(github):
    save_accounts(
        {"id": "oa", "provider": "openai", "api_key": "sk-secret-abcdefghijkl"},
        {"id": "copilot", "provider": "github-copilot", "github_token": GH_TOKEN,
         "github_api_url": github.url, "settings": {"editor_version": "vscode/1.99.0"}},
    )
    result = invoke("headers")
    assert result.exit_code == 0, result.output
    token = github.last_copilot_token
    assert token not in result.output
    assert "authorization: Bearer tid=…" in result.output
    assert "editor-version: vscode/1.99.0" in result.output
    assert "copilot-integration-id: vscode-chat" in result.output
    assert "x-initiator: user" in result.output
    data = json.loads(invoke("headers", "--account", "copilot", "--json").output)
    assert data["headers"]["x-github-api-version"] and token not in json.dumps(data)
    result = invoke("headers", "--account", "oa")
    assert result.exit_code == 1 and "not a GitHub Copilot account" in result.output


def test_headers_without_copilot_account():
    result = invoke("headers")
    assert result.exit_code == 1 and "tokn login" in result.output


# --- import --from env reads only the provider's own variables --------------------------------

def test_import_env_for_kiro_never_reads_github_variables(monkeypatch):
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    result = invoke("import", "--from", "env", "--provider", "kiro")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "tokn import --from kiro" in text and "tokn login --provider kiro" in text
    assert "Traceback" not in result.output
    assert accounts() == {}


def test_import_env_names_the_providers_variable(monkeypatch):
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    result = invoke("import", "--from", "env", "--provider", "openai", "--no-verify")
    assert result.exit_code == 1
    assert "the environment variable OPENAI_API_KEY is not set" in result.output
    assert accounts() == {}
    result = invoke("import", "--from", "env", "--provider", "openai-compatible", "--no-verify",
                    "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 1 and "--env-var NAME" in result.output
    assert accounts() == {}


# --- sign-in errors and URLs are one pasteable line -------------------------------------------

def _offline(monkeypatch):
    """No way out: every HTTPS request goes to a proxy port nobody listens on."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")


@pytest.mark.parametrize("args,host", [
    (["login", "--provider", "kiro", "--no-browser"], "oidc.us-east-1.amazonaws.com"),
    (["login", "--provider", "kiro", "--method", "idc", "--start-url",
      "https://x.awsapps.com/start", "--region", "eu-west-1"], "oidc.eu-west-1.amazonaws.com"),
    (["login", "--no-browser"], "github.com"),
])
def test_login_offline_is_one_clear_line(monkeypatch, args, host):
    _offline(monkeypatch)
    result = invoke(*args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "httpx" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot reach https://" + host)


def test_kiro_browser_url_is_printed_unwrapped(tmp_path):
    """The real CLI on a narrow terminal: the sign-in URL stays one line, and it works."""
    import os
    import subprocess
    import urllib.parse

    import httpx

    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokn", "login", "--provider", "kiro", "--method", "google",
             "--no-browser"], stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "40", "TERM": "xterm"})
        try:
            deadline = time.monotonic() + 30
            url = None
            while url is None and time.monotonic() < deadline:
                url = next((line for line in out.read_text().splitlines()
                            if line.startswith("https://")), None)
                time.sleep(0.1)
            assert url is not None, out.read_text()
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
            assert query["idp"] == "Google" and query["code_challenge_method"] == "S256"
            # the browser comes back to the loopback callback: here, refused
            callback = query["redirect_uri"].replace("localhost", "127.0.0.1")
            httpx.get(callback, params={"error": "access_denied", "state": query["state"]},
                      timeout=10, trust_env=False)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = out.read_text()
    assert len(url) > 200 and code == 1
    assert "error: Kiro sign-in failed: access_denied" in text
    assert "Traceback" not in text


# --- account show reports the last success --------------------------------------------------

def test_account_show_json_has_last_ok_after_requests(openai_fake):
    import httpx

    from tests.helpers import running_tokn

    save_accounts({"id": "o", "provider": "openai", "api_key": "sk-good-key-123456",
                   "base_url": openai_fake.url + "/v1", "models": ["gpt-4o"]})
    started = time.time()
    with running_tokn() as tokn:
        for _ in range(3):
            answer = httpx.post(tokn.api_url + "/v1/chat/completions", timeout=30, json={
                "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200, answer.text
        shown = invoke("account", "show", "o", "--json", "--no-live")
    assert shown.exit_code == 0, shown.output
    health = json.loads(shown.stdout)["health"]
    assert health["status"] == "ok"
    assert started <= health["last_ok"] <= time.time()

