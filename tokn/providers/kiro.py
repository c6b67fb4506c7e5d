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

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from tokn import paths, state
from tokn.auth import kiro as kiro_auth
from tokn.config import AccountConfig, mask
from tokn.convert.kiro import (
    KiroError,
    KiroPayloadTooLarge,
    KiroToChatStream,
    _normalise_model,
    build_request,
    chunks_to_completion,
    classify_error,
    encode_request,
    estimate_tokens,
    map_model,
)
from tokn.errors import ToknError, openai_error
from tokn.providers.base import ModelInfo, Provider, UpstreamResponse
from tokn.providers.kiro_eventstream import EventStreamDecoder, Message
from tokn.sse import encode_event

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
ENDPOINTS = {
    "q": "https://q.{region}.amazonaws.com",
    "codewhisperer": "https://codewhisperer.{region}.amazonaws.com",
    "runtime": "https://runtime.{region}.kiro.dev",
}
TOKEN_STATE = kiro_auth.TOKEN_STATE
MIN_REFRESH_MARGIN = 300.0
SUSPENDED_REST = 24 * 3600.0
KIRO_VERSION = "0.2.13"
SDK_VERSION = "1.0.18"
DEFAULT_MODELS = (
    ("auto", 200_000), ("claude-sonnet-4.5", 200_000), ("claude-sonnet-4", 200_000),
    ("claude-haiku-4.5", 200_000), ("claude-opus-4.5", 200_000),
)
_LEGACY = ("CLAUDE_", "ANTHROPIC_")


class KiroStreamError(ValueError):
    """Kiro broke off an answer mid-stream (an exception frame or corrupt framing)."""


@dataclass
class KiroTokens:
    access_token: str
    refresh_token: str
    expires_at: float
    profile_arn: str = ""
    previous_refresh_token: str = ""

    def fresh(self, now: float, margin: float) -> bool:
        return bool(self.access_token) and now < self.expires_at - margin

    def valid(self, now: float) -> bool:
        return bool(self.access_token) and now < self.expires_at - 30

    def to_state(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_at": self.expires_at, "profile_arn": self.profile_arn,
                "previous_refresh_token": self.previous_refresh_token}


