"""Kiro credentials: import from the Kiro IDE / kiro-cli, interactive login, refresh.

Three ways to get a Kiro account into tokn:

* :func:`import_account` reads what Kiro already stored:

  - Kiro IDE: ``~/.aws/sso/cache/kiro-auth-token.json`` (camelCase:
    ``accessToken``, ``refreshToken``, ``expiresAt``, ``authMethod``,
    ``provider``, ``region``, ``profileArn``; IdC adds ``clientIdHash``, whose
    ``~/.aws/sso/cache/<clientIdHash>.json`` holds ``clientId`` /
    ``clientSecret``);
  - kiro-cli: SQLite ``~/.local/share/kiro-cli/data.sqlite3`` (macOS:
    ``~/Library/Application Support/kiro-cli/data.sqlite3``), table
    ``auth_kv``, keys ``kirocli:social:token``, ``kirocli:odic:token`` and
    ``kirocli:odic:device-registration`` (snake_case JSON values).

* :func:`login` signs in interactively: the AWS SSO-OIDC device flow for
  Builder ID / IAM Identity Center (``register`` -> ``device_authorization``
  -> poll ``token``), or the Kiro social sign-in (Google / GitHub) with PKCE
  and a loopback callback.

* :func:`refresh` exchanges a refresh token (social: Kiro's
  ``/refreshToken``; IdC: SSO-OIDC ``/token``).  Used by the provider.

Every URL is overridable; all HTTP goes through an ``httpx.AsyncClient``
whose ``transport`` is injectable.  Nothing here runs an event loop: the CLI
calls ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import sqlite3
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tokn import config, paths, state
from tokn.auth import json_object
from tokn.endings import describe
from tokn.errors import ToknError

DEFAULT_REGION = "us-east-1"
BUILDER_ID_START_URL = "https://view.awsapps.com/start"
SOCIAL_AUTH_URL = "https://prod.us-east-1.auth.desktop.kiro.dev"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = (
    "codewhisperer:completions",
    "codewhisperer:analysis",
    "codewhisperer:conversations",
    "codewhisperer:transformations",
    "codewhisperer:taskassist",
)
CLIENT_NAME = "tokn"
SLOW_DOWN_STEP = 5.0
TOKEN_STATE = "kiro-tokens"
IDE_TOKEN_FILE = "kiro-auth-token.json"
CLI_TOKEN_KEYS = {"social": ":social:token", "idc": ":odic:token"}
CLI_REGISTRATION_SUFFIX = ":odic:device-registration"

# Serialises read-modify-write of the config file by this process.

# Resolved at call time so tests can monkeypatch ``tokn.auth.kiro._sleep``.
_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


# --- small helpers ------------------------------------------------------------------------

def social_refresh_url(region: str = DEFAULT_REGION) -> str:
    return f"https://prod.{region}.auth.desktop.kiro.dev/refreshToken"


def oidc_url(region: str = DEFAULT_REGION) -> str:
    return f"https://oidc.{region}.amazonaws.com"


def normalize_auth_method(value: Any, *, has_client: bool = False) -> str:
    """``social`` or ``idc`` from whatever a tool stored (``IdC``, ``builder-id``...)."""
    low = str(value or "").strip().lower().replace("_", "-")
    if low in ("idc", "builder-id", "builderid", "iam", "sso", "identity-center", "odic", "oidc"):
        return "idc"
    if low in ("social", "google", "github"):
        return "social"
    return "idc" if has_client else "social"


def parse_expiry(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string or an epoch (seconds or milliseconds)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    text = str(value).strip()
    try:
        return parse_expiry(float(text))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return value
    return None


def _say(console: Any, text: str) -> None:
    """Print for the person signing in; never hard-wrapped (URLs must stay pasteable)."""
    if console is not None and hasattr(console, "print"):
        console.print(text, highlight=False, markup=False, soft_wrap=True)
    else:
        print(text, file=sys.stderr)


def _client(transport: httpx.AsyncBaseTransport | None, timeout: float = 30.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=transport is None)




def _error_of(resp: httpx.Response) -> str:
    """OAuth error code of an SSO-OIDC answer (``error`` field, ``__type`` or header)."""
    data = json_object(resp)
    code = data.get("error") or data.get("__type") or resp.headers.get("x-amzn-errortype") or ""
    code = str(code).split(":")[0].split("#")[-1]
    mapping = {"AuthorizationPendingException": "authorization_pending",
               "SlowDownException": "slow_down", "ExpiredTokenException": "expired_token",
               "AccessDeniedException": "access_denied", "InvalidGrantException": "invalid_grant"}
    return mapping.get(code, code)


def _tokens_from(data: dict[str, Any], now: float) -> dict[str, Any]:
    """Normalised token answer (camelCase or snake_case)."""
    access = _pick(data, "accessToken", "access_token")
    if not access:
        raise ToknError("the Kiro token answer has no access token.", status=502,
                        code="kiro_token_invalid")
    expires_in = _pick(data, "expiresIn", "expires_in")
    expires_at = parse_expiry(_pick(data, "expiresAt", "expires_at"))
    if expires_at is None:
        try:
            expires_at = now + float(expires_in if expires_in is not None else 3600)
        except (TypeError, ValueError):
            expires_at = now + 3600
    return {"access_token": str(access),
            "refresh_token": _pick(data, "refreshToken", "refresh_token"),
            "expires_at": expires_at,
            "profile_arn": _pick(data, "profileArn", "profile_arn")}


# --- refresh ------------------------------------------------------------------------------

async def refresh(client: httpx.AsyncClient, *, auth_method: str, refresh_token: str,
                  url: str, client_id: str | None = None, client_secret: str | None = None,
                  headers: dict[str, str] | None = None, account_id: str = "kiro",
                  clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Exchange ``refresh_token``; returns ``access_token``, ``refresh_token`` (None when
    not rotated), ``expires_at`` (epoch) and ``profile_arn`` (None when absent).

    Social body ``{"refreshToken"}``; IdC body ``{"clientId", "clientSecret",
    "grantType": "refresh_token", "refreshToken"}``.
    """
    if not refresh_token:
        raise ToknError(f"Kiro account {account_id!r} has no refresh_token; run "
                        f"`tokn import --from kiro --id {account_id}` or "
                        f"`tokn login --provider kiro --id {account_id}`.",
                        status=401, code="missing_credentials")
    if auth_method == "idc":
        if not (client_id and client_secret):
            raise ToknError(f"Kiro account {account_id!r} signs in with IAM Identity Center / "
                            "Builder ID but has no client_id / client_secret; import it again "
                            "with `tokn import --from kiro`.", status=401,
                            code="missing_credentials")
        body = {"clientId": client_id, "clientSecret": client_secret,
                "grantType": "refresh_token", "refreshToken": refresh_token}
    else:
        body = {"refreshToken": refresh_token}
    try:
        resp = await client.post(url, json=body, headers={
            "content-type": "application/json", "accept": "application/json",
            **(headers or {})})
    except httpx.HTTPError as exc:
        raise ToknError(f"cannot reach {url} to refresh Kiro account {account_id!r}: "
                        f"{describe(exc)}", status=502,
                        code="kiro_refresh_failed") from exc
    if resp.status_code >= 400:
        detail = resp.text[:300].strip()
        if resp.status_code in (400, 401, 403):
            raise ToknError(
                f"Kiro rejected the refresh token of account {account_id!r} (HTTP "
                f"{resp.status_code}: {detail}). Refresh tokens are single-use: if the Kiro IDE "
                f"or kiro-cli refreshed it since, import again (`tokn import --from kiro --id "
                f"{account_id}`) or sign in (`tokn login --provider kiro --id {account_id}`).",
                status=401, code="kiro_refresh_rejected")
        raise ToknError(f"Kiro token refresh for account {account_id!r} failed: {url} answered "
                        f"{resp.status_code}: {detail}", status=502, code="kiro_refresh_failed",
                        retry_after=None)
    return _tokens_from(json_object(resp), clock())


