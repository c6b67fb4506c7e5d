"""GitHub Copilot: a GitHub token exchanged for short-lived Copilot API tokens.

Account fields::

    [[accounts]]
    id = "copilot"
    provider = "github-copilot"
    github_token = "ghu_…"                 # from `tokn login` / `tokn import`
    # base_url = "https://api.business.githubcopilot.com"   # API base override
    # refresh_url = "https://ghe.example/api/v3/copilot_internal/v2/token"
    # github_base_url = "https://github.com"                # device-flow host
    # github_api_url = "https://api.github.com"
    [accounts.settings]
    # initiator_mode = "auto"              # auto | always_user | always_agent
    # editor_version = "vscode/1.104.1"    # any identity header, `-` or `_` spelling
    # token_refresh_margin = 300           # seconds before expiry to refresh
    # headers = { "x-extra" = "1" }        # extra headers on every API call

API base: ``base_url`` override, else ``endpoints.api`` from the token
exchange, else ``https://api.githubcopilot.com``.

The Copilot token is cached in memory and in the 0600 state file
``copilot-tokens.json`` (keyed by account id, bound to a hash of the GitHub
token), refreshed ahead of expiry; one exchange at a time per account however
many requests wait for it (:mod:`tokn.auth.tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx

from tokn import state
from tokn.auth import github, importers
from tokn.auth.github import DEFAULT_API_URL, DEFAULT_GITHUB_URL, api_url_for
from tokn.auth.tokens import Refresher, Token
from tokn.config import AccountConfig
from tokn.convert import PLAIN, Dialect
from tokn.endings import describe
from tokn.errors import ToknError
from tokn.initiator import has_image
from tokn.providers.base import ModelInfo, Provider, header
from tokn.providers.setup import ENV_VAR, NO_BROWSER, Credentials, Option, Setup, Verified

DEFAULT_API_BASE = "https://api.githubcopilot.com"
TOKEN_STATE = "copilot-tokens"
INFO_STATE = "account-info"
DEFAULT_REFRESH_MARGIN = 300.0
# Identity headers Copilot expects from an editor.  Values drift: every one is
# overridable per account in [accounts.settings] (`editor-version` or `editor_version`).
DEFAULT_IDENTITY: dict[str, str] = {
    "editor-version": "vscode/1.104.1",
    "editor-plugin-version": "copilot-chat/0.31.3",
    "user-agent": "GitHubCopilotChat/0.31.3",
    "copilot-integration-id": "vscode-chat",
    "openai-intent": "conversation-panel",
    "x-github-api-version": "2025-05-01",
}
# Headers the GitHub REST API (token exchange, user info) gets.
_GITHUB_IDENTITY = ("editor-version", "editor-plugin-version", "user-agent",
                    "x-github-api-version")
# Models that take `max_completion_tokens` and reject `max_tokens` on chat completions.
MAX_COMPLETION_TOKENS_RE = re.compile(r"^(o\d|gpt-5)", re.I)
ENDPOINT_FORMATS = {
    "/chat/completions": "chat",
    "/responses": "responses",
    "/v1/messages": "messages",
    "/embeddings": "embeddings",
}
# Account-setup options (`tokn login`, `tokn import`).
GITHUB_URL = Option("github_url", "GitHub host of the account and its device flow (default "
                    "https://github.com).")
GITHUB_API_URL = Option("github_api_url", "GitHub API URL (default https://api.github.com).")
HOST = Option("host", "GitHub host to look up (gh, copilot-plugin; default github.com).")


def _owner(github_token: str) -> str:
    return hashlib.sha256(github_token.encode()).hexdigest()[:16]


class CopilotProvider(Provider):
    chat_stream_quirks = True  # split choices, tool-call indexes from 1 (see convert/chat.py)
    shows_identity = True      # the editor identity it sends (`tokn headers`)
    id: ClassVar[str] = "github-copilot"
    ids: ClassVar[tuple[str, ...]] = ("copilot",)
    display_name: ClassVar[str] = "GitHub Copilot"
    formats: ClassVar[frozenset[str]] = frozenset({"chat", "responses", "messages", "embeddings"})
    default_base_url: ClassVar[str] = DEFAULT_API_BASE
    paths: ClassVar[dict[str, str]] = {
        "chat": "/chat/completions",
        "responses": "/responses",
        "messages": "/v1/messages",
        "embeddings": "/embeddings",
        "models": "/models",
        "count_tokens": "/v1/messages/count_tokens",
    }
    key_field: ClassVar[str] = "github_token"
    env_vars: ClassVar[tuple[str, ...]] = ("GH_TOKEN", "GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN")
    login_options: ClassVar[tuple[Option, ...]] = (GITHUB_URL, GITHUB_API_URL, NO_BROWSER)
    import_sources: ClassVar[tuple[str, ...]] = ("gh", "copilot-plugin", "env")
    import_options: ClassVar[tuple[Option, ...]] = (HOST, GITHUB_URL, GITHUB_API_URL, ENV_VAR)
    account_id_prefix: ClassVar[str] = "copilot"
    token_state: ClassVar[str] = TOKEN_STATE

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(account, client)
        self._clock = clock
        self.tokens = Refresher(TOKEN_STATE, account.id, self, owner=_owner(self.github_token),
                                clock=clock)

    # --- options (``option()`` comes from Provider) ----------------------------
    @property
    def github_token(self) -> str:
        return str(self.account.get("github_token") or "")

    @property
    def github_url(self) -> str:
        return str(self.option("github_base_url", DEFAULT_GITHUB_URL)).rstrip("/")

    @property
    def github_api_url(self) -> str:
        explicit = self.option("github_api_url")
        if explicit:
            return str(explicit).rstrip("/")
        if self.option("github_base_url"):
            return api_url_for(self.github_url)
        return DEFAULT_API_URL

    @property
    def token_url(self) -> str:
        url = self.account.refresh_url or self.option("refresh_url")
        return str(url).rstrip("/") if url else f"{self.github_api_url}/copilot_internal/v2/token"

    @property
    def user_url(self) -> str:
        return f"{self.github_api_url}/copilot_internal/user"

    def identity_headers(self) -> dict[str, str]:
        """The editor identity (defaults, each overridable), without credentials."""
        out = {}
        for name, default in DEFAULT_IDENTITY.items():
            value = self.option(name, self.option(name.replace("-", "_"), default))
            out[name] = str(value)
        extra = self.account.settings.get("headers")
        if isinstance(extra, dict):
            out.update({str(k).lower(): str(v) for k, v in extra.items()})
        return out

    def _github_headers(self) -> dict[str, str]:
        ident = self.identity_headers()
        return {"authorization": f"token {self.github_token}", "accept": "application/json",
                **{k: ident[k] for k in _GITHUB_IDENTITY if k in ident}}

    # --- Copilot token (a TokenSource for tokn.auth.tokens.Refresher) ---------------
    @property
    def can_refresh(self) -> bool:
        return True

    def token_from_record(self, record: dict[str, Any] | None) -> Token | None:
        if not isinstance(record, dict):
            return None
        try:
            return Token(str(record["token"]), float(record["expires_at"]),
                         float(record["refresh_at"]), owner=str(record.get("owner") or ""),
                         data={"fetched_at": float(record.get("fetched_at", 0)),
                               "api": str(record.get("api") or ""),
                               "sku": str(record.get("sku") or "")})
        except (KeyError, TypeError, ValueError):
            return None

    def token_record(self, token: Token) -> dict[str, Any]:
        return {"token": token.access, "expires_at": token.expires_at,
                "refresh_at": token.refresh_at, "owner": token.owner, **token.data}

    def token_saved(self, token: Token) -> None:
        """Nothing beyond the state file: the GitHub token does not change."""

    async def fetch_token(self, current: Token | None) -> Token:
        """Exchange the GitHub token for a Copilot token."""
        if not self.github_token:
            raise ToknError(
                f"account {self.account_id!r} has no github_token; "
                f"run `tokn login --id {self.account_id}`.",
                status=401, code="missing_credentials")
        url = self.token_url
        try:
            resp = await self.client.get(url, headers=self._github_headers())
        except httpx.HTTPError as exc:
            raise ToknError(
                f"cannot reach {url} to get a Copilot token for account {self.account_id!r}: "
                f"{describe(exc)}", status=502, code="token_exchange_failed") from exc
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        detail = data.get("message") if isinstance(data.get("message"), str) else ""
        if not detail and isinstance(data.get("error_details"), dict):
            detail = str(data["error_details"].get("message") or "")
        detail = detail or resp.text[:200].strip()
        aid = self.account_id
        if resp.status_code == 401:
            raise ToknError(f"GitHub token for account {aid} was rejected; run "
                            f"`tokn login --id {aid}`.", status=401, code="github_token_rejected")
        if resp.status_code in (403, 404):
            raise ToknError(
                f"account {aid} cannot use Copilot: no Copilot subscription, or Copilot is not "
                f"enabled for this GitHub account/token (GitHub answered {resp.status_code}"
                f"{': ' + detail if detail else ''}).", status=403, code="copilot_not_enabled")
        if resp.status_code == 429:
            retry = resp.headers.get("retry-after")
            raise ToknError(f"GitHub rate-limited the Copilot token exchange for account {aid}.",
                            status=429, code="rate_limited",
                            retry_after=float(retry) if retry and retry.isdigit() else None)
        if resp.status_code >= 400 or not data.get("token"):
            raise ToknError(
                f"Copilot token exchange for account {aid} failed: {url} answered "
                f"{resp.status_code}{': ' + detail if detail else ''}",
                status=502, code="token_exchange_failed")
        now = self._clock()
        refresh_in = data.get("refresh_in")
        try:
            expires_at = float(data["expires_at"])
        except (KeyError, TypeError, ValueError):
            expires_at = now + (float(refresh_in) + 60 if refresh_in else 1500.0)
        margin = float(self.option("token_refresh_margin", DEFAULT_REFRESH_MARGIN))
        refresh_at = expires_at - margin
        if isinstance(refresh_in, (int, float)) and refresh_in > 0:
            refresh_at = min(refresh_at, now + float(refresh_in))
        if refresh_at <= now:               # short-lived token: refresh at half its life
            refresh_at = now + max(expires_at - now, 0.0) / 2
        endpoints = data.get("endpoints") if isinstance(data.get("endpoints"), dict) else {}
        return Token(str(data["token"]), expires_at, refresh_at,
                     owner=_owner(self.github_token),
                     data={"fetched_at": now, "api": str(endpoints.get("api") or "").rstrip("/"),
                           "sku": str(data.get("sku") or "")})

    async def credentials(self, *, refresh: bool = False,
                          failed: str | None = None) -> dict[str, str]:
        tok = await self.tokens.token(refresh=refresh, failed=failed)
        return {"authorization": f"Bearer {tok.access}"}

    async def base_url(self) -> str:
        if self.account.base_url:
            return self.account.base_url.rstrip("/")
        tok = await self.tokens.token()
        return (tok.data.get("api") or DEFAULT_API_BASE).rstrip("/")

    # --- requests ------------------------------------------------------------------
    def static_headers(self) -> dict[str, str]:
        return {**self.identity_headers(), "x-request-id": str(uuid.uuid4())}

    def request_headers(self, fmt: str, body: Mapping[str, Any] | None,
                        inbound: Mapping[str, str] | None = None) -> dict[str, str]:
        """Per-request headers: ``x-initiator`` and, with an image, the vision flag."""
        headers: dict[str, str] = {}
        if fmt == "embeddings":
            return headers
        body = body if isinstance(body, Mapping) else {}
        if fmt != "count_tokens":           # only completions are billed
            headers["x-initiator"] = self.initiator(fmt, body, inbound or {})
        if has_image(body.get("messages")) or has_image(body.get("input")) \
                or header(inbound, "copilot-vision-request") == "true":
            headers["copilot-vision-request"] = "true"
        return headers

    def needs_max_completion_tokens(self, model: str) -> bool:
        extra = self.option("max_completion_tokens_models", [])
        if isinstance(extra, list) and any(model.startswith(str(p)) for p in extra):
            return True
        return bool(MAX_COMPLETION_TOKENS_RE.match(model or ""))

    def prepare(self, fmt: str, body: dict[str, Any],
                inbound: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        if fmt == "chat" and "max_tokens" in body \
                and self.needs_max_completion_tokens(str(body.get("model") or "")):
            body = dict(body)
            value = body.pop("max_tokens")
            body.setdefault("max_completion_tokens", value)
        return body, self.request_headers(fmt, body, inbound)

    def dialect(self, fmt: str, model: str) -> Dialect:
        # Copilot's chat endpoint caches Claude models at `copilot_cache_control`
        # markers on messages and tools (captured Copilot CLI traffic in
        # github/gh-aw pkg/workflow/test_data/sample_copilot_log.txt; VS Code
        # release notes 1.104); its Responses endpoint takes prompt_cache_key.
        if fmt == "chat" and model.lower().startswith("claude"):
            return Dialect(cache_control="copilot")
        if fmt == "responses":
            return Dialect(prompt_cache_key=True)
        return PLAIN

    # --- models -------------------------------------------------------------------
    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        caps = item.get("capabilities") if isinstance(item.get("capabilities"), dict) else {}
        limits = caps.get("limits") if isinstance(caps.get("limits"), dict) else {}
        supports = caps.get("supports") if isinstance(caps.get("supports"), dict) else {}
        formats = {ENDPOINT_FORMATS[e] for e in item.get("supported_endpoints") or ()
                   if e in ENDPOINT_FORMATS}
        if not formats:
            formats = {"embeddings"} if caps.get("type") == "embeddings" else {"chat"}
        context = limits.get("max_context_window_tokens")
        if not context and limits.get("max_prompt_tokens"):
            context = int(limits["max_prompt_tokens"]) + int(limits.get("max_output_tokens") or 0)
        reasoning_keys = ("reasoning_effort", "max_thinking_budget", "adaptive_thinking",
                          "thinking")
        capabilities = {
            "type": caps.get("type"),
            "family": caps.get("family"),
            "streaming": supports.get("streaming"),
            "tool_calls": supports.get("tool_calls"),
            "parallel_tool_calls": supports.get("parallel_tool_calls"),
            "vision": supports.get("vision"),
            "structured_outputs": supports.get("structured_outputs"),
            "max_output_tokens": limits.get("max_output_tokens"),
            "max_prompt_tokens": limits.get("max_prompt_tokens"),
        }
        return ModelInfo(
            str(item.get("id")),
            formats=frozenset(formats),
            capabilities={k: v for k, v in capabilities.items() if v is not None},
            context_window=int(context) if context else None,
            reasoning=True if any(supports.get(k) for k in reasoning_keys) else None,
            raw=item,
        )

    # --- facts ---------------------------------------------------------------------
    async def describe(self) -> dict[str, Any]:
        """Plan and quotas from ``copilot_internal/user``, plus token facts."""
        out: dict[str, Any] = {}
        url = self.user_url
        try:
            resp = await self.client.get(url, headers=self._github_headers())
        except httpx.HTTPError as exc:
            raise ToknError(f"cannot reach {url}: {describe(exc)}",
                            status=502, code="upstream_error") from exc
        if resp.status_code == 401:
            raise ToknError(f"GitHub token for account {self.account_id} was rejected; run "
                            f"`tokn login --id {self.account_id}`.", status=401,
                            code="github_token_rejected")
        if resp.status_code >= 400:
            raise ToknError(f"{url} answered {resp.status_code}: {resp.text[:200]}",
                            status=502, code="upstream_error")
        try:
            data = resp.json()
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        for key in ("login", "copilot_plan", "access_type_sku", "chat_enabled",
                    "quota_reset_date", "organization_login_list"):
            if data.get(key) not in (None, ""):
                out[key.replace("copilot_plan", "plan")] = data[key]
        quotas = {}
        snapshots = data.get("quota_snapshots")
        if isinstance(snapshots, dict):
            for name, snap in snapshots.items():
                if isinstance(snap, dict):
                    quotas[name] = {k: snap[k] for k in (
                        "entitlement", "remaining", "percent_remaining", "unlimited",
                        "overage_permitted", "overage_count") if k in snap}
        if quotas:
            out["quotas"] = quotas
        tok = await self.tokens.stored()
        if tok is not None:
            out["token_expires_at"] = tok.expires_at
            if tok.data.get("sku"):
                out["sku"] = tok.data["sku"]
            if tok.data.get("api"):
                out["api"] = tok.data["api"]
        if out.get("plan") or out.get("login"):
            with contextlib.suppress(OSError):
                state.update(INFO_STATE, self.account_id, {
                    "plan": out.get("plan"), "login": out.get("login"),
                    "checked_at": self._clock()})
        return out

    # --- account setup -------------------------------------------------------------
    @classmethod
    async def login(cls, setup: Setup, *, github_url: str | None = None,
                    github_api_url: str | None = None, no_browser: bool = False) -> Credentials:
        """The GitHub device flow with the Copilot app's client id."""
        device = await github.start_device_flow(
            github_url=github_url or DEFAULT_GITHUB_URL, transport=setup.transport)
        setup.say(f"Open {device.verification_uri} and enter the code {device.user_code}")
        if not no_browser:
            await setup.open_browser(device.verification_uri_complete
                                     or device.verification_uri)
        with setup.waiting("waiting for you to authorise tokn on GitHub…") as update:
            def on_status(what: str) -> None:
                if what == "slow_down":
                    update("waiting for you to authorise tokn on GitHub "
                           "(GitHub asked to poll more slowly)…")
            token = await github.poll_for_token(device, on_status=on_status,
                                                transport=setup.transport)
        setup.say("authorised")
        return await cls._credentials(setup, token, None, github_url, github_api_url, "")

    @classmethod
    async def import_(cls, source: str, setup: Setup, *, host: str | None = None,
                      github_url: str | None = None, github_api_url: str | None = None,
                      env_var: str | None = None) -> Credentials:
        """The gh CLI's token, a Copilot editor plugin's, or an environment variable's."""
        if source == "gh":
            found = importers.from_gh(host=host or importers.GITHUB_HOST)
        elif source == "copilot-plugin":
            found = importers.from_copilot_plugin(host=host or importers.GITHUB_HOST)
        elif source == "env":
            found = importers.from_env([env_var] if env_var else list(cls.env_vars))
        else:
            raise ToknError(f"provider {cls.id} cannot import from {source!r}.", status=400)
        creds = await cls._credentials(setup, found.token, found.user, github_url,
                                       github_api_url, found.source)
        if source == "gh":
            creds.hint = ("tokens of the gh CLI are not always accepted by Copilot; "
                          "`tokn login` gets one that is")
        return creds

    @classmethod
    async def _credentials(cls, setup: Setup, token: str, login: str | None,
                           github_url: str | None, github_api_url: str | None,
                           source: str) -> Credentials:
        if login is None:
            api = github_api_url or (api_url_for(github_url) if github_url else DEFAULT_API_URL)
            user = await github.fetch_user(token, api_url=api, transport=setup.transport)
            login = user.get("login")
        return Credentials({"github_token": token, "github_login": login,
                            "github_base_url": github_url, "github_api_url": github_api_url},
                           source=source)

    async def verify(self) -> Verified:
        """One token exchange (cached for later), then plan and login, failing soft."""
        tok = await self.tokens.token()
        try:
            info = await asyncio.wait_for(self.describe(), 15)
        except (TimeoutError, ToknError, OSError):
            info = {}
        login = self.account.get("github_login") or info.get("login")
        plan = info.get("plan") or tok.data.get("sku")
        note = ", ".join(([f"as {login}"] if login else []) + ([f"plan {plan}"] if plan else []))
        return Verified(note, {"github_login": login} if login else {})

    @classmethod
    def same_account(cls, existing: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        login = new.get("github_login")
        return existing.get("provider") in (cls.id, *cls.ids) and (
            (bool(login) and existing.get("github_login") == login)
            or existing.get("github_token") == new.get("github_token"))

    @classmethod
    def id_hint(cls, fields: Mapping[str, Any]) -> str:
        return str(fields.get("github_login") or "")

    @classmethod
    def cached_facts(cls, account_id: str) -> dict[str, Any]:
        facts = super().cached_facts(account_id)
        tok = state.read(TOKEN_STATE).get(account_id)
        if not facts.get("plan") and isinstance(tok, dict) and tok.get("sku"):
            facts["plan"] = tok["sku"]
        return facts


PROVIDERS = [CopilotProvider]
