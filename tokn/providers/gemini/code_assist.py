"""The Gemini CLI's "Login with Google": Google OAuth tokens against Code Assist
(``cloudcode-pa.googleapis.com/v1internal``).

Wire facts (Gemini CLI 0.61: ``code_assist/server.ts``, ``setup.ts``,
``converter.ts``; see also ``tests/fakes/google.py``):

* Every call is ``POST {base}/v1internal:{method}`` with ``Authorization:
  Bearer <Google access token>``.  ``generateContent`` /
  ``streamGenerateContent?alt=sse`` take ``{"model", "project",
  "user_prompt_id", "request": <GenerateContentRequest>}`` and answer
  ``{"response": <GenerateContentResponse>, "traceId"}`` (each SSE event too).
* The project: ``loadCodeAssist`` answers ``currentTier`` and
  ``cloudaicompanionProject`` for an account already set up; otherwise
  ``onboardUser`` with the default ``allowedTiers`` entry starts a
  long-running operation, polled at ``GET {base}/v1internal/{name}`` until
  ``done``, whose ``response.cloudaicompanionProject.id`` is the project.  A
  tier with ``userDefinedCloudaicompanionProject`` (Standard) needs the
  person's own Google Cloud project (``settings.project``, the CLI's
  ``GOOGLE_CLOUD_PROJECT``).
* ``retrieveUserQuota`` ``{"project"}`` answers ``buckets`` of
  ``{modelId, tokenType, remainingFraction, resetTime}``.
* A spent quota is 429 with ``ErrorInfo.reason`` ``QUOTA_EXHAUSTED`` and
  ``metadata.quotaResetTimeStamp``: the account leaves rotation until then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx

from tokn import state
from tokn.auth import google
from tokn.auth.tokens import Refresher, Token
from tokn.config import AccountConfig
from tokn.convert.gemini.base import model_id
from tokn.convert.gemini.wire import (
    unwrap_code_assist_response,
    wrap_code_assist_request,
)
from tokn.errors import ToknError
from tokn.providers.base import ModelInfo, UpstreamResponse
from tokn.providers.gemini.api import GoogleProvider, unwrapped_events
from tokn.providers.setup import NO_BROWSER, Credentials, Option, Setup, Verified

TOKEN_STATE = "google-tokens"
PROJECTS = "gemini-projects"   # account id -> {"project", "tier", "tier_name", "owner"}
VERSION = "v1internal"
# The models the Gemini CLI offers on Code Assist (it has no listing endpoint);
# an account's own `models` adds to them.
DEFAULT_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                  "gemini-3-pro-preview", "gemini-3-flash-preview")
METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED",
            "pluginType": "GEMINI"}
ONBOARD_TIMEOUT = 120.0
REFRESH_AHEAD = 300.0  # renew an access token 5 minutes before it expires

GOOGLE_URL = Option("google_url", "Gemini CLI: one base URL standing in for Google's "
                                  "sign-in hosts (a relay; tests).")
USER_CODE = Option("user_code", "Gemini CLI: sign in on any device and paste the code Google "
                                "shows (no browser here).", flag=True)
PATH = Option("path", "Gemini CLI: the oauth_creds.json to read "
                      "(default ~/.gemini/oauth_creds.json).")


def owner_of(refresh_token: str) -> str:
    """What a cached access token is bound to (a new sign-in invalidates it)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:16]