# --- import -------------------------------------------------------------------------------

def default_ide_token_file() -> Path:
    return Path.home() / ".aws" / "sso" / "cache" / IDE_TOKEN_FILE


def default_cli_database() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "kiro-cli" / "data.sqlite3"
    return Path.home() / ".local" / "share" / "kiro-cli" / "data.sqlite3"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def read_ide_token(path: Path) -> dict[str, Any]:
    """Account fields from the Kiro IDE's token file (and its client registration)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToknError(f"no Kiro token at {path}; sign in to the Kiro IDE first, or use "
                        "`tokn login --provider kiro`.", status=404, code="not_found") from None
    except (OSError, ValueError) as exc:
        raise ToknError(f"cannot read {path}: {exc}", status=400, code="bad_token_file") from exc
    if not isinstance(data, dict) or not _pick(data, "refreshToken", "refresh_token"):
        raise ToknError(f"{path} holds no refreshToken; sign in to the Kiro IDE again.",
                        status=400, code="bad_token_file")
    out: dict[str, Any] = {
        "access_token": _pick(data, "accessToken", "access_token"),
        "refresh_token": _pick(data, "refreshToken", "refresh_token"),
        "expires_at": _pick(data, "expiresAt", "expires_at"),
        "region": _pick(data, "region"),
        "profile_arn": _pick(data, "profileArn", "profile_arn"),
        "idp": _pick(data, "provider"),
        "client_id": _pick(data, "clientId", "client_id"),
        "client_secret": _pick(data, "clientSecret", "client_secret"),
        "start_url": _pick(data, "startUrl", "start_url"),
    }
    client_hash = _pick(data, "clientIdHash", "client_id_hash")
    if client_hash and not (out["client_id"] and out["client_secret"]):
        reg_path = path.parent / f"{client_hash}.json"
        try:
            reg = json.loads(reg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ToknError(f"{path} names client registration {client_hash} but {reg_path} "
                            "is missing; sign in to the Kiro IDE again.", status=400,
                            code="bad_token_file") from None
        except (OSError, ValueError) as exc:
            raise ToknError(f"cannot read {reg_path}: {exc}", status=400,
                            code="bad_token_file") from exc
        if isinstance(reg, dict):
            out["client_id"] = _pick(reg, "clientId", "client_id")
            out["client_secret"] = _pick(reg, "clientSecret", "client_secret")
            out["region"] = out["region"] or _pick(reg, "region")
    out["auth_method"] = normalize_auth_method(
        _pick(data, "authMethod", "auth_method"),
        has_client=bool(out["client_id"] and out["client_secret"]))
    out["source"] = str(path)
    return out


def read_cli_database(path: Path) -> dict[str, Any]:
    """Account fields from kiro-cli's SQLite store (IdC preferred over social)."""
    if not path.exists():
        raise ToknError(f"no kiro-cli database at {path}; run `kiro-cli login` first.",
                        status=404, code="not_found")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ToknError(f"cannot open {path}: {exc}", status=400, code="bad_token_file") from exc
    try:
        try:
            rows = dict(conn.execute("SELECT key, value FROM auth_kv").fetchall())
        except sqlite3.Error as exc:
            raise ToknError(f"{path} has no readable auth_kv table ({exc}); is it kiro-cli's "
                            "data.sqlite3?", status=400, code="bad_token_file") from exc
        profile = None
        with contextlib.suppress(sqlite3.Error):
            row = conn.execute("SELECT value FROM state WHERE key = ?",
                               ("api.codewhisperer.profile",)).fetchone()
            if row:
                profile = json.loads(row[0])
    finally:
        conn.close()

    def value(suffix: str) -> dict[str, Any] | None:
        keys = sorted((k for k in rows if str(k).endswith(suffix)),
                      key=lambda k: (not str(k).startswith("kirocli:"), k))
        for key in keys:
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(rows[key])
                if isinstance(data, dict) and _pick(data, "refresh_token", "refreshToken",
                                                    "client_id", "clientId"):
                    return data
        return None

    idc, social = value(CLI_TOKEN_KEYS["idc"]), value(CLI_TOKEN_KEYS["social"])
    token, method = (idc, "idc") if idc else (social, "social")
    if token is None:
        raise ToknError(f"{path} holds no Kiro sign-in (auth_kv keys kirocli:social:token / "
                        "kirocli:odic:token); run `kiro-cli login` first.", status=404,
                        code="not_found")
    out: dict[str, Any] = {
        "access_token": _pick(token, "access_token", "accessToken"),
        "refresh_token": _pick(token, "refresh_token", "refreshToken"),
        "expires_at": _pick(token, "expires_at", "expiresAt"),
        "region": _pick(token, "region"),
        "profile_arn": _pick(token, "profile_arn", "profileArn"),
        "start_url": _pick(token, "start_url", "startUrl"),
        "idp": _pick(token, "provider"),
        "auth_method": method,
    }
    if method == "idc":
        reg = value(CLI_REGISTRATION_SUFFIX) or {}
        out["client_id"] = _pick(reg, "client_id", "clientId")
        out["client_secret"] = _pick(reg, "client_secret", "clientSecret")
        out["region"] = out["region"] or _pick(reg, "region")
    if not out["profile_arn"] and isinstance(profile, dict):
        out["profile_arn"] = _pick(profile, "arn", "profile_arn", "profileArn")
    out["source"] = f"{path} (auth_kv)"
    return out


