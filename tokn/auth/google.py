"""Google sign-in as the Gemini CLI does it: its OAuth client, its credentials
file, the refresh grant, and a browser sign-in with a loopback redirect.

Facts (the Gemini CLI's ``packages/core/src/code_assist/oauth2.ts``; Google's
OAuth 2.0 for installed apps):

* The CLI's OAuth client is a public "installed application" client: its id
  and secret ship in the CLI's source and are not secrets (Google documents
  that an installed app's secret cannot be kept).  tokn uses the same client,
  so a token the CLI minted refreshes here and vice versa.
* ``~/.gemini/oauth_creds.json`` holds ``access_token``, ``refresh_token``,
  ``scope``, ``token_type``, ``id_token`` and ``expiry_date`` (milliseconds
  since the epoch).
* ``POST https://oauth2.googleapis.com/token`` (form-encoded): the
  ``refresh_token`` grant answers ``{"access_token", "expires_in", "scope",
  "token_type"}`` and no new refresh token (Google does not rotate them); a
  dead one is 400 ``invalid_grant``.  The ``authorization_code`` grant (with
  the PKCE verifier and the same ``redirect_uri``) adds the refresh token.
* The browser page is ``https://accounts.google.com/o/oauth2/v2/auth`` with
  ``access_type=offline`` (for a refresh token) and a redirect to
  ``http://localhost:PORT/oauth2callback``; the e-mail comes from
  ``https://www.googleapis.com/oauth2/v2/userinfo``.  Without a browser on
  this machine the CLI redirects to ``https://codeassist.google.com/authcode``,
  a page showing the code, which the person pastes (``authWithUserCode``).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tokn.auth.oauth import browser_sign_in, pkce_pair
from tokn.errors import ToknError

CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
CLIENT_SECRET = "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"  # public: an installed app's client
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/userinfo.email",
          "https://www.googleapis.com/auth/userinfo.profile")
AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URL = "https://oauth2.googleapis.com/token"
USERINFO_URL = "https://www.googleapis.com/oauth2/v2/userinfo"
CALLBACK_PATH = "/oauth2callback"
USER_CODE_REDIRECT = "https://codeassist.google.com/authcode"
CLI_CREDS = Path("~/.gemini/oauth_creds.json")


@dataclass(frozen=True)
class GoogleUrls:
    """Where Google's sign-in lives (one base URL stands in for all three in tests)."""

    auth: str = AUTH_URL
    token: str = TOKEN_URL
    userinfo: str = USERINFO_URL

    @classmethod
    def under(cls, base: str | None) -> GoogleUrls:
        """The three endpoints under ``base`` (their real paths), or Google's own."""
        if not base:
            return cls()
        base = base.rstrip("/")
        return cls(f"{base}/o/oauth2/v2/auth", f"{base}/token", f"{base}/oauth2/v2/userinfo")


def cli_creds_path(path: str | None = None) -> Path:
    return Path(path).expanduser() if path else CLI_CREDS.expanduser()


def read_cli_creds(path: str | None = None) -> dict[str, Any]:
    """The account fields of the Gemini CLI's ``oauth_creds.json``: ``refresh_token``,
    and ``access_token`` / ``expires_at`` (epoch seconds) while they last."""
    where = cli_creds_path(path)
    try:
        data = json.loads(where.read_text())
    except FileNotFoundError:
        raise ToknError(f"no Gemini CLI sign-in at {where}; run `gemini` and choose "
                        "\"Login with Google\", or `tokn login --provider gemini-cli`.",
                        status=404, code="not_found") from None
    except (OSError, ValueError) as exc:
        raise ToknError(f"cannot read {where}: {exc}", status=400, code="unreadable") from None
    if not isinstance(data, dict) or not data.get("refresh_token"):
        raise ToknError(f"{where} holds no refresh_token; sign in to the Gemini CLI again.",
                        status=400, code="missing_credentials")
    fields: dict[str, Any] = {"refresh_token": str(data["refresh_token"])}
    expiry = data.get("expiry_date")
    if data.get("access_token") and isinstance(expiry, int | float):
        fields["access_token"] = str(data["access_token"])
        fields["expires_at"] = int(expiry / 1000)
    return fields