class GoogleTokens:
    """How a Gemini CLI account's access tokens are fetched and stored
    (:class:`tokn.auth.tokens.TokenSource`)."""

    def __init__(self, provider: GeminiCliProvider, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.clock = clock

    async def fetch_token(self, current: Token | None) -> Token:
        p = self.provider
        access, lifetime = await google.refresh(
            p.client, token_url=p.token_url, refresh_token=p.refresh_token,
            client_id=str(p.option("client_id", google.CLIENT_ID)),
            client_secret=str(p.option("client_secret", google.CLIENT_SECRET)),
            timeout=min(p.account.timeouts.first_byte_secs, 60.0))
        now = self.clock()
        return Token(access, now + lifetime, now + max(lifetime - REFRESH_AHEAD, lifetime / 2))

    def token_from_record(self, record: dict[str, Any] | None) -> Token | None:
        if record and record.get("access_token"):
            expires = float(record.get("expires_at") or 0)
            return Token(str(record["access_token"]), expires, expires - REFRESH_AHEAD,
                         owner=str(record.get("owner") or ""))
        fields = self.provider.account.fields  # imported from the CLI, while it lasts
        if fields.get("access_token") and fields.get("expires_at"):
            expires = float(fields["expires_at"])
            return Token(str(fields["access_token"]), expires, expires - REFRESH_AHEAD,
                         owner=owner_of(self.provider.refresh_token))
        return None

    def token_record(self, token: Token) -> dict[str, Any]:
        return {"access_token": token.access, "expires_at": token.expires_at,
                "owner": token.owner}

    def token_saved(self, token: Token) -> None:
        return None  # Google does not rotate refresh tokens: nothing to write back


class GeminiCliProvider(GoogleProvider):
    """Gemini through Code Assist, signed in with Google as the Gemini CLI."""

    id: ClassVar[str] = "gemini-cli"
    display_name: ClassVar[str] = "Gemini CLI (Google sign-in)"
    default_base_url: ClassVar[str] = "https://cloudcode-pa.googleapis.com"
    paths: ClassVar[dict[str, str]] = {}
    key_field: ClassVar[str] = "refresh_token"
    login_options: ClassVar[tuple[Option, ...]] = (GOOGLE_URL, NO_BROWSER, USER_CODE)
    import_sources: ClassVar[tuple[str, ...]] = ("gemini-cli",)
    import_options: ClassVar[tuple[Option, ...]] = (PATH,)
    token_state: ClassVar[str] = TOKEN_STATE
    state_files: ClassVar[tuple[str, ...]] = (PROJECTS,)

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(account, client)
        self.tokens = Refresher(TOKEN_STATE, account.id, GoogleTokens(self, clock),
                                owner=owner_of(self.refresh_token), clock=clock)
        self._project_lock = asyncio.Lock()

    # --- credentials ---------------------------------------------------------------
    @property
    def refresh_token(self) -> str:
        return str(self.account.get("refresh_token") or "")

    @property
    def token_url(self) -> str:
        return self.account.refresh_url or str(self.option("token_url", google.TOKEN_URL))

    @property
    def userinfo_url(self) -> str:
        """Google's userinfo endpoint; beside the token endpoint when that one is
        overridden (a relay, a fake), so an overridden account asks nothing of Google."""
        explicit = self.option("userinfo_url")
        if explicit:
            return str(explicit)
        if self.account.refresh_url.endswith("/token"):
            return google.GoogleUrls.under(self.account.refresh_url[:-len("/token")]).userinfo
        return google.USERINFO_URL

    @property
    def can_refresh(self) -> bool:
        return True

    async def credentials(self, *, refresh: bool = False,
                          failed: str | None = None) -> dict[str, str]:
        self.api_key()  # a 401 naming the login when there is no refresh token
        token = await self.tokens.token(refresh=refresh, failed=failed)
        return {"authorization": f"Bearer {token.access}"}

    def static_headers(self) -> dict[str, str]:
        return {"user-agent": str(self.option("user_agent", "GeminiCLI/0.61.0 (linux; x64)"))}

    # --- the project ---------------------------------------------------------------
    async def _call(self, method: str, body: dict[str, Any] | None = None, *,
                    get: str | None = None) -> dict[str, Any]:
        """A Code Assist call (``POST :method``, or ``GET /{get}``) answered with JSON."""
        base = await self.base_url()
        headers = {**self.static_headers(), "accept": "application/json"}
        if get is not None:
            url = f"{base}/{VERSION}/{get}"
            response = await self.authorized(lambda creds: self.client.get(
                url, headers={**headers, **creds}, timeout=self.http_timeout()))
        else:
            url = f"{base}/{VERSION}:{method}"
            response = await self.post(url, {**headers, "content-type": "application/json"},
                                       json=body or {})
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if response.status_code >= 400 or not isinstance(data, dict):
            error = (data or {}).get("error") if isinstance(data, dict) else None
            message = error.get("message") if isinstance(error, dict) else raw[:200]
            status = 401 if response.status_code in (401, 403) else 502
            raise ToknError(f"account {self.account_id}: Code Assist {method or get} answered "
                            f"{response.status_code}: {message}", status=status,
                            code="upstream_error", account=self.account_id)
        return data

    async def project_info(self) -> dict[str, Any]:
        """The account's Code Assist project and tier: cached, else discovered
        (``loadCodeAssist``, onboarding the account when it is new)."""
        owner = owner_of(self.refresh_token)
        cached = state.read(PROJECTS).get(self.account_id)
        if isinstance(cached, dict) and cached.get("owner") == owner and cached.get("project"):
            return cached
        async with self._project_lock:
            cached = state.read(PROJECTS).get(self.account_id)
            if isinstance(cached, dict) and cached.get("owner") == owner \
                    and cached.get("project"):
                return cached
            info = {**await self._discover(), "owner": owner}
            await asyncio.to_thread(state.update, PROJECTS, self.account_id, info)
            return info

    def forget_project(self) -> None:
        if self.account_id in state.read(PROJECTS):
            state.update(PROJECTS, self.account_id, None)

    async def _discover(self) -> dict[str, Any]:
        configured = str(self.option("project", "")) or None
        load = await self._call("loadCodeAssist", {
            "cloudaicompanionProject": configured,
            "metadata": {**METADATA, "duetProject": configured}})
        current = load.get("currentTier")
        if isinstance(current, dict):
            project = load.get("cloudaicompanionProject") or configured
            if isinstance(project, dict):
                project = project.get("id")
            if not project:
                raise self._needs_project(current)
            return {"project": str(project), "tier": current.get("id"),
                    "tier_name": current.get("name")}
        tiers = [t for t in load.get("allowedTiers") or [] if isinstance(t, dict)]
        tier = next((t for t in tiers if t.get("isDefault")), None) or {"id": "legacy-tier"}
        body: dict[str, Any] = {"tierId": tier.get("id"), "metadata": dict(METADATA)}
        if tier.get("id") != "free-tier":
            if not configured and tier.get("userDefinedCloudaicompanionProject"):
                raise self._needs_project(tier)
            body["cloudaicompanionProject"] = configured
            body["metadata"]["duetProject"] = configured
        operation = await self._call("onboardUser", body)
        poll = float(self.option("onboard_poll_secs", 2.0))
        deadline = time.monotonic() + ONBOARD_TIMEOUT
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise ToknError(f"account {self.account_id}: Code Assist onboarding did not "
                                f"finish within {ONBOARD_TIMEOUT:.0f} s; try again.",
                                status=504, code="onboarding_timeout")
            await asyncio.sleep(poll)
            name = operation.get("name")
            operation = await (self._call("", get=name) if name
                               else self._call("onboardUser", body))
        project = ((operation.get("response") or {}).get("cloudaicompanionProject") or {})
        project_id = project.get("id") if isinstance(project, dict) else project
        if not (project_id or configured):
            raise self._needs_project(tier)
        return {"project": str(project_id or configured), "tier": tier.get("id"),
                "tier_name": tier.get("name")}

    def _needs_project(self, tier: Mapping[str, Any]) -> ToknError:
        return ToknError(
            f"account {self.account_id}: the {tier.get('name') or tier.get('id')} tier needs "
            "your Google Cloud project: `tokn config set --account "
            f"{self.account_id} settings.project PROJECT_ID` (the Gemini CLI's "
            "GOOGLE_CLOUD_PROJECT).", status=400, code="project_required")

    # --- calls ---------------------------------------------------------------------
    async def call_for(self, model: str, method: str,
                       request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        project = (await self.project_info())["project"]
        envelope = wrap_code_assist_request({**request, "model": model_id(model)},
                                            project=project,
                                            user_prompt_id=uuid.uuid4().hex)
        url = f"{await self.base_url()}/{VERSION}:{method}"
        return (url + "?alt=sse" if method == "streamGenerateContent" else url), envelope

    async def answer(self, response: httpx.Response, stream: bool) -> UpstreamResponse:
        """Code Assist's answer without its envelope: plain Gemini, as every
        Gemini reader (and a Gemini client served as-is) expects it."""
        if response.status_code == 403:  # the project may be gone: discover it again
            self.forget_project()
        if response.status_code >= 400:
            return await super().answer(response, stream)
        if stream:
            return UpstreamResponse(response.status_code, response.headers, "gemini", True,
                                    _response=response, _chunks=unwrapped_events(
                                        response, unwrap_code_assist_response))
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        try:
            body = json.dumps(unwrap_code_assist_response(json.loads(raw))).encode()
        except ValueError:
            body = raw  # not JSON: the pipeline reports it as such
        return UpstreamResponse(response.status_code, response.headers, "gemini", False,
                                _body=body)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m, formats=self.formats) for m in DEFAULT_MODELS]

    async def switch_target(self, path: str, body: bytes | None) -> tuple[str, bytes | None]:
        """A switched Code Assist call names this account's project, not the client's."""
        if not body or not path.startswith(f"/{VERSION}:"):
            return path, body
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return path, body
        if not isinstance(data, dict) or "project" not in data:
            return path, body
        data["project"] = (await self.project_info())["project"]
        return path, json.dumps(data).encode()

    async def describe(self) -> dict[str, Any]:
        """Tier, project and per-model quota for ``tokn account show``; never raises."""
        out: dict[str, Any] = {}
        try:
            info = await self.project_info()
            out = {"plan": info.get("tier_name") or info.get("tier"), "tier": info.get("tier"),
                   "project": info.get("project")}
            quota = await self._call("retrieveUserQuota", {"project": info.get("project")})
        except (httpx.HTTPError, ToknError, ValueError, TypeError) as exc:
            message = (exc.message if isinstance(exc, ToknError) else str(exc)) \
                or type(exc).__name__
            return {**out, "quota_error": message}
        windows = []
        for bucket in quota.get("buckets") or []:
            if not isinstance(bucket, dict):
                continue
            left = bucket.get("remainingFraction")
            used = round((1 - float(left)) * 100, 1) if isinstance(left, int | float) else None
            windows.append({"kind": bucket.get("modelId") or "quota",
                            "window": str(bucket.get("tokenType") or "").lower() or None,
                            "used_percent": used, "resets_at": bucket.get("resetTime")})
        return {**out, "quota": windows}

    # --- account setup -------------------------------------------------------------
    @classmethod
    async def login(cls, setup: Setup, *, google_url: str | None = None,
                    no_browser: bool = False, user_code: bool = False) -> Credentials:
        """Sign in with Google as the Gemini CLI does: in a browser coming back to
        tokn, or (``user_code``) anywhere, pasting the code Google shows."""
        urls = google.GoogleUrls.under(google_url)
        async with setup.client() as client:
            if user_code:
                fields = await google.user_code_login(client, urls=urls, say=setup.say,
                                                      ask=setup.ask_secret)
            else:
                fields = await google.browser_login(
                    client, urls=urls, say=setup.say,
                    open_browser=None if no_browser else setup.open_browser)
        if google_url:
            fields["refresh_url"] = urls.token  # the userinfo endpoint is found beside it
        return Credentials(fields, source="Google sign-in")

    @classmethod
    async def import_(cls, source: str, setup: Setup, *,
                      path: str | None = None) -> Credentials:
        """The Gemini CLI's own sign-in (``~/.gemini/oauth_creds.json``)."""
        if source != "gemini-cli":
            raise ToknError(f"provider {cls.id} cannot import from {source!r}.", status=400)
        return Credentials(google.read_cli_creds(path),
                           source=str(google.cli_creds_path(path)))

    async def verify(self) -> Verified:
        """A token from the refresh token, and the account's Code Assist project."""
        headers = await self.credentials()
        email = await google.email_of(
            self.client, headers["authorization"].removeprefix("Bearer "),
            url=self.userinfo_url)
        info = await self.project_info()
        who = f"{email}, " if email else ""
        return Verified(f"{who}project {info['project']}, {info.get('tier_name') or 'tier ?'}",
                        fields={"email": email} if email else {})

    @classmethod
    def same_account(cls, existing: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        if existing.get("provider") != cls.id:
            return False
        if new.get("email") and existing.get("email") == new.get("email"):
            return True
        return super().same_account(existing, new)

    @classmethod
    def id_hint(cls, fields: Mapping[str, Any]) -> str:
        return str(fields.get("email") or "").split("@", 1)[0]