def _existing_accounts(doc: Any) -> list[dict[str, Any]]:
    return [dict(t.unwrap()) if hasattr(t, "unwrap") else dict(t)
            for t in doc.get("accounts", [])]


def _default_id(doc: Any, fields: dict[str, Any]) -> str:
    accounts = _existing_accounts(doc)
    for acc in accounts:
        if acc.get("provider") != "kiro":
            continue
        if fields.get("refresh_token") and acc.get("refresh_token") == fields["refresh_token"]:
            return str(acc["id"])
        if fields.get("profile_arn") and acc.get("profile_arn") == fields["profile_arn"] \
                and acc.get("auth_method") == fields.get("auth_method"):
            return str(acc["id"])
    taken = {a.get("id") for a in accounts}
    if "kiro" not in taken:
        return "kiro"
    n = 2
    while f"kiro-{n}" in taken:
        n += 1
    return f"kiro-{n}"


def account_values(fields: dict[str, Any], *, account_id: str, base_url: str | None = None,
                   refresh_url: str | None = None) -> dict[str, Any]:
    """The ``[[accounts]]`` table for imported/signed-in Kiro credentials (no empty values)."""
    expires = parse_expiry(fields.get("expires_at"))
    values: dict[str, Any] = {
        "id": account_id, "provider": "kiro",
        "base_url": base_url, "refresh_url": refresh_url,
        "auth_method": fields.get("auth_method"),
        "access_token": fields.get("access_token"),
        "refresh_token": fields.get("refresh_token"),
        "expires_at": iso(expires) if expires else None,
        "region": fields.get("region"),
        "profile_arn": fields.get("profile_arn"),
        "client_id": fields.get("client_id"),
        "client_secret": fields.get("client_secret"),
        "start_url": fields.get("start_url"),
        "idp": fields.get("idp"),
    }
    if values["auth_method"] != "idc":
        values.pop("client_id")
        values.pop("client_secret")
    return {k: str(v) if not isinstance(v, (int, float, bool)) else v
            for k, v in values.items() if v not in (None, "")}


