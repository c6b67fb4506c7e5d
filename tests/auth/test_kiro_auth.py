"""Kiro credentials: import from the Kiro IDE / kiro-cli (tokn.auth.kiro_files),
device + social sign-in and refresh (tokn.auth.kiro), saved as an account through
KiroProvider's setup hooks and tokn.accounts.add."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest
import tomlkit
from typer.testing import CliRunner

from tests.fakes.kiro import FakeKiro
from tests.helpers import account, write_config
from tokn import accounts, config, paths, state
from tokn.auth import kiro, kiro_files
from tokn.errors import ToknError
from tokn.providers.kiro.provider import TOKEN_STATE, KiroProvider
from tokn.providers.setup import Credentials, Setup


def import_kiro(path, account_id=None) -> dict:
    """`tokn import --from kiro [--path PATH] [--id ID]` without the CLI."""
    async def go():
        creds = await KiroProvider.import_("kiro", Setup(), path=str(path) if path else None)
        return (await accounts.add(KiroProvider, creds, account_id=account_id)).values

    return asyncio.run(go())


def login_kiro(method, *, account_id=None, base_url=None, open_browser=None, **urls) -> dict:
    """A sign-in (URLs pointed at the fake) saved as `tokn login --provider kiro` does."""
    async def go():
        setup = Setup(open_browser=open_browser)
        async with httpx.AsyncClient() as client:
            tokens = await kiro.sign_in(client, method, say=setup.say,
                                        open_browser=setup.open_browser if open_browser
                                        else None, **urls)
        creds = Credentials(kiro_files.account_fields(tokens))
        added = await accounts.add(KiroProvider, creds, account_id=account_id,
                                   base_url=base_url)
        return added.values

    return asyncio.run(go())


def saved_accounts() -> list[dict]:
    doc = tomlkit.parse(paths.config_file().read_text())
    return [t.unwrap() for t in doc.get("accounts", [])]


def write_ide_social(cache):
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "kiro-auth-token.json"
    path.write_text(json.dumps({
        "accessToken": "aoa-ide", "refreshToken": "aor-ide",
        "expiresAt": "2025-09-01T10:00:00.000Z", "authMethod": "social",
        "provider": "Google", "profileArn": "arn:aws:codewhisperer:us-east-1:1:profile/P",
        "region": "us-east-1"}))
    return path


def write_ide_idc(cache):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "abc123hash.json").write_text(json.dumps({
        "clientId": "cid-ide", "clientSecret": "csecret-ide",
        "expiresAt": "2026-01-01T00:00:00Z"}))
    path = cache / "kiro-auth-token.json"
    path.write_text(json.dumps({
        "accessToken": "aoa-idc", "refreshToken": "aor-idc", "expiresAt": 1756720800000,
        "authMethod": "IdC", "provider": "BuilderId", "region": "eu-west-1",
        "clientIdHash": "abc123hash"}))
    return path


def write_cli_db(path, *, idc: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT)")
    if idc:
        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", ("kirocli:odic:token", json.dumps({
            "access_token": "aoa-cli", "refresh_token": "aor-cli",
            "expires_at": "2025-09-01T10:00:00Z", "region": "us-east-1",
            "start_url": "https://view.awsapps.com/start"})))
        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (
            "kirocli:odic:device-registration", json.dumps({
                "client_id": "cid-cli", "client_secret": "csecret-cli",
                "client_secret_expires_at": 1893456000, "region": "us-east-1"})))
    else:
        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", ("kirocli:social:token", json.dumps({
            "access_token": "aoa-cs", "refresh_token": "aor-cs",
            "expires_at": "2025-09-01T10:00:00Z", "provider": "Github"})))
        conn.execute("INSERT INTO state VALUES (?, ?)", ("api.codewhisperer.profile", json.dumps(
            {"arn": "arn:aws:codewhisperer:us-east-1:1:profile/CLI", "profile_name": "x"})))
    conn.commit()
    conn.close()
    return path


# --- pure helpers ------------------------------------------------------------------------

def test_parse_expiry_variants():
    assert kiro.parse_expiry("1970-01-01T00:01:40Z") == 100
    assert kiro.parse_expiry("1970-01-01T00:01:40.000Z") == 100
    assert kiro.parse_expiry(100) == 100
    assert kiro.parse_expiry(100_000_000_000_000) == 100_000_000_000
    assert kiro.parse_expiry("123") == 123
    assert kiro.parse_expiry("") is None and kiro.parse_expiry("soon") is None


def test_normalize_auth_method():
    assert kiro.normalize_auth_method("IdC") == "idc"
    assert kiro.normalize_auth_method("social") == "social"
    assert kiro.normalize_auth_method(None, has_client=True) == "idc"
    assert kiro.normalize_auth_method(None) == "social"


# --- import ------------------------------------------------------------------------------

def test_import_ide_social(tmp_path):
    path = write_ide_social(tmp_path / "cache")
    values = import_kiro(path, None)
    assert values["id"] == "kiro" and values["provider"] == "kiro"
    assert values["auth_method"] == "social"
    assert values["refresh_token"] == "aor-ide" and values["access_token"] == "aoa-ide"
    assert values["profile_arn"].endswith("profile/P")
    assert values["expires_at"] == "2025-09-01T10:00:00Z"
    assert "client_id" not in values
    assert saved_accounts() == [values]
    assert paths.config_file().stat().st_mode & 0o777 == 0o600
    cfg = config.load_config()
    assert cfg.accounts[0].get("refresh_token") == "aor-ide"


def test_import_ide_idc_follows_client_id_hash(tmp_path):
    path = write_ide_idc(tmp_path / "cache")
    values = import_kiro(path, "work")
    assert values["id"] == "work" and values["auth_method"] == "idc"
    assert values["client_id"] == "cid-ide" and values["client_secret"] == "csecret-ide"
    assert values["region"] == "eu-west-1"
    assert values["expires_at"] == "2025-09-01T10:00:00Z"  # from epoch milliseconds


def test_import_ide_idc_missing_registration(tmp_path):
    path = write_ide_idc(tmp_path / "cache")
    (tmp_path / "cache" / "abc123hash.json").unlink()
    with pytest.raises(ToknError, match="abc123hash"):
        import_kiro(path, None)


def test_import_cli_sqlite_idc(tmp_path):
    db = write_cli_db(tmp_path / "kiro-cli" / "data.sqlite3")
    values = import_kiro(db, None)
    assert values["auth_method"] == "idc"
    assert values["refresh_token"] == "aor-cli"
    assert values["client_id"] == "cid-cli" and values["client_secret"] == "csecret-cli"
    assert values["start_url"] == "https://view.awsapps.com/start"


def test_import_cli_sqlite_social_profile_from_state(tmp_path):
    db = write_cli_db(tmp_path / "data.sqlite3", idc=False)
    values = import_kiro(db, None)
    assert values["auth_method"] == "social" and values["refresh_token"] == "aor-cs"
    assert values["profile_arn"].endswith("profile/CLI")
    assert values["idp"] == "Github"


def test_import_default_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ToknError) as info:
        import_kiro(None, None)
    assert info.value.status == 404 and "kiro-auth-token.json" in info.value.message
    write_cli_db(tmp_path / ".local" / "share" / "kiro-cli" / "data.sqlite3")
    assert import_kiro(None, None)["refresh_token"] == "aor-cli"
    write_ide_social(tmp_path / ".aws" / "sso" / "cache")  # the IDE file wins
    assert import_kiro(None, None)["refresh_token"] == "aor-ide"


def test_import_reuses_id_of_same_account_and_numbers_new_ones(tmp_path):
    write_config({"accounts": [account("kiro", "kiro", refresh_token="aor-other")]})
    path = write_ide_social(tmp_path / "cache")
    first = import_kiro(path, None)
    assert first["id"] == "kiro-2"
    again = import_kiro(path, None)
    assert again["id"] == "kiro-2"
    assert [a["id"] for a in saved_accounts()] == ["kiro", "kiro-2"]


def test_import_drops_stale_token_cache(tmp_path):
    state.update(TOKEN_STATE, "kiro", {"access_token": "old", "refresh_token": "old"})
    import_kiro(write_ide_social(tmp_path / "c"), None)
    assert "kiro" not in state.read(TOKEN_STATE)


def test_import_via_cli(tmp_path, monkeypatch):
    from tokn.cli import app

    monkeypatch.setenv("HOME", str(tmp_path))
    write_ide_social(tmp_path / ".aws" / "sso" / "cache")
    res = CliRunner().invoke(app, ["import", "--from", "kiro", "--id", "mine",
                                   "--base-url", "https://runtime.us-east-1.kiro.dev"])
    assert res.exit_code == 0, res.output
    assert "mine" in res.output
    acc = saved_accounts()[0]
    assert acc["id"] == "mine" and acc["base_url"] == "https://runtime.us-east-1.kiro.dev"
    assert acc["refresh_token"] == "aor-ide"


# --- device flow -------------------------------------------------------------------------

class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps(monkeypatch):
    rec = Sleeps()
    monkeypatch.setattr(kiro, "_sleep", rec)
    return rec


def test_builder_id_device_login(sleeps):
    opened = []
    with FakeKiro(device_script=["authorization_pending", "slow_down",
                                 "authorization_pending"]) as fake:
        values = login_kiro("builder-id", oidc_url_override=fake.url, account_id="bid",
                            open_browser=opened.append,
                            base_url="https://q.us-east-1.amazonaws.com")
        reg = fake.requests_to("/client/register")[-1].json
        dev = fake.requests_to("/device_authorization")[-1].json
        polls = fake.requests_to("/token")
    assert reg["clientType"] == "public" and "codewhisperer:conversations" in reg["scopes"]
    assert dev["startUrl"] == kiro.BUILDER_ID_START_URL
    assert len(polls) == 4
    assert polls[-1].json["grantType"] == kiro.DEVICE_GRANT
    assert sleeps.waits == [1.0, 1.0, 6.0, 6.0]  # slow_down adds 5 s for good
    assert opened and "user_code=ABCD-EFGH" in opened[0]
    assert values["auth_method"] == "idc" and values["client_id"] == "client-1"
    assert values["refresh_token"] == "aor-1" and values["id"] == "bid"
    assert saved_accounts()[0]["client_secret"] == "secret-1"


@pytest.mark.parametrize("step,code", [("expired_token", "expired_token"),
                                       ("access_denied", "access_denied")])
def test_device_login_failures(sleeps, step, code):
    with FakeKiro(device_script=["authorization_pending", step]) as fake, \
            pytest.raises(ToknError) as info:
        login_kiro("builder-id", oidc_url_override=fake.url)
    assert info.value.code == code
    assert not paths.config_file().exists()


def test_idc_login_needs_start_url():
    with pytest.raises(ToknError, match="start-url"):
        login_kiro("idc")


# --- social PKCE ----------------------------------------------------------------------------

@pytest.mark.parametrize("casing", ["camel", "snake"])
def test_social_login_pkce(casing):
    def browser(url: str) -> None:  # the "user" signs in: follow the redirect to the callback
        r = httpx.get(url, follow_redirects=True, timeout=10)
        assert r.status_code == 200 and b"complete" in r.content

    with FakeKiro(token_casing=casing) as fake:
        values = login_kiro("google", auth_url=fake.url, open_browser=browser)
        login = fake.requests_to("/login")[-1]
        exchanges = fake.requests_to("/oauth/token")
    assert login.query["idp"] == ["Google"]
    assert login.query["code_challenge_method"] == ["S256"]
    assert login.query["redirect_uri"][0].startswith("http://localhost:")
    assert len(exchanges) == (1 if casing == "camel" else 2)
    assert values["auth_method"] == "social" and values["idp"] == "Google"
    assert values["profile_arn"] == fake.profile_arn
    assert saved_accounts()[0]["refresh_token"] == values["refresh_token"]


# --- refresh helper ----------------------------------------------------------------------

def test_refresh_helper_social_and_idc():
    async def go(fake):
        async with httpx.AsyncClient() as client:
            social = await kiro.refresh(client, auth_method="social",
                                        refresh_token="aor-initial",
                                        url=fake.url + "/refreshToken")
            idc = await kiro.refresh(client, auth_method="idc", refresh_token=social[
                "refresh_token"], url=fake.url + "/token", client_id="client-1",
                client_secret="secret-1")
            return social, idc

    with FakeKiro() as fake:
        social, idc = asyncio.run(go(fake))
        bodies = fake.refresh_bodies
    assert social["refresh_token"] == "aor-1" and social["profile_arn"]
    assert idc["refresh_token"] == "aor-2" and idc["access_token"] == "aoa-2"
    assert [b["kind"] for b in bodies] == ["social", "idc"]


def test_refresh_helper_idc_needs_client():
    async def go():
        async with httpx.AsyncClient() as client:
            await kiro.refresh(client, auth_method="idc", refresh_token="x", url="http://x")

    with pytest.raises(ToknError, match="client_id"):
        asyncio.run(go())


def test_persist_tokens_updates_only_that_account():
    write_config({"accounts": [account("a", "kiro", refresh_token="r-a"),
                               account("b", "kiro", refresh_token="r-b")]})
    assert kiro.persist_tokens("b", {"refresh_token": "r-b2", "access_token": "t",
                                     "expires_at": 100})
    got = {a["id"]: a for a in saved_accounts()}
    assert got["a"]["refresh_token"] == "r-a"
    assert got["b"]["refresh_token"] == "r-b2" and got["b"]["expires_at"] == \
        "1970-01-01T00:01:40Z"
    assert not kiro.persist_tokens("zzz", {"refresh_token": "x"})