async def refresh(client: httpx.AsyncClient, *, token_url: str, refresh_token: str,
                  client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                  timeout: float = 30.0) -> tuple[str, float]:
    """A new access token and its lifetime (seconds) from the refresh grant; a
    :class:`ToknError` naming the fix when Google refuses."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": client_id, "client_secret": client_secret}
    data = await _token_call(client, token_url, form, timeout)
    return str(data["access_token"]), float(data.get("expires_in") or 3600)


async def _token_call(client: httpx.AsyncClient, url: str, form: dict[str, str],
                      timeout: float) -> dict[str, Any]:
    try:
        resp = await client.post(url, data=form, headers={"accept": "application/json"},
                                 timeout=timeout)
    except httpx.HTTPError as exc:
        raise ToknError(f"cannot reach Google's token endpoint {url}: {exc}", status=502,
                        code="upstream_unreachable") from None
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code >= 400 or not isinstance(data, dict) or not data.get("access_token"):
        error = data.get("error") if isinstance(data, dict) else None
        text = data.get("error_description") if isinstance(data, dict) else None
        if error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            raise ToknError(f"Google refused the sign-in ({error}: {text or ''}); run "
                            "`tokn login --provider gemini-cli` (or sign in to the Gemini CLI "
                            "again and `tokn import --from gemini-cli`).", status=401,
                            code="credentials_rejected")
        raise ToknError(f"Google's token endpoint answered {resp.status_code}: "
                        f"{(text or error or resp.text)[:200]}", status=502,
                        code="upstream_error")
    return data


async def email_of(client: httpx.AsyncClient, access_token: str, *, url: str = USERINFO_URL,
                   timeout: float = 15.0) -> str:
    """The signed-in person's e-mail ("" when Google does not say)."""
    try:
        resp = await client.get(url, headers={"authorization": f"Bearer {access_token}"},
                                timeout=timeout)
        data = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return ""
    return str(data.get("email") or "") if isinstance(data, dict) else ""


def _auth_url(urls: GoogleUrls, redirect_uri: str, state: str, challenge: str) -> str:
    return urls.auth + "?" + urlencode({
        "client_id": CLIENT_ID, "redirect_uri": redirect_uri, "response_type": "code",
        "scope": " ".join(SCOPES), "access_type": "offline", "prompt": "consent",
        "state": state, "code_challenge": challenge, "code_challenge_method": "S256"})


async def browser_login(client: httpx.AsyncClient, *, urls: GoogleUrls, say: Any,
                        open_browser: Any, timeout: float = 600.0) -> dict[str, Any]:
    """Sign in with Google in a browser (PKCE, loopback redirect) as the Gemini CLI's
    client: the account fields (``refresh_token``, ``access_token``,
    ``expires_at``, ``email``)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    query, redirect_uri = await browser_sign_in(
        lambda redirect_uri: _auth_url(urls, redirect_uri, state, challenge),
        name="the Gemini CLI's Google account", say=say, open_browser=open_browser,
        timeout=timeout, path=CALLBACK_PATH, via="Google")
    if not secrets.compare_digest(query.get("state", ""), state):
        raise ToknError("the sign-in came back with a wrong state; run the login again.",
                        status=403, code="access_denied")
    return await _exchange(client, urls, query.get("code", ""), redirect_uri, verifier)


async def user_code_login(client: httpx.AsyncClient, *, urls: GoogleUrls, say: Any,
                          ask: Any) -> dict[str, Any]:
    """Sign in on any device: Google shows a code (``codeassist.google.com/authcode``)
    that the person pastes here (``ask(label)``); the account fields as
    :func:`browser_login` gives them."""
    verifier, challenge = pkce_pair()
    url = _auth_url(urls, USER_CODE_REDIRECT, secrets.token_hex(32), challenge)
    say(f"Open this URL on any device, sign in with Google, and paste the code it shows:\n{url}")
    code = str(ask("authorization code") or "").strip()
    if not code:
        raise ToknError("no authorization code given; run the login again.", status=400,
                        code="missing_credentials")
    return await _exchange(client, urls, code, USER_CODE_REDIRECT, verifier)


async def _exchange(client: httpx.AsyncClient, urls: GoogleUrls, code: str, redirect_uri: str,
                    verifier: str) -> dict[str, Any]:
    data = await _token_call(client, urls.token, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code_verifier": verifier},
        30.0)
    if not data.get("refresh_token"):
        raise ToknError("Google gave no refresh token; remove tokn's access at "
                        "https://myaccount.google.com/permissions and sign in again.",
                        status=502, code="no_refresh_token")
    fields: dict[str, Any] = {
        "refresh_token": str(data["refresh_token"]), "access_token": str(data["access_token"]),
        "expires_at": int(time.time() + float(data.get("expires_in") or 3600))}
    email = await email_of(client, fields["access_token"], url=urls.userinfo)
    if email:
        fields["email"] = email
    return fields