def save_account(values: dict[str, Any], path: Path | None = None) -> Path:
    """Add (or update) the account in the config file and drop its cached tokens."""
    with config.editing(path) as doc:
        config.add_account(doc, values)
    where = path or paths.config_file()
    with contextlib.suppress(OSError):
        state.update(TOKEN_STATE, values["id"], None)
    return where


def _account_for(fields: dict[str, Any], account_id: str | None, *, base_url: str | None,
                 refresh_url: str | None, save: bool,
                 config_path: Path | None) -> dict[str, Any]:
    """The account table for signed-in ``fields`` (id: given, else the matching or next
    free one), saved to the config file when ``save``."""
    doc = config.load_document(config_path)
    values = account_values(fields, account_id=account_id or _default_id(doc, fields),
                            base_url=base_url, refresh_url=refresh_url)
    if save:
        save_account(values, config_path)
    return values


def import_account(path: Path | None = None, account_id: str | None = None, *,
                   base_url: str | None = None, refresh_url: str | None = None,
                   save: bool = True, console: Any = None,
                   config_path: Path | None = None) -> dict[str, Any]:
    """Import the Kiro IDE's or kiro-cli's sign-in as a tokn account; returns its table.

    ``path``: the IDE token JSON or the kiro-cli SQLite file; default: the IDE
    file when it exists, else the kiro-cli database.  ``account_id``: default
    the existing Kiro account with the same refresh token, else ``kiro``,
    ``kiro-2``...  With ``save`` (default) the account is written to the
    config file at once.
    """
    if path is None:
        ide = default_ide_token_file()
        path = ide if ide.exists() else default_cli_database()
        if not path.exists():
            raise ToknError(f"found no Kiro sign-in: neither {ide} (Kiro IDE) nor {path} "
                            "(kiro-cli) exists. Sign in to Kiro first, pass the file "
                            "explicitly, or use `tokn login --provider kiro`.",
                            status=404, code="not_found")
    path = Path(path).expanduser()
    fields = read_cli_database(path) if _is_sqlite(path) or path.suffix in (
        ".sqlite3", ".sqlite", ".db") else read_ide_token(path)
    if not fields.get("refresh_token"):
        raise ToknError(f"{fields.get('source', path)} holds no refresh token; sign in to "
                        "Kiro again.", status=400, code="bad_token_file")
    values = _account_for(fields, account_id, base_url=base_url, refresh_url=refresh_url,
                          save=save, config_path=config_path)
    _say(console, f"imported Kiro {values.get('auth_method', 'social')} sign-in from "
                  f"{fields.get('source', path)}")
    return values


