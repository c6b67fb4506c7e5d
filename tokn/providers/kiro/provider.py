"""Kiro (Amazon Q Developer / CodeWhisperer backend) as a chat provider.

Account fields::

    [[accounts]]
    id = "kiro"
    provider = "kiro"
    auth_method = "social"            # social (Google/GitHub) | idc (Builder ID / Identity Center)
    access_token = "aoa…"             # optional; refreshed as needed
    refresh_token = "aor…"            # required; rotated tokens are written back here
    expires_at = "2025-01-01T00:00:00Z"   # ISO-8601 or epoch seconds/milliseconds
    region = "us-east-1"
    profile_arn = "arn:aws:codewhisperer:us-east-1:…:profile/…"   # social sign-ins have one
    client_id = "…"                   # idc only
    client_secret = "…"               # idc only
    # base_url = "https://q.us-east-1.amazonaws.com"           # API base (default)
    #   alternatives: "https://codewhisperer.us-east-1.amazonaws.com" (older, us-east-1 only),
    #                 "https://runtime.us-east-1.kiro.dev" (newest; needs profile_arn)
    # refresh_url = "https://prod.us-east-1.auth.desktop.kiro.dev/refreshToken"  # social default
    #             = "https://oidc.us-east-1.amazonaws.com/token"                 # idc default
    [accounts.settings]
    # endpoint = "q"                  # q | codewhisperer | runtime: picks the default base_url
    # oidc_url = "https://oidc.us-east-1.amazonaws.com"   # idc refresh host (refresh_url wins)
    # token_refresh_margin = 300      # seconds before expiry to refresh (at least 300)
    # kiro_version = "0.2.13"         # identity in user-agent / x-amz-user-agent
    # machine_id = "…"                # 64 hex chars; default: a stable hash of host + account
    # user_agent = "…"; x_amz_user_agent = "…"   # replace the identity headers outright
    # headers = { "x-extra" = "1" }   # extra headers on every call
    # send_profile_arn = true         # false: never send profileArn

Kiro speaks neither OpenAI nor Anthropic: the provider serves the ``chat``
format and converts it itself (:mod:`tokn.convert.kiro`): the chat body
becomes a ``conversationState``, the binary AWS event stream comes back as
OpenAI ``chat.completion.chunk`` SSE (streams) or one ``chat.completion``.
Token counts are estimates (Kiro sends none); credits from ``meteringEvent``
go to the usage row (``credits``, ``estimated = 1``).

Errors: 402 / ``MONTHLY_REQUEST_COUNT`` -> quota spent until the first of
next month (UTC); "temporarily is suspended" -> out of rotation for 24 h
(reported as an exhausted quota, the only long rest the pool knows);
403 with token wording -> one refresh and one retry; context overflow and
rejected bodies -> the client's error (no failover).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx

from tokn.auth import kiro as kiro_auth
from tokn.auth import kiro_files
from tokn.auth.tokens import Refresher
from tokn.config import AccountConfig
from tokn.convert.tokens import count_tokens
from tokn.errors import ConversionError, ToknError
from tokn.providers.base import ModelInfo, Provider, UpstreamResponse
from tokn.providers.setup import NO_BROWSER, Credentials, Option, Setup, Verified
from tokn.sse import encode_event

from .errors import (
    KiroError,
    classify_error,
    error_code,
    error_reply,
    http_error,
    stream_error,
    upstream_text,
)
from .eventstream import EventStreamDecoder, Message
from .models import DEFAULT_MODELS, LEGACY_PREFIXES, map_model, normalise_model
from .request import KiroPayloadTooLarge, build_request, encode_request
from .response import KiroToChatStream, chunks_to_completion, estimate_tokens, parse_usage_limits
from .tokens import MIN_REFRESH_MARGIN, TOKEN_STATE, KiroTokenSource

log = logging.getLogger("tokn.providers.kiro")

DEFAULT_REGION = "us-east-1"
ENDPOINTS = {
    "q": "https://q.{region}.amazonaws.com",
    "codewhisperer": "https://codewhisperer.{region}.amazonaws.com",
    "runtime": "https://runtime.{region}.kiro.dev",
}
SUSPENDED_REST = 24 * 3600.0
KIRO_VERSION = "0.2.13"
SDK_VERSION = "1.0.18"
# Account-setup options (`tokn login`, `tokn import`).
METHOD = Option("method", "Kiro: builder-id (default), idc, google, github.")
START_URL = Option("start_url", "Kiro idc: your https://….awsapps.com/start.")
REGION = Option("region", "Kiro: AWS region.")
PATH = Option("path", "Kiro: the token file / kiro-cli database to read.")


class KiroStreamError(ValueError):
    """Kiro broke off an answer mid-stream (an exception frame or corrupt framing)."""


def next_month_start(now: float) -> float:
    """Epoch seconds of 00:00 UTC on the first day of the month after ``now``."""
    dt = datetime.fromtimestamp(now, UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


# what :meth:`KiroTokenSource.token_saved` writes into the account's table
OWN_FIELDS = frozenset({"access_token", "refresh_token", "expires_at", "profile_arn"})


class KiroProvider(Provider):
    id: ClassVar[str] = "kiro"
    ids: ClassVar[tuple[str, ...]] = ("amazon-q",)
    display_name: ClassVar[str] = "Kiro"
    formats: ClassVar[frozenset[str]] = frozenset({"chat"})
    default_base_url: ClassVar[str] = ENDPOINTS["q"]
    key_field: ClassVar[str] = "refresh_token"
    login_options: ClassVar[tuple[Option, ...]] = (METHOD, START_URL, REGION, NO_BROWSER)
    import_sources: ClassVar[tuple[str, ...]] = ("kiro",)
    import_options: ClassVar[tuple[Option, ...]] = (PATH,)
    token_state: ClassVar[str] = TOKEN_STATE

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(account, client)
        self._clock = clock
        self.token_source = KiroTokenSource(
            account, client, refresh_url=lambda: self.refresh_url,
            auth_method=lambda: self.auth_method, identity_headers=self.identity_headers,
            margin=self.refresh_margin, clock=clock)
        # refresh tokens are single-use: one refresh at a time across processes
        self.tokens = Refresher(TOKEN_STATE, account.id, self.token_source, single_use=True,
                                clock=clock)

    def adopt(self, account: AccountConfig) -> bool:
        """A refresh token this provider rotated and wrote into the config file
        (:meth:`KiroTokenSource.token_saved`) is not a new sign-in: the account
        keeps its provider, health and cooldowns."""
        old = self.account
        if replace(account, fields={}) != replace(old, fields={}):
            return False
        differ = {k for k in {*old.fields, *account.fields}
                  if old.fields.get(k) != account.fields.get(k)}
        tok = self.tokens.current()
        if not differ <= OWN_FIELDS or tok is None \
                or account.get("refresh_token") != tok.data["refresh_token"]:
            return False
        self.account = self.token_source.account = account
        return True

    @property
    def refresh_count(self) -> int:
        """Refreshes this provider made (tests, diagnostics)."""
        return self.token_source.refresh_count

    # --- options (``option()`` comes from Provider) --------------------------------
    @property
    def region(self) -> str:
        return str(self.option("region", DEFAULT_REGION))

    @property
    def auth_method(self) -> str:
        return kiro_auth.normalize_auth_method(
            self.account.get("auth_method"),
            has_client=bool(self.account.get("client_id") and self.account.get("client_secret")))

    @property
    def refresh_url(self) -> str:
        if self.account.refresh_url:
            return self.account.refresh_url
        if self.auth_method == "idc":
            host = self.option("oidc_url") or kiro_auth.oidc_url(self.region)
            return f"{str(host).rstrip('/')}/token"
        return kiro_auth.social_refresh_url(self.region)

    @property
    def refresh_margin(self) -> float:
        try:
            margin = float(self.option("token_refresh_margin", MIN_REFRESH_MARGIN))
        except (TypeError, ValueError):
            margin = MIN_REFRESH_MARGIN
        return max(margin, MIN_REFRESH_MARGIN)

    async def base_url(self) -> str:
        if self.account.base_url:
            return self.account.base_url.rstrip("/")
        endpoint = str(self.option("endpoint", "q"))
        template = ENDPOINTS.get(endpoint, ENDPOINTS["q"])
        return template.format(region=self.region)

    @property
    def machine_id(self) -> str:
        explicit = self.option("machine_id")
        if explicit:
            return str(explicit)
        seed = f"{socket.gethostname()}:{self.account_id}:tokn"
        return hashlib.sha256(seed.encode()).hexdigest()

    def identity_headers(self) -> dict[str, str]:
        version = str(self.option("kiro_version", KIRO_VERSION))
        kiro = f"KiroIDE-{version}-{self.machine_id}"
        ua = (f"aws-sdk-js/{SDK_VERSION} ua/2.1 os/{_os_name()} lang/js md/nodejs#20.16.0 "
              f"api/codewhispererstreaming#{SDK_VERSION} m/E {kiro}")
        headers = {
            "user-agent": str(self.option("user_agent", ua)),
            "x-amz-user-agent": str(self.option("x_amz_user_agent",
                                                f"aws-sdk-js/{SDK_VERSION} {kiro}")),
        }
        extra = self.account.settings.get("headers")
        if isinstance(extra, dict):
            headers.update({str(k).lower(): str(v) for k, v in extra.items()})
        return headers

    def static_headers(self) -> dict[str, str]:
        return {
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": "attempt=1; max=3",
            "x-amzn-codewhisperer-optout": "true",
            "x-amzn-kiro-agent-mode": "vibe",
            **self.identity_headers(),
        }

    # --- tokens (tokn.auth.tokens.Refresher over KiroTokenSource) -------------------
    @property
    def can_refresh(self) -> bool:
        return True

    @property
    def profile_arn(self) -> str:
        tok = self.tokens.current()
        arn = tok.data.get("profile_arn") if tok is not None else ""
        return str(arn or self.account.get("profile_arn") or "")

    async def credentials(self, *, refresh: bool = False,
                          failed: str | None = None) -> dict[str, str]:
        tok = await self.tokens.token(refresh=refresh, failed=failed)
        return {"authorization": f"Bearer {tok.access}"}

    async def should_refresh(self, response: httpx.Response) -> bool:
        """A 401, or a 403 whose wording is about the token (not a suspension or
        a spent quota)."""
        if response.status_code == 401:
            return True
        if response.status_code != 403:
            return False
        try:
            await response.aread()
        except httpx.HTTPError:
            return False
        return classify_error(403, response.text) == "refresh"

    def _send_profile_arn(self) -> str | None:
        if self.option("send_profile_arn", True) in (False, "false", "0"):
            return None
        return self.profile_arn or None

    # --- HTTP ----------------------------------------------------------------------
    async def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        url = f"{await self.base_url()}{path}"
        arn = self._send_profile_arn()
        if arn:
            params = {**params, "profileArn": arn}
        base = {**self.static_headers(), "accept": "application/json"}
        return await self.authorized(
            lambda creds: self.client.get(url, params=params, headers={**base, **creds}))

    async def list_models(self) -> list[ModelInfo]:
        items: list[dict[str, Any]] = []
        params = {"origin": "AI_EDITOR"}
        for _ in range(20):  # paginated by nextToken
            resp = await self._get("/ListAvailableModels", params)
            if resp.status_code >= 400:
                raise self.listing_refused(resp.status_code, resp.text, "/ListAvailableModels")
            data = resp.json()
            if not isinstance(data, dict):
                break
            items += [m for m in data.get("models") or [] if isinstance(m, dict)]
            token = data.get("nextToken")
            if not token:
                break
            params = {"origin": "AI_EDITOR", "nextToken": str(token)}
        models = [self.model_from_listing(m) for m in items if m.get("modelId")]
        seen = {m.id for m in models}
        default = data.get("defaultModel") if isinstance(data, dict) else None
        if "auto" not in seen and isinstance(default, dict) and default.get("modelId") == "auto":
            models.append(self.model_from_listing(default))
        return models

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        try:
            models = await super().models(refresh=refresh)
        except ToknError:
            models = []
        if not models:
            # Listing failed (offline, old deployment): the known ids still route,
            # and a request says what is wrong with the account.
            async with self._models_lock:
                if not self._models:
                    self._models = [ModelInfo(mid, formats=self.formats, context_window=ctx)
                                    for mid, ctx in DEFAULT_MODELS]
                models = self._models
        return models

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        model_id = str(item.get("modelId"))
        limits = item.get("tokenLimits") if isinstance(item.get("tokenLimits"), dict) else {}
        context = limits.get("maxInputTokens")
        public = normalise_model(model_id) if model_id.startswith(LEGACY_PREFIXES) else model_id
        caps = {k: v for k, v in {
            "max_output_tokens": limits.get("maxOutputTokens"),
            "input_types": item.get("supportedInputTypes"),
            "rate_multiplier": item.get("rateMultiplier"),
        }.items() if v is not None}
        return ModelInfo(public, upstream_id=model_id, formats=self.formats,
                         capabilities=caps,
                         context_window=int(context) if isinstance(context, (int, float))
                         else None,
                         raw={**item, "name": item.get("modelName"), "vendor": "kiro"})

    def _model_info(self, upstream: str) -> ModelInfo | None:
        for m in self._models or []:
            if m.upstream_id == upstream or m.id == upstream:
                return m
        return None

    # --- send ----------------------------------------------------------------------
    @staticmethod
    def _input_estimate(body: dict[str, Any], raw: bytes) -> int:
        try:
            return count_tokens(body, "chat")
        except ConversionError:  # a body only Kiro's own conversion took: its size
            return estimate_tokens(raw.decode("utf-8", "replace"))

    async def send(self, fmt: str, body: dict[str, Any], inbound: Mapping[str, str],
                   *, stream: bool) -> UpstreamResponse:
        if fmt != "chat":
            raise ValueError(f"Kiro serves chat completions only, not {fmt}")
        requested = str(body.get("model") or "auto")
        available = [m.upstream_id for m in self._models or []]
        model_id = map_model(requested, available or None)
        info = self._model_info(model_id)
        await self.tokens.token()  # refresh first: a social refresh may bring the profile ARN
        try:
            kbody, names = build_request(body, model_id=model_id,
                                         profile_arn=self._send_profile_arn())
        except KiroPayloadTooLarge as exc:
            return error_reply(413, str(exc), "request_too_large")
        raw = encode_request(kbody)
        url = f"{await self.base_url()}/generateAssistantResponse"
        base = {**self.static_headers(), "content-type": "application/json",
                "accept": "application/vnd.amazon.eventstream"}
        response = await self.post(url, base, content=raw)
        if response.status_code >= 400:
            try:
                err = await response.aread()
            finally:
                await response.aclose()
            return http_error(response.status_code, err, response.headers)

        conv = KiroToChatStream(info.id if info else requested, names,
                                input_tokens_estimate=self._input_estimate(body, raw),
                                context_window=info.context_window if info else None)
        decoder = EventStreamDecoder()
        extra: dict[str, Any] = {"credits": None, "estimated": 1}

        async def messages() -> AsyncIterator[Message]:
            async for data in response.aiter_bytes():
                for msg in decoder.feed(data):
                    yield msg
            decoder.close()

        if not stream:
            chunks: list[dict[str, Any]] = []
            try:
                async for msg in messages():
                    chunks += conv.feed(msg)
            except KiroError as exc:
                return stream_error(exc)
            except ValueError as exc:  # corrupt framing
                return error_reply(502, f"Kiro sent a broken event stream: {exc}",
                                   "kiro_bad_stream")
            finally:
                await response.aclose()
            chunks += conv.finish()
            extra["credits"] = conv.credits
            out = chunks_to_completion(chunks)
            return UpstreamResponse(200, httpx.Headers({"content-type": "application/json"}),
                                    "chat", False, _body=json.dumps(out).encode(),
                                    extra_usage=extra)

        # Stream: look ahead until the first client-visible chunk, so an exception
        # Kiro reports up front (throttling, quota) becomes a status the pool acts on.
        it = messages().__aiter__()
        pending: list[dict[str, Any]] = []
        done = False
        try:
            while not pending:
                try:
                    msg = await it.__anext__()
                except StopAsyncIteration:
                    done = True
                    break
                pending += conv.feed(msg)
        except KiroError as exc:
            await response.aclose()
            return stream_error(exc)
        except ValueError as exc:
            await response.aclose()
            return error_reply(502, f"Kiro sent a broken event stream: {exc}",
                               "kiro_bad_stream")
        except BaseException:
            await response.aclose()
            raise

        up = UpstreamResponse(200, httpx.Headers({"content-type": "text/event-stream"}),
                              "chat", True, _response=response, extra_usage=extra)

        async def sse() -> AsyncIterator[bytes]:
            try:
                for chunk in pending:
                    yield encode_event(chunk)
                if not done:
                    try:
                        async for msg in it:
                            for chunk in conv.feed(msg):
                                yield encode_event(chunk)
                    except KiroError as exc:  # a ToknError: wrap it for the pipeline
                        raise KiroStreamError(str(exc)) from exc
                    except ValueError as exc:  # corrupt framing (EventStreamError)
                        raise KiroStreamError(f"Kiro sent a broken event stream: {exc}") \
                            from exc
                tail = conv.finish()
                extra["credits"] = conv.credits
                for chunk in tail:
                    yield encode_event(chunk)
                yield encode_event("[DONE]")
            finally:
                extra["credits"] = conv.credits
                await response.aclose()

        up._chunks = sse()
        return up

    # --- pool hooks ----------------------------------------------------------------
    def failure_kind(self, status: int, body: bytes) -> str:
        code = error_code(body)
        if code in ("kiro_quota_exhausted", "kiro_account_suspended"):
            return "quota"
        if code in ("context_length_exceeded", "request_too_large", "kiro_bad_request",
                    "model_not_found"):
            return "client"
        if not code:
            kind = classify_error(status, body.decode("utf-8", "replace"))
            if kind in ("quota", "suspended"):
                return "quota"
            if kind in ("context", "bad_request"):
                return "client"
        return super().failure_kind(status, body)

    def quota_reset(self, status: int, body: bytes) -> float | None:
        now = self._clock()
        code = error_code(body)
        if code == "kiro_account_suspended" or (
                not code and classify_error(status, body.decode("utf-8", "replace"))
                == "suspended"):
            return now + SUSPENDED_REST
        return next_month_start(now)

    # --- facts ---------------------------------------------------------------------
    async def describe(self) -> dict[str, Any]:
        """Plan and credits from ``getUsageLimits``, plus token facts (fails soft)."""
        out: dict[str, Any] = {"auth_method": self.auth_method, "region": self.region,
                               "base_url": await self.base_url()}
        tok = await self.tokens.stored()
        if tok is not None and tok.expires_at:
            out["token_expires_at"] = tok.expires_at
        try:
            resp = await self._get("/getUsageLimits", {
                "isEmailRequired": "true", "origin": "AI_EDITOR",
                "resourceType": "AGENTIC_REQUEST"})
            if resp.status_code >= 400:
                out["usage_error"] = f"HTTP {resp.status_code}: {upstream_text(resp.content)}"
                return out
            data = resp.json()
        except (httpx.HTTPError, ToknError, ValueError) as exc:
            out["usage_error"] = (exc.message if isinstance(exc, ToknError) else str(exc)) \
                or type(exc).__name__
            return out
        out.update(parse_usage_limits(data))
        if self.profile_arn:
            out["profile_arn"] = self.profile_arn
        return out

    # --- account setup -------------------------------------------------------------
    @classmethod
    async def login(cls, setup: Setup, *, method: str | None = None,
                    start_url: str | None = None, region: str | None = None,
                    no_browser: bool = False) -> Credentials:
        """A device code (Builder ID, IAM Identity Center) or a browser (Google, GitHub)."""
        async with setup.client() as client:
            tokens = await kiro_auth.sign_in(
                client, method or "builder-id", say=setup.say,
                open_browser=None if no_browser else setup.open_browser,
                region=region, start_url=start_url)
        fields = kiro_files.account_fields(tokens)
        setup.say(f"signed in to Kiro ({fields['auth_method']})")
        return Credentials(fields)

    @classmethod
    async def import_(cls, source: str, setup: Setup, *,
                      path: str | None = None) -> Credentials:
        """The Kiro IDE's or kiro-cli's sign-in."""
        if source != "kiro":
            raise ToknError(f"provider {cls.id} cannot import from {source!r}.", status=400)
        sign_in = kiro_files.read_sign_in(Path(path).expanduser() if path else None)
        return Credentials(kiro_files.account_fields(sign_in), source=str(sign_in["source"]))

    async def verify(self) -> Verified:
        """Nothing is checked: the only check is a refresh, which would spend the
        single-use refresh token before the account is saved."""
        return Verified()

    @classmethod
    def same_account(cls, existing: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        if existing.get("provider") not in (cls.id, *cls.ids):
            return False
        if new.get("refresh_token") and existing.get("refresh_token") == new["refresh_token"]:
            return True
        return bool(new.get("profile_arn")) and existing.get("profile_arn") == \
            new["profile_arn"] and existing.get("auth_method") == new.get("auth_method")


def _os_name() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


