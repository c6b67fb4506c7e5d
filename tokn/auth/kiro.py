"""Kiro credentials: interactive sign-in and refresh (the files other Kiro tools
keep are read by :mod:`tokn.auth.kiro_files`).

* :func:`sign_in` signs in interactively: the AWS SSO-OIDC device flow for
  Builder ID / IAM Identity Center (``register`` -> ``device_authorization``
  -> poll ``token``), or the Kiro social sign-in (Google / GitHub) with PKCE
  and a loopback callback (:mod:`tokn.auth.oauth`).
* :func:`refresh` exchanges a refresh token (social: Kiro's
  ``/refreshToken``; IdC: SSO-OIDC ``/token``).  Used by the provider.
* :func:`persist_tokens` writes a rotated refresh token back to the account
  in the config file (under its lock).

Every URL is overridable; all HTTP goes through an ``httpx.AsyncClient``
whose ``transport`` is injectable.  Nothing here runs an event loop: the CLI
calls ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tokn import config
from tokn.auth import json_object
from tokn.auth.oauth import browser_sign_in, pkce_pair
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
METHODS = ("builder-id", "idc", "google", "github")

# Resolved at call time so tests can monkeypatch ``tokn.auth.kiro._sleep``.
_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
# Opens a URL for the person (``None``: only print it).
OpenBrowser = Callable[[str], Awaitable[None]] | None


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


def pick(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return value
    return None


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
    access = pick(data, "accessToken", "access_token")
    if not access:
        raise ToknError("the Kiro token answer has no access token.", status=502,
                        code="kiro_token_invalid")
    expires_in = pick(data, "expiresIn", "expires_in")
    expires_at = parse_expiry(pick(data, "expiresAt", "expires_at"))
    if expires_at is None:
        try:
            expires_at = now + float(expires_in if expires_in is not None else 3600)
        except (TypeError, ValueError):
            expires_at = now + 3600
    return {"access_token": str(access),
            "refresh_token": pick(data, "refreshToken", "refresh_token"),
            "expires_at": expires_at,
            "profile_arn": pick(data, "profileArn", "profile_arn")}


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


# --- interactive sign-in ------------------------------------------------------------------

async def device_login(client: httpx.AsyncClient, *, oidc: str, start_url: str,
                       region: str, say: Callable[[str], None],
                       open_browser: OpenBrowser = None, timeout: float | None = None,
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
    say(f"Open {dev.get('verificationUri') or uri} and enter the code "
        f"{dev.get('userCode')}" + (f"\n(or open {uri})" if uri else ""))
    if uri and open_browser is not None:
        await open_browser(uri)
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


async def social_login(client: httpx.AsyncClient, *, auth_url: str, idp: str,
                       say: Callable[[str], None], open_browser: OpenBrowser = None,
                       timeout: float = 600.0,
                       clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Kiro social sign-in (Google / GitHub): PKCE + loopback callback + token exchange.

    Peers disagree on the casing of the token-exchange body; camelCase
    (``code, codeVerifier, redirectUri``) is tried first, then snake_case.
    """
    auth_url = auth_url.rstrip("/")
    verifier, challenge = pkce_pair()
    state_value = secrets.token_urlsafe(24)
    query, redirect_uri = await browser_sign_in(
        lambda redirect_uri: f"{auth_url}/login?" + urlencode({
            "idp": idp, "redirect_uri": redirect_uri, "code_challenge": challenge,
            "code_challenge_method": "S256", "state": state_value}),
        name="Kiro", via=idp, say=say, open_browser=open_browser, timeout=timeout)
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


async def sign_in(client: httpx.AsyncClient, method: str = "builder-id", *,
                  say: Callable[[str], None], open_browser: OpenBrowser = None,
                  region: str | None = None, start_url: str | None = None,
                  oidc_url_override: str | None = None, auth_url: str | None = None,
                  idp: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Sign in to Kiro interactively; returns the token fields of the new sign-in.

    ``method``: ``builder-id`` (AWS Builder ID device flow, default), ``idc``
    (IAM Identity Center device flow; needs ``start_url``), ``social``,
    ``google`` or ``github`` (Kiro social sign-in, PKCE).  URLs:
    ``oidc_url_override`` (default ``https://oidc.{region}.amazonaws.com``),
    ``auth_url`` (default ``https://prod.us-east-1.auth.desktop.kiro.dev``).
    """
    region = region or DEFAULT_REGION
    kind = method.strip().lower().replace("_", "-")
    try:
        if kind in ("builder-id", "builderid", "idc", "sso", "identity-center"):
            if kind in ("idc", "sso", "identity-center") and not start_url:
                raise ToknError("IAM Identity Center sign-in needs --start-url "
                                "(your organisation's https://….awsapps.com/start).",
                                status=400, code="missing_start_url")
            return await device_login(
                client, oidc=oidc_url_override or oidc_url(region),
                start_url=start_url or BUILDER_ID_START_URL, region=region, say=say,
                open_browser=open_browser, timeout=timeout)
        if kind in ("social", "google", "github"):
            name = idp or ("Github" if kind == "github" else "Google")
            tokens = await social_login(client, auth_url=auth_url or SOCIAL_AUTH_URL,
                                        idp=name, say=say, open_browser=open_browser,
                                        timeout=timeout or 600.0)
            tokens["region"] = region
            return tokens
    except httpx.TransportError as exc:
        raise ToknError(f"cannot reach {exc.request.url}: {exc or type(exc).__name__}; "
                        "check the network (and HTTPS_PROXY, if you use one).", status=502,
                        code="kiro_unreachable") from None
    raise ToknError(f"unknown Kiro sign-in method {method!r}; use {', '.join(METHODS)}.",
                    status=400, code="bad_method")


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