# --- interactive login --------------------------------------------------------------------

def _open(url: str, open_browser: bool | Callable[[str], Any]) -> Awaitable[Any] | None:
    if callable(open_browser):
        return asyncio.to_thread(open_browser, url)
    if open_browser:
        with contextlib.suppress(Exception):  # a browser is a convenience only
            webbrowser.open(url)
    return None


async def device_login(client: httpx.AsyncClient, *, oidc: str, start_url: str,
                       region: str, console: Any = None,
                       open_browser: bool | Callable[[str], Any] = True,
                       timeout: float | None = None,
                       clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """SSO-OIDC device flow; returns token fields incl. ``client_id`` / ``client_secret``."""
    oidc = oidc.rstrip("/")
    resp = await client.post(f"{oidc}/client/register", json={
        "clientName": CLIENT_NAME, "clientType": "public", "scopes": list(SCOPES),
        "grantTypes": [DEVICE_GRANT, "refresh_token"], "issuerUrl": start_url})
    reg = json_object(resp)
    if resp.status_code >= 400 or not reg.get("clientId"):
        raise ToknError(f"registering with {oidc} failed (HTTP {resp.status_code}: "
                        f"{resp.text[:200]})", status=502, code="kiro_login_failed")
    client_id, client_secret = str(reg["clientId"]), str(reg.get("clientSecret") or "")
    resp = await client.post(f"{oidc}/device_authorization", json={
        "clientId": client_id, "clientSecret": client_secret, "startUrl": start_url})
    dev = json_object(resp)
    if resp.status_code >= 400 or not dev.get("deviceCode"):
        raise ToknError(f"starting the device sign-in at {oidc} failed (HTTP "
                        f"{resp.status_code}: {resp.text[:200]}); check the start URL "
                        f"{start_url}.", status=502, code="kiro_login_failed")
    uri = str(dev.get("verificationUriComplete") or dev.get("verificationUri") or "")
    _say(console, f"Open {dev.get('verificationUri') or uri} and enter the code "
                  f"{dev.get('userCode')}" + (f"\n(or open {uri})" if uri else ""))
    opened = _open(uri, open_browser) if uri else None
    if opened is not None:
        await opened
    interval = float(dev.get("interval") or 5)
    expires = float(dev.get("expiresIn") or 600)
    deadline = clock() + (timeout if timeout is not None else expires)
    while True:
        if clock() >= deadline:
            raise ToknError("the sign-in code expired before it was approved; run the "
                            "login again.", status=408, code="expired_token")
        await _sleep(interval)
        resp = await client.post(f"{oidc}/token", json={
            "clientId": client_id, "clientSecret": client_secret,
            "deviceCode": dev["deviceCode"], "grantType": DEVICE_GRANT})
        if resp.status_code < 400:
            tokens = _tokens_from(json_object(resp), clock())
            tokens.update(client_id=client_id, client_secret=client_secret,
                          auth_method="idc", region=region, start_url=start_url)
            return tokens
        error = _error_of(resp)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error in ("expired_token", "expired"):
            raise ToknError("the sign-in code expired before it was approved; run the "
                            "login again.", status=408, code="expired_token")
        if error in ("access_denied", "denied"):
            raise ToknError("the sign-in was denied in the browser.", status=403,
                            code="access_denied")
        raise ToknError(f"device sign-in failed: {oidc}/token answered {resp.status_code}: "
                        f"{resp.text[:200]}", status=502, code="kiro_login_failed")


class _Callback:
    """A one-shot loopback HTTP server that catches the OAuth redirect."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.result: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            parts = urlsplit(target)
            if parts.path != self.path:
                body, status = b"not found", "404 Not Found"
            else:
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                ok = "code" in query and "error" not in query
                body = (b"<html><body><h3>tokn: Kiro sign-in complete.</h3>You can close "
                        b"this tab.</body></html>" if ok else
                        b"<html><body><h3>tokn: Kiro sign-in failed.</h3></body></html>")
                status = "200 OK"
                if not self.result.done():
                    self.result.set_result(query)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (OSError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


async def social_login(client: httpx.AsyncClient, *, auth_url: str, idp: str,
                       console: Any = None, open_browser: bool | Callable[[str], Any] = True,
                       timeout: float = 600.0, redirect_path: str = "/oauth/callback",
                       clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Kiro social sign-in (Google / GitHub): PKCE + loopback callback + token exchange.

    Peers disagree on the casing of the token-exchange body; camelCase
    (``code, codeVerifier, redirectUri``) is tried first, then snake_case.
    """
    auth_url = auth_url.rstrip("/")
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state_value = secrets.token_urlsafe(24)
    callback = _Callback(redirect_path)
    await callback.start()
    try:
        redirect_uri = f"http://localhost:{callback.port}{redirect_path}"
        url = f"{auth_url}/login?" + urlencode({
            "idp": idp, "redirect_uri": redirect_uri, "code_challenge": challenge,
            "code_challenge_method": "S256", "state": state_value})
        _say(console, f"Open this URL to sign in to Kiro with {idp}:\n{url}")
        opened = _open(url, open_browser)
        waiter = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(callback.result),
                                                        timeout))
        if opened is not None:
            await asyncio.gather(opened, return_exceptions=True)
        try:
            query = await waiter
        except TimeoutError:
            raise ToknError("no sign-in came back in time; run the login again.",
                            status=408, code="expired_token") from None
    finally:
        await callback.close()
    if query.get("error"):
        raise ToknError(f"Kiro sign-in failed: {query.get('error')} "
                        f"{query.get('error_description', '')}".strip(), status=403,
                        code="access_denied")
    if query.get("state") != state_value:
        raise ToknError("the sign-in callback carried the wrong state; run the login again.",
                        status=400, code="bad_state")
    code = query["code"]
    bodies = ({"code": code, "codeVerifier": verifier, "redirectUri": redirect_uri},
              {"code": code, "code_verifier": verifier, "redirect_uri": redirect_uri,
               "grant_type": "authorization_code"})
    last: httpx.Response | None = None
    for body in bodies:
        last = await client.post(f"{auth_url}/oauth/token", json=body)
        if last.status_code < 400:
            tokens = _tokens_from(json_object(last), clock())
            tokens.update(auth_method="social", idp=idp)
            return tokens
    assert last is not None
    raise ToknError(f"Kiro token exchange failed: {auth_url}/oauth/token answered "
                    f"{last.status_code}: {last.text[:200]}", status=502,
                    code="kiro_login_failed")