def next_month_start(now: float) -> float:
    """Epoch seconds of 00:00 UTC on the first day of the month after ``now``."""
    dt = datetime.fromtimestamp(now, UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def _error_json(status: int, message: str, code: str) -> bytes:
    return json.dumps(openai_error(status, message, code)).encode()


def _upstream_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        msg = data.get("message") or data.get("Message") or data.get("error")
        reason = data.get("reason")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if msg:
            return f"{msg}{f' ({reason})' if reason else ''}"[:500]
    return text[:500]


class KiroProvider(Provider):
    id: ClassVar[str] = "kiro"
    ids: ClassVar[tuple[str, ...]] = ("amazon-q",)
    display_name: ClassVar[str] = "Kiro"
    formats: ClassVar[frozenset[str]] = frozenset({"chat"})
    default_base_url: ClassVar[str] = ENDPOINTS["q"]
    key_field: ClassVar[str] = "refresh_token"

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(account, client)
        self._clock = clock
        self._tokens: KiroTokens | None = None
        self._token_lock = asyncio.Lock()
        self._generation = 0
        self.refresh_count = 0

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

    # --- tokens --------------------------------------------------------------------
    @property
    def can_refresh(self) -> bool:
        return True

    def _from_config(self) -> KiroTokens:
        expires = kiro_auth.parse_expiry(self.account.get("expires_at"))
        return KiroTokens(access_token=str(self.account.get("access_token") or ""),
                          refresh_token=str(self.account.get("refresh_token") or ""),
                          expires_at=expires or 0.0,
                          profile_arn=str(self.account.get("profile_arn") or ""))

    def _load(self) -> KiroTokens:
        """The best known tokens: the state cache when it belongs to the configured
        refresh token (or to the one rotated from it), else the config's."""
        conf = self._from_config()
        cached = state.read(TOKEN_STATE).get(self.account_id)
        if isinstance(cached, dict) and cached.get("access_token"):
            try:
                tok = KiroTokens(str(cached["access_token"]),
                                 str(cached.get("refresh_token") or ""),
                                 float(cached.get("expires_at") or 0),
                                 str(cached.get("profile_arn") or ""),
                                 str(cached.get("previous_refresh_token") or ""))
            except (TypeError, ValueError):
                tok = None
            live = {conf.refresh_token}
            if tok is not None and not live & {tok.refresh_token, tok.previous_refresh_token}:
                live.add(self._file_refresh_token())  # rotated by another process
            if tok is not None and live & {tok.refresh_token, tok.previous_refresh_token}:
                if tok.refresh_token != conf.refresh_token:
                    log.warning("kiro %s: the config file still holds a refresh token that "
                                "was rotated; using the newer one from the state cache",
                                self.account_id)
                tok.profile_arn = tok.profile_arn or conf.profile_arn
                if conf.expires_at > tok.expires_at and conf.access_token:
                    return conf
                return tok
        return conf

    def _file_refresh_token(self) -> str:
        """The account's refresh token as the config file holds it now."""
        try:
            data = tomllib.loads(paths.config_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable, not UTF-8, not TOML
            return ""
        for acc in data.get("accounts") or []:
            if isinstance(acc, dict) and acc.get("id") == self.account_id:
                return str(acc.get("refresh_token") or "")
        return ""

    @property
    def profile_arn(self) -> str:
        tok = self._tokens
        return (tok.profile_arn if tok and tok.profile_arn else
                str(self.account.get("profile_arn") or ""))

    async def tokens(self, *, refresh: bool = False, failed: str | None = None) -> KiroTokens:
        """Current tokens; refreshed ahead of expiry, one refresh at a time per account.

        ``refresh`` forces a refresh unless the token that ``failed`` was already
        replaced meanwhile.
        """
        current = self._tokens
        if not refresh and current is not None and current.fresh(self._clock(),
                                                                 self.refresh_margin):
            return current
        generation = self._generation
        async with self._token_lock:
            tok = self._adopt_newer(self._tokens)
            now = self._clock()
            if refresh:
                if failed is not None and tok.access_token != failed and tok.valid(now):
                    return tok
                if failed is None and self._generation != generation:
                    return tok
            elif tok.fresh(now, self.refresh_margin):
                return tok
            try:
                new = await self._refresh(tok)
            except ToknError:
                if not refresh and tok.valid(now):
                    log.warning("kiro %s: refresh failed; the current token is still valid",
                                self.account_id)
                    return tok
                raise
            self._tokens = new
            self._generation += 1
            return new

    def _adopt_newer(self, current: KiroTokens | None) -> KiroTokens:
        """Tokens another tokn process (``tokn account show``, a second server)
        refreshed meanwhile win over ours: their refresh token is the live one."""
        disk = self._load()
        if current is None or disk.expires_at > current.expires_at:
            if current is not None and disk.refresh_token != current.refresh_token:
                log.info("kiro %s: adopting tokens refreshed by another process",
                         self.account_id)
            self._tokens = disk
            self.account.fields.update(access_token=disk.access_token,
                                       refresh_token=disk.refresh_token)
            return disk
        return current

    async def _refresh(self, tok: KiroTokens) -> KiroTokens:
        self.refresh_count += 1
        data = await kiro_auth.refresh(
            self.client, auth_method=self.auth_method, refresh_token=tok.refresh_token,
            url=self.refresh_url, client_id=self.account.get("client_id"),
            client_secret=self.account.get("client_secret"),
            headers=self.identity_headers(), account_id=self.account_id, clock=self._clock)
        rotated = bool(data.get("refresh_token")) and data["refresh_token"] != tok.refresh_token
        new = KiroTokens(access_token=data["access_token"],
                         refresh_token=str(data["refresh_token"] or tok.refresh_token),
                         expires_at=float(data["expires_at"]),
                         profile_arn=str(data.get("profile_arn") or tok.profile_arn or ""),
                         previous_refresh_token=tok.refresh_token if rotated else
                         tok.previous_refresh_token)
        await asyncio.to_thread(self._persist, new, rotated)
        return new

    def _persist(self, tok: KiroTokens, rotated: bool) -> None:
        """State cache first (cheap, always), then the config file's account.

        The config is rewritten at once when the refresh token rotated (losing
        it locks the user out) or a profile ARN appeared; the in-memory account
        follows so later refreshes use the new token.
        """
        try:
            state.update(TOKEN_STATE, self.account_id, tok.to_state())
        except OSError as exc:
            log.error("kiro %s: cannot cache tokens: %s", self.account_id, exc)
        new_arn = bool(tok.profile_arn) and tok.profile_arn != self.account.get("profile_arn")
        fields = {"access_token": tok.access_token, "refresh_token": tok.refresh_token,
                  "expires_at": tok.expires_at}
        if tok.profile_arn:
            fields["profile_arn"] = tok.profile_arn
        if rotated or new_arn:
            try:
                if not kiro_auth.persist_tokens(self.account_id, fields):
                    log.warning("kiro %s: account not found in the config file; the rotated "
                                "refresh token lives only in the state cache", self.account_id)
            except Exception as exc:  # noqa: BLE001 - the state cache still holds it
                log.error("kiro %s: cannot save the rotated refresh token to the config "
                          "file (%s); it is kept in the state cache", self.account_id, exc)
        self.account.fields.update(
            access_token=tok.access_token, refresh_token=tok.refresh_token,
            expires_at=kiro_auth.iso(tok.expires_at),
            **({"profile_arn": tok.profile_arn} if tok.profile_arn else {}))

    async def credentials(self, *, refresh: bool = False) -> dict[str, str]:
        tok = await self.tokens(refresh=refresh)
        return {"authorization": f"Bearer {tok.access_token}"}

    async def should_refresh(self, response: httpx.Response) -> bool:
        if response.status_code == 401:
            return True
        if response.status_code != 403:
            return False
        with contextlib.suppress(httpx.HTTPError):
            await response.aread()
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
        refreshed = False
        while True:
            tok = await self.tokens(refresh=refreshed)
            headers = {**self.static_headers(), "authorization": f"Bearer {tok.access_token}",
                       "accept": "application/json"}
            resp = await self.client.get(url, params=params, headers=headers)
            if not refreshed and resp.status_code in (401, 403) \
                    and classify_error(resp.status_code, resp.text) == "refresh":
                refreshed = True
                continue
            return resp

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
        public = _normalise_model(model_id) if model_id.startswith(_LEGACY) else model_id
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
    def _error(self, status: int, message: str, code: str,
               headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        h = httpx.Headers({k: v for k, v in (headers or {}).items()
                           if k.lower() in ("retry-after", "x-amzn-requestid")})
        h["content-type"] = "application/json"
        return UpstreamResponse(status, h, "chat", False,
                                _body=_error_json(status, message, code))

    def _http_error(self, status: int, raw: bytes,
                    headers: Mapping[str, str]) -> UpstreamResponse:
        text = raw.decode("utf-8", "replace")
        message = f"Kiro answered HTTP {status}: {_upstream_text(raw)}"
        kind = classify_error(status, text)
        if kind == "quota":
            return self._error(402, message, "kiro_quota_exhausted", headers)
        if kind == "suspended":
            return self._error(403, message, "kiro_account_suspended", headers)
        if kind == "context":
            return self._error(400, message, "context_length_exceeded", headers)
        if kind == "refresh":
            return self._error(401, message, "kiro_token_rejected", headers)
        if kind == "bad_request":
            code = "model_not_found" if "INVALID_MODEL_ID" in text else "kiro_bad_request"
            return self._error(400, message, code, headers)
        if kind == "rate_limit":
            return self._error(429, message, "rate_limit_exceeded", headers)
        return self._error(status, message, f"kiro_http_{status}", headers)

    def _input_estimate(self, body: dict[str, Any], raw: bytes) -> int:
        try:
            from tokn.convert.tokens import count_tokens

            return int(count_tokens(body, "chat"))
        except Exception:  # noqa: BLE001 - an estimate either way
            return estimate_tokens(raw.decode("utf-8", "replace"))

    async def send(self, fmt: str, body: dict[str, Any], inbound: Mapping[str, str],
                   *, stream: bool) -> UpstreamResponse:
        if fmt != "chat":
            raise ValueError(f"Kiro serves chat completions only, not {fmt}")
        requested = str(body.get("model") or "auto")
        available = [m.upstream_id for m in self._models or []]
        model_id = map_model(requested, available or None)
        info = self._model_info(model_id)
        await self.tokens()  # refresh first: a social refresh may bring the profile ARN
        try:
            kbody, names = build_request(body, model_id=model_id,
                                         profile_arn=self._send_profile_arn())
        except KiroPayloadTooLarge as exc:
            return self._error(413, str(exc), "request_too_large")
        raw = encode_request(kbody)
        url = f"{await self.base_url()}/generateAssistantResponse"
        failed: str | None = None
        while True:
            tok = await self.tokens(refresh=failed is not None, failed=failed)
            headers = {**self.static_headers(), "authorization": f"Bearer {tok.access_token}",
                       "content-type": "application/json",
                       "accept": "application/vnd.amazon.eventstream"}
            request = self.client.build_request("POST", url, content=raw, headers=headers,
                                                timeout=self.http_timeout())
            response = await self.client.send(request, stream=True)
            if response.status_code < 400:
                break
            try:
                err = await response.aread()
            finally:
                await response.aclose()
            if failed is None and classify_error(response.status_code,
                                                 err.decode("utf-8", "replace")) == "refresh":
                failed = tok.access_token
                log.info("kiro %s: token rejected (HTTP %d); refreshing once",
                         self.account_id, response.status_code)
                continue
            return self._http_error(response.status_code, err, response.headers)

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
                return self._stream_error(exc, conv)
            except ValueError as exc:  # corrupt framing
                return self._error(502, f"Kiro sent a broken event stream: {exc}",
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
            return self._stream_error(exc, conv)
        except ValueError as exc:
            await response.aclose()
            return self._error(502, f"Kiro sent a broken event stream: {exc}",
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

    def _stream_error(self, exc: KiroError, conv: KiroToChatStream) -> UpstreamResponse:
        message = str(exc)
        kind = classify_error(exc.status, f"{exc.kind} {exc.upstream_message}")
        if kind == "quota" or "MONTHLY_REQUEST_COUNT" in message:
            return self._error(402, message, "kiro_quota_exhausted")
        if kind == "suspended":
            return self._error(403, message, "kiro_account_suspended")
        if kind == "context":
            return self._error(400, message, "context_length_exceeded")
        code = "rate_limit_exceeded" if exc.status == 429 else exc.code
        return self._error(exc.status, message, code)

    # --- pool hooks ----------------------------------------------------------------
    @staticmethod
    def _code_of(body: bytes) -> str:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return ""
        err = data.get("error") if isinstance(data, dict) else None
        return str(err.get("code") or "") if isinstance(err, dict) else ""

    def failure_kind(self, status: int, body: bytes) -> str:
        code = self._code_of(body)
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
        code = self._code_of(body)
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
        tok = self._tokens or self._load()
        if tok.expires_at:
            out["token_expires_at"] = tok.expires_at
        try:
            resp = await self._get("/getUsageLimits", {
                "isEmailRequired": "true", "origin": "AI_EDITOR",
                "resourceType": "AGENTIC_REQUEST"})
            if resp.status_code >= 400:
                out["usage_error"] = f"HTTP {resp.status_code}: {_upstream_text(resp.content)}"
                return out
            data = resp.json()
        except (httpx.HTTPError, ToknError, ValueError) as exc:
            out["usage_error"] = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return out
        if not isinstance(data, dict):
            return out
        sub = data.get("subscriptionInfo") if isinstance(data.get("subscriptionInfo"),
                                                         dict) else {}
        if sub.get("subscriptionTitle") or sub.get("type"):
            out["plan"] = sub.get("subscriptionTitle") or sub.get("type")
        user = data.get("userInfo") if isinstance(data.get("userInfo"), dict) else {}
        if user.get("email"):
            out["email"] = user["email"]
        quotas: dict[str, Any] = {}
        for item in data.get("usageBreakdownList") or []:
            if not isinstance(item, dict):
                continue
            used = item.get("currentUsageWithPrecision", item.get("currentUsage"))
            limit = item.get("usageLimitWithPrecision", item.get("usageLimit"))
            for extra in [item.get("freeTrialInfo"), *(item.get("bonuses") or [])]:
                if isinstance(extra, dict) and extra.get("freeTrialStatus", "ACTIVE") == \
                        "ACTIVE":
                    used = (used or 0) + (extra.get("currentUsageWithPrecision")
                                          or extra.get("currentUsage") or 0)
                    limit = (limit or 0) + (extra.get("usageLimitWithPrecision")
                                            or extra.get("usageLimit") or 0)
            name = str(item.get("displayName") or item.get("resourceType") or "credits").lower()
            entry: dict[str, Any] = {"used": used, "entitlement": limit}
            if isinstance(used, (int, float)) and isinstance(limit, (int, float)):
                entry["remaining"] = round(limit - used, 2)
                if limit:
                    entry["percent_remaining"] = max(0.0, (limit - used) / limit * 100)
            quotas[name] = entry
        if quotas:
            out["quotas"] = quotas
        reset = kiro_auth.parse_expiry(data.get("nextDateReset"))
        if reset:
            out["credits_reset_expires_at"] = reset
        if self.profile_arn:
            out["profile_arn"] = self.profile_arn
        return out

    async def resolved_headers(self, masked: bool = True, **_: Any) -> dict[str, str]:
        tok = await self.tokens()
        return {**self.static_headers(), "content-type": "application/json",
                "authorization": f"Bearer {mask(tok.access_token) if masked else tok.access_token}"}


def _os_name() -> str:
    import sys

    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


PROVIDERS = [KiroProvider]
