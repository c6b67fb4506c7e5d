"""What every provider module implements, and the shared HTTP plumbing.

A provider turns "send this body in format F for model M" into an upstream
call with the account's credentials.  Formats are tokn's names for the three
wire APIs: ``chat`` (OpenAI chat completions), ``responses`` (OpenAI
Responses) and ``messages`` (Anthropic Messages); plus ``embeddings``.
The pipeline converts only into a format the provider (or the model) serves
natively, so adding a provider never touches the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from tokn.config import AccountConfig
from tokn.convert import PLAIN, Dialect
from tokn.errors import ToknError
from tokn.wire import upstream_paths

# Inbound headers never forwarded upstream (hop-by-hop, credentials, tokn's own).
DROP_HEADERS = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "upgrade", "proxy-authorization", "proxy-connection", "authorization", "x-api-key",
    "accept-encoding", "cookie",
})


@dataclass
class ModelInfo:
    """A model one account serves."""

    id: str
    upstream_id: str = ""
    formats: frozenset[str] = frozenset()
    capabilities: dict[str, Any] = field(default_factory=dict)
    context_window: int | None = None
    reasoning: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.upstream_id = self.upstream_id or self.id


@dataclass
class UpstreamResponse:
    """An upstream answer whose body may still be streaming."""

    status: int
    headers: httpx.Headers
    fmt: str
    stream: bool
    _response: httpx.Response | None = None
    _chunks: AsyncIterator[bytes] | None = None
    _body: bytes | None = None
    extra_usage: dict[str, Any] = field(default_factory=dict)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            yield self._body
            return
        if self._chunks is not None:
            async for chunk in self._chunks:
                yield chunk
            return
        if self._response.is_stream_consumed:  # already read (e.g. a MockTransport answer)
            yield self._response.content
            return
        async for chunk in self._response.aiter_bytes():  # decoded (gzip etc.)
            yield chunk

    async def read(self) -> bytes:
        if self._body is None:
            self._body = b"".join([c async for c in self.chunks()])
        return self._body

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    @property
    def is_sse(self) -> bool:
        return "text/event-stream" in self.headers.get("content-type", "")


class Provider:
    """Base class: an OpenAI-style HTTP API with a bearer key.

    Subclasses override class attributes and, where the upstream differs,
    :meth:`credentials`, :meth:`prepare`, :meth:`list_models` or :meth:`send`.
    """

    id: ClassVar[str] = ""
    ids: ClassVar[tuple[str, ...]] = ()          # extra ids served by the same class
    display_name: ClassVar[str] = ""
    formats: ClassVar[frozenset[str]] = frozenset({"chat", "embeddings"})
    default_base_url: ClassVar[str] = ""
    # format -> path under base_url: the wire table's (tokn.wire), unless overridden
    paths: ClassVar[dict[str, str]] = upstream_paths()
    key_field: ClassVar[str] = "api_key"
    env_vars: ClassVar[tuple[str, ...]] = ()     # default env vars for `tokn import --from env`
    hosts: ClassVar[tuple[str, ...]] = ()        # hosts whose traffic this provider owns (switch)
    chat_stream_quirks: ClassVar[bool] = False   # repair split choices / tool indexes for chat

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient) -> None:
        self.account = account
        self.client = client
        self._models: list[ModelInfo] | None = None
        self._models_lock = asyncio.Lock()

    # --- identity ----------------------------------------------------------------
    @property
    def account_id(self) -> str:
        return self.account.id

    def setting(self, key: str, default: Any = None) -> Any:
        return self.account.settings.get(key, default)

    def option(self, key: str, default: Any = None) -> Any:
        """A per-account override: ``[accounts.settings]`` first, then a top-level field."""
        value = self.account.settings.get(key)
        if value in (None, ""):
            value = self.account.fields.get(key)
        return default if value in (None, "") else value

    async def base_url(self) -> str:
        return (self.account.base_url or self.default_base_url).rstrip("/")

    def api_key(self) -> str:
        """The account's key (``key_field``); a 401 saying how to log in when absent."""
        key = self.account.get(self.key_field)
        if not key:
            raise ToknError(
                f"account {self.account_id!r} has no {self.key_field}; "
                f"run `tokn login --provider {self.account.provider} --id {self.account_id}`.",
                status=401, code="missing_credentials",
            )
        return str(key)

    async def credentials(self, *, refresh: bool = False) -> dict[str, str]:
        """Headers that authenticate this account (``refresh`` forces a new token)."""
        return {"authorization": f"Bearer {self.api_key()}"}

    @property
    def can_refresh(self) -> bool:
        return False

    def prepare(self, fmt: str, body: dict[str, Any],
                inbound: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        """Provider tweaks to an outgoing body, and extra headers for it."""
        return body, {}

    # --- models ------------------------------------------------------------------
    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The account's models, listed once and cached (``refresh`` re-lists).

        A failed listing keeps the last good list, else serves the configured
        ``models`` (uncached); with neither it raises a :class:`ToknError`
        naming the account, what failed and the fix (the pool marks the
        account failing and retries the listing with backoff).
        """
        async with self._models_lock:
            if self._models is None or refresh:
                configured = [ModelInfo(m, formats=self.formats) for m in self.account.models]
                try:
                    listed = await self.list_models()
                except (httpx.HTTPError, ToknError, ValueError) as exc:
                    if self._models is not None:  # keep the last good list
                        return self._models
                    if configured:  # not cached: the listing is tried again later
                        return configured
                    raise self._listing_failed(exc) from exc
                seen = {m.id for m in configured}
                self._models = configured + [m for m in listed if m.id not in seen]
            return self._models

    def _listing_failed(self, exc: Exception) -> ToknError:
        if isinstance(exc, ToknError):
            return exc
        if isinstance(exc, httpx.HTTPError):
            try:
                where = str(exc.request.url)
            except RuntimeError:  # an error raised without a request
                where = "its API"
            text = str(exc).strip()
            detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            return ToknError(f"account {self.account_id} cannot reach {where} to list its "
                             f"models ({detail}); check the network or the account's "
                             f"base_url.", status=502, code="upstream_unreachable")
        return ToknError(f"account {self.account_id}: its model listing is unreadable ({exc})",
                         status=502, code="upstream_error")

    def listing_refused(self, status: int, text: str, path: str) -> ToknError:
        """The error for a model listing answered with HTTP ``status``."""
        if status in (401, 403):
            return ToknError(
                f"account {self.account_id}: its credentials were rejected (HTTP {status} from "
                f"GET {path}); run `tokn login --provider {self.account.provider} "
                f"--id {self.account_id}` (or fix the key in the config).",
                status=401, code="credentials_rejected")
        return ToknError(f"account {self.account_id}: GET {path} answered {status}: "
                         f"{text[:200]}", status=502, code="upstream_error")

    @property
    def has_models(self) -> bool:
        """Whether a model list has been fetched (and is cached)."""
        return self._models is not None

    async def list_models(self) -> list[ModelInfo]:
        data = await self.get_json("models")
        items = data.get("data", data.get("models", [])) if isinstance(data, dict) else data
        return [self.model_from_listing(item) for item in items if isinstance(item, dict)]

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        return ModelInfo(str(item.get("id")), formats=self.formats, raw=item)

    def model_formats(self, model: ModelInfo | None) -> frozenset[str]:
        """Formats this account can serve ``model`` in natively."""
        if model is not None and model.formats:
            return model.formats
        return self.formats

    def dialect(self, fmt: str, model: str) -> Dialect:
        """What this upstream accepts beyond plain ``fmt`` requests for ``model``
        (the upstream id): where cache breakpoints go, ``prompt_cache_key``,
        structured output (:class:`tokn.convert.Dialect`). Plain by default."""
        return PLAIN

    # --- HTTP --------------------------------------------------------------------
    def http_timeout(self) -> httpx.Timeout:
        """httpx limits for an API call: the account's connect timeout.  The
        pipeline bounds the answer itself (first byte, whole response, stream
        gaps: ``[timeouts]``); the read limit here is only a backstop."""
        t = self.account.timeouts
        backstop = max(t.first_byte_secs, t.response_secs, t.stream_idle_secs)
        return httpx.Timeout(connect=t.connect_secs, read=backstop, write=backstop,
                             pool=t.connect_secs)

    async def url_for(self, fmt: str) -> str:
        return f"{await self.base_url()}{self.paths[fmt]}"

    def forwarded_headers(self, inbound: Mapping[str, str]) -> dict[str, str]:
        """Client headers worth passing on (``anthropic-*``, ``openai-*`` betas...)."""
        keep = ("anthropic-version", "anthropic-beta", "openai-beta")
        return {k.lower(): v for k, v in inbound.items() if k.lower() in keep}

    async def get_json(self, fmt: str) -> Any:
        headers = {**await self.credentials(), "accept": "application/json"}
        headers.update(self.static_headers())
        resp = await self.client.get(await self.url_for(fmt), headers=headers)
        if resp.status_code == 401 and self.can_refresh:
            headers.update(await self.credentials(refresh=True))
            resp = await self.client.get(await self.url_for(fmt), headers=headers)
        if resp.status_code >= 400:
            raise self.listing_refused(resp.status_code, resp.text, self.paths[fmt])
        return resp.json()

    def static_headers(self) -> dict[str, str]:
        """Headers sent on every call (identity headers for Copilot, versions...)."""
        return {}

    async def send(self, fmt: str, body: dict[str, Any], inbound: Mapping[str, str],
                   *, stream: bool) -> UpstreamResponse:
        """POST ``body`` to the endpoint for ``fmt``; refresh once on a 401."""
        body, extra = self.prepare(fmt, body, inbound)
        url = await self.url_for(fmt)
        base_headers = {
            **self.forwarded_headers(inbound),
            **self.static_headers(),
            **extra,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        refresh = False
        while True:
            headers = {**base_headers, **await self.credentials(refresh=refresh)}
            request = self.client.build_request("POST", url, json=body, headers=headers,
                                                timeout=self.http_timeout())
            response = await self.client.send(request, stream=True)
            if response.status_code in (401, 403) and self.can_refresh and not refresh \
                    and await self.should_refresh(response):
                await response.aclose()
                refresh = True
                continue
            return UpstreamResponse(response.status_code, response.headers, fmt,
                                    stream, _response=response)

    async def should_refresh(self, response: httpx.Response) -> bool:
        """Whether an auth failure means "token stale": a 401 by default."""
        return response.status_code == 401

    def failure_kind(self, status: int, body: bytes) -> str:
        """How the pool treats an upstream error status.

        ``account``: this account cannot serve now (cool down, try the next);
        ``quota``: the account's quota is spent (leave rotation until reset);
        ``client``: the request itself is wrong (answer the client, no cooldown).
        """
        if status in (401, 403, 408, 429) or status >= 500:
            return "account"
        if status == 402:
            return "quota"
        return "client"

    def quota_reset(self, status: int, body: bytes) -> float | None:
        """Epoch seconds when a spent quota comes back, when the upstream says."""
        return None

    async def switch_headers(self) -> dict[str, str]:
        """Credentials (and identity) injected into a switched proxy flow."""
        return {**self.static_headers(), **await self.credentials()}

    async def describe(self) -> dict[str, Any]:
        """Extra facts for ``tokn account show`` (plan, quota...)."""
        return {}

    @classmethod
    def forget(cls, account_id: str) -> None:
        """Drop what this provider cached for a removed account (tokens, facts)."""