async def login(method: str = "builder-id", *, start_url: str | None = None,
                region: str | None = None, account_id: str | None = None,
                open_browser: bool | Callable[[str], Any] = True, no_browser: bool = False,
                base_url: str | None = None, refresh_url: str | None = None,
                oidc_url_override: str | None = None, auth_url: str | None = None,
                idp: str | None = None, console: Any = None,
                transport: httpx.AsyncBaseTransport | None = None, save: bool = True,
                timeout: float | None = None, config_path: Path | None = None,
                **_ignored: Any) -> dict[str, Any]:
    """Sign in to Kiro interactively and save the account; returns its table.

    ``method``: ``builder-id`` (AWS Builder ID device flow, default), ``idc``
    (IAM Identity Center device flow; needs ``start_url``), ``social``,
    ``google`` or ``github`` (Kiro social sign-in, PKCE).  ``open_browser``
    may be a callable that receives the URL (tests).  URLs: ``oidc_url_override``
    (default ``https://oidc.{region}.amazonaws.com``), ``auth_url`` (default
    ``https://prod.us-east-1.auth.desktop.kiro.dev``).
    """
    region = region or DEFAULT_REGION
    if no_browser:
        open_browser = False
    kind = method.strip().lower().replace("_", "-")
    try:
        tokens = await _sign_in(kind, method, transport, region=region, start_url=start_url,
                                oidc_url_override=oidc_url_override, auth_url=auth_url, idp=idp,
                                console=console, open_browser=open_browser, timeout=timeout)
    except httpx.TransportError as exc:
        raise ToknError(f"cannot reach {exc.request.url}: {exc or type(exc).__name__}; "
                        "check the network (and HTTPS_PROXY, if you use one).", status=502,
                        code="kiro_unreachable") from None
    values = _account_for(tokens, account_id, base_url=base_url, refresh_url=refresh_url,
                          save=save, config_path=config_path)
    _say(console, f"signed in to Kiro ({values['auth_method']})")
    return values


async def _sign_in(kind: str, method: str, transport: httpx.AsyncBaseTransport | None, *,
                   region: str, start_url: str | None, oidc_url_override: str | None,
                   auth_url: str | None, idp: str | None, console: Any,
                   open_browser: bool | Callable[[str], Any],
                   timeout: float | None) -> dict[str, Any]:
    """The sign-in of :func:`login` for method ``kind``; returns the token fields."""
    async with _client(transport) as client:
        if kind in ("builder-id", "builderid", "idc", "sso", "identity-center"):
            if kind in ("idc", "sso", "identity-center") and not start_url:
                raise ToknError("IAM Identity Center sign-in needs --start-url "
                                "(your organisation's https://….awsapps.com/start).",
                                status=400, code="missing_start_url")
            tokens = await device_login(
                client, oidc=oidc_url_override or oidc_url(region),
                start_url=start_url or BUILDER_ID_START_URL, region=region, console=console,
                open_browser=open_browser, timeout=timeout)
        elif kind in ("social", "google", "github"):
            name = idp or ("Github" if kind == "github" else "Google")
            tokens = await social_login(client, auth_url=auth_url or SOCIAL_AUTH_URL,
                                        idp=name, console=console, open_browser=open_browser,
                                        timeout=timeout or 600.0)
            tokens["region"] = region
        else:
            raise ToknError(f"unknown Kiro sign-in method {method!r}; use builder-id, idc, "
                            "google or github.", status=400, code="bad_method")
    return tokens


# --- persistence of refreshed tokens ------------------------------------------------------

def persist_tokens(account_id: str, tokens: dict[str, Any], *,
                   config_path: Path | None = None) -> bool:
    """Write refreshed tokens into the account's table in the config file, atomically.

    Returns False when the file has no such account (e.g. an in-memory config).
    """
    with config.editing(config_path) as doc:
        table = next((t for t in doc.get("accounts", []) if t.get("id") == account_id), None)
        if table is None:
            return False
        for key in ("access_token", "refresh_token", "profile_arn"):
            if tokens.get(key):
                table[key] = str(tokens[key])
        if tokens.get("expires_at"):
            table["expires_at"] = iso(float(tokens["expires_at"]))
    return True
