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
import functools
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from tokn import hosts, state
from tokn.auth import importers
from tokn.auth.tokens import bearer_of, local_tokens
from tokn.config import AccountConfig, mask
from tokn.convert import PLAIN, Dialect
from tokn.endings import describe as describe_error
from tokn.errors import ToknError
from tokn.initiator import MODES, initiator_for
from tokn.providers.payload import Payload
from tokn.providers.setup import ENV_VAR, KEY_STDIN, Credentials, Option, Setup, Verified
from tokn.wire import upstream_paths

# Inbound headers never forwarded upstream (hop-by-hop, credentials, tokn's own).
DROP_HEADERS = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "upgrade", "proxy-authorization", "proxy-connection", "authorization", "x-api-key",
    "accept-encoding", "cookie", "x-goog-api-key",
})

# the formats of Anthropic's API: calls in them carry the client's anthropic-* headers
ANTHROPIC_FORMATS = frozenset({"messages", "count_tokens"})


@functools.lru_cache(maxsize=256)
def parsed_url(url: str) -> httpx.URL:
    """``url`` parsed once: an account's few upstream URLs are parsed on every
    call otherwise (~14 µs each)."""
    return httpx.URL(url)


def outbound_headers(client: httpx.Headers, *layers: Mapping[str, str]) -> dict[str, str]:
    """The headers of an upstream call: the client's defaults, then each of
    ``layers`` over the last, names case-insensitive (lower-cased), as
    ``client.build_request`` merges them at a third of its cost (it rescans the
    list for every header set)."""
    out = dict(client.items())  # already lower-cased
    for layer in layers:
        for name, value in layer.items():
            out[name.lower()] = value
    return out


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
    Every hook the pipeline, the proxy and the CLI call is declared here with
    its default; the account-setup hooks (``login``, ``import_``, ``verify``,
    ``same_account``, ``forget``) make ``tokn login`` / ``tokn import`` /
    ``tokn account`` work for a provider without CLI code of its own.
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
    # Hosts whose traffic this provider owns in switch mode: derived from the one
    # table in tokn/hosts.py (never set in a subclass).
    hosts: ClassVar[tuple[str, ...]] = ()
    chat_stream_quirks: ClassVar[bool] = False   # repair split choices / tool indexes for chat
    # whose API this is: "openai" receives the client's openai-* headers
    vendor: ClassVar[str] = ""
    shows_identity: ClassVar[bool] = False       # `tokn headers` shows its identity headers
    # Account setup (see tokn.providers.setup): the options `tokn login` passes to
    # login(), the sources `tokn import --from` reads and the options it passes to
    # import_(); default ids are PREFIX, PREFIX-2... ("": the provider id).
    login_options: ClassVar[tuple[Option, ...]] = (KEY_STDIN,)
    import_sources: ClassVar[tuple[str, ...]] = ("env",)
    import_options: ClassVar[tuple[Option, ...]] = (ENV_VAR,)
    account_id_prefix: ClassVar[str] = ""
    # Per-account state files of this provider (cached tokens, facts), dropped by
    # forget(); token_state is the one its expiring tokens live in.
    token_state: ClassVar[str] = ""
    state_files: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hosts" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: a provider's hosts are rows of the table in "
                            "tokn/hosts.py, not a class attribute")
        cls.hosts = hosts.hosts_of(cls.id) if cls.id else ()

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient) -> None:
        self.account = account
        self.client = client
        self._models: list[ModelInfo] | None = None
        self._models_lock = asyncio.Lock()
        # models the upstream refused a format for: the formats it serves them in
        self._refused: dict[str, frozenset[str]] = {}

    def adopt(self, account: AccountConfig) -> bool:
        """Take ``account`` (this account's entry as the config file has it
        now) in place, keeping this provider and its health, when it differs
        only by what the provider wrote there itself (a rotated token); False:
        the account changed and needs a new provider."""
        return False

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

    async def credentials(self, *, refresh: bool = False,
                          failed: str | None = None) -> dict[str, str]:
        """Headers that authenticate this account.  Providers whose token expires
        (``can_refresh``) renew it on ``refresh``, or when ``failed`` (the token
        the upstream rejected) is still the current one (:mod:`tokn.auth.tokens`)."""
        return {"authorization": f"Bearer {self.api_key()}"}

    @property
    def can_refresh(self) -> bool:
        return False

    def prepare(self, fmt: str, body: dict[str, Any],
                inbound: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        """Provider tweaks to an outgoing body, and extra headers for it."""
        return body, {}

    @property
    def initiator_mode(self) -> str:
        """``initiator_mode`` (``[accounts.settings]`` or a field): auto, always_user,
        always_agent."""
        mode = str(self.option("initiator_mode", "auto"))
        return mode if mode in MODES else "auto"

    def initiator(self, fmt: str, body: Mapping[str, Any],
                  inbound: Mapping[str, str]) -> str:
        """Who started this request, ``user`` or ``agent`` (:mod:`tokn.initiator`):
        what the usage row says and what Copilot's ``x-initiator`` header sends."""
        return initiator_for(fmt, dict(body), header(inbound, "x-initiator"),
                             self.initiator_mode)

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
                    listed = await self._list_models_again_if_dropped()
                except (httpx.HTTPError, ToknError, ValueError) as exc:
                    if self._models is not None:  # keep the last good list
                        return self._models
                    if configured:  # not cached: the listing is tried again later
                        return configured
                    raise self._listing_failed(exc) from exc
                seen = {m.id for m in configured}
                self._models = configured + [m for m in listed if m.id not in seen]
            return self._models

    async def _list_models_again_if_dropped(self) -> list[ModelInfo]:
        """:meth:`list_models`, asked once more at once when the connection
        failed (reset, closed, refused) rather than timed out: a GET is safe to
        repeat, and a dropped socket should not fail the request waiting on it."""
        try:
            return await self.list_models()
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                raise
            return await self.list_models()

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
        if model is not None and model.id in self._refused:
            return self._refused[model.id]
        if model is not None and model.formats:
            return model.formats
        return self.formats

    def format_refused(self, status: int, code: str | None, fmt: str,
                       model: ModelInfo | None) -> str | None:
        """The upstream refused ``fmt`` for ``model`` (an error answer): the format
        to try the same account in instead, or ``None`` (no retry).

        By default the OpenAI-style ``unsupported_api_for_model``: Copilot (and
        proxies in front of it) serve some models (codex) on /responses only.
        Remembered for the model, so later requests go there first."""
        if code != "unsupported_api_for_model" or fmt == "responses" \
                or "responses" not in self.formats:
            return None
        if model is not None:
            self._refused[model.id] = frozenset({"responses"})
        return "responses"

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

    def forwarded_headers(self, inbound: Mapping[str, str], fmt: str) -> dict[str, str]:
        """The client's vendor headers this call carries: ``anthropic-*``
        (``anthropic-version``, ``anthropic-beta``...) only on an Anthropic-format
        call (``messages``, ``count_tokens``), ``openai-*`` (``openai-beta``,
        ``openai-organization``, ``openai-project``...) only to an OpenAI upstream
        (``vendor = "openai"``); nothing else."""
        out: dict[str, str] = {}
        for name, value in inbound.items():
            low = name.lower()
            if low.startswith("anthropic-") and fmt in ANTHROPIC_FORMATS or \
                    low.startswith("openai-") and self.vendor == "openai":
                out[low] = value
        return out

    async def authorized(self, call: Callable[[dict[str, str]], Awaitable[httpx.Response]]
                         ) -> httpx.Response:
        """``call(credential headers)``, and once more with a refreshed credential
        when the upstream rejected the first (:meth:`should_refresh`).  The one
        refresh-on-rejection loop: every upstream call of every provider goes
        through it."""
        response = await call(await self.credentials())
        if self.can_refresh and await self.should_refresh(response):
            await response.aclose()
            failed = bearer_of(response.request.headers) or ""
            response = await call(await self.credentials(failed=failed))
        return response

    async def post(self, url: str, headers: Mapping[str, str], *, json: Any = None,
                   content: bytes | None = None) -> httpx.Response:
        """POST with the account's credentials (:meth:`authorized`), the answer
        streamed: the caller reads or closes it.  A ``json`` body is encoded as
        httpx would; a big body is sent a slice at a time (:mod:`.payload`), so
        neither its whole encoding nor the socket's send buffer is a second copy."""
        payload = Payload.of(json=json, content=content)
        if json is not None:
            headers = {"content-type": "application/json", **headers}

        async def call(creds: dict[str, str]) -> httpx.Response:
            sent = outbound_headers(self.client.headers, headers, creds)
            if payload.streamed:
                sent["content-length"] = str(payload.size)
            request = httpx.Request("POST", parsed_url(url), content=payload.content(),
                                    headers=sent,
                                    extensions={"timeout": self.http_timeout().as_dict()})
            return await self.client.send(request, stream=True)

        return await self.authorized(call)

    async def get_json(self, fmt: str) -> Any:
        url = await self.url_for(fmt)
        base = {**self.static_headers(), "accept": "application/json"}
        resp = await self.authorized(
            lambda creds: self.client.get(url, headers={**base, **creds}))
        if resp.status_code >= 400:
            raise self.listing_refused(resp.status_code, resp.text, self.paths[fmt])
        return resp.json()

    def static_headers(self) -> dict[str, str]:
        """Headers sent on every call (identity headers for Copilot, versions...)."""
        return {}

    async def send(self, fmt: str, body: dict[str, Any], inbound: Mapping[str, str],
                   *, stream: bool) -> UpstreamResponse:
        """POST ``body`` to the endpoint for ``fmt``; refresh once on a rejection."""
        body, extra = self.prepare(fmt, body, inbound)
        url = await self.url_for(fmt)
        base_headers = {
            **self.forwarded_headers(inbound, fmt),
            **self.static_headers(),
            **extra,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        response = await self.post(url, base_headers, json=body)
        return UpstreamResponse(response.status_code, response.headers, fmt, stream,
                                _response=response)

    async def should_refresh(self, response: httpx.Response) -> bool:
        """Whether an error answer means "token stale" (refresh and retry once):
        a 401 by default."""
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

    async def switch_target(self, path: str, body: bytes | None) -> tuple[str, bytes | None]:
        """A switched proxy flow's path and body with this account's facts in
        place of the client's (Code Assist's envelope names the account's
        project; a key in the URL goes).  Unchanged by default."""
        return path, body

    async def describe(self) -> dict[str, Any]:
        """Extra facts for ``tokn account show`` (plan, quota...)."""
        return {}

    def call_headers(self, fmt: str = "chat") -> dict[str, str]:
        """The headers an API call in ``fmt`` carries besides the credential."""
        _, extra = self.prepare(fmt, {}, {})
        return {**self.static_headers(), **extra}

    async def resolved_headers(self, *, masked: bool = True) -> dict[str, str]:
        """Every header a chat call would carry now (``tokn headers``), the
        credential masked unless ``masked=False``; a :class:`ToknError` when
        there is no credential to be had."""
        creds = await self.credentials()
        if masked:
            creds = {k: _mask_credential(v) for k, v in creds.items()}
        return {**self.call_headers("chat"), **creds}

    # --- account setup ---------------------------------------------------------------
    @classmethod
    async def login(cls, setup: Setup, *, key_stdin: bool = False) -> Credentials:
        """Sign in (``tokn login``): read the API key, hidden, or one line of stdin."""
        if key_stdin:
            key = sys.stdin.readline().strip()
        else:
            key = setup.ask_secret(f"{cls.display_name or cls.id} API key").strip()
        if not key:
            raise ToknError("no key given.", status=400, code="missing_credentials")
        return Credentials({cls.key_field: key})

    @classmethod
    async def import_(cls, source: str, setup: Setup, *,
                      env_var: str | None = None) -> Credentials:
        """Read a credential another tool keeps (``tokn import --from SOURCE``,
        one of ``import_sources``); ``env``: the provider's environment variables."""
        if source != "env":
            raise ToknError(f"provider {cls.id} cannot import from {source!r}.", status=400)
        names = [env_var] if env_var else list(cls.env_vars)
        if not names:
            raise ToknError(f"provider {cls.id!r} has no standard environment variable; "
                            "name the one holding the key with --env-var NAME.",
                            status=400, code="no_env_vars")
        found = importers.from_env(names)
        return Credentials({cls.key_field: found.token}, source=found.source)

    async def verify(self) -> Verified:
        """Check a new credential upstream before it is saved: the model listing.
        A :class:`ToknError` saying what is wrong when it is refused."""
        try:
            url = await self.url_for("models")
        except ToknError:
            raise
        except Exception:  # noqa: BLE001 - only for the message
            url = self.account.base_url or self.default_base_url
        try:
            models = await self.list_models()
        except httpx.TransportError as exc:
            raise ToknError(f"cannot reach {url}: {describe_error(exc)}; check "
                            "--base-url, or save the key unchecked with --no-verify.",
                            status=502, code="unreachable") from None
        except ToknError as exc:
            if exc.status in (401, 403) or re.search(r"answered (401|403)\b", exc.message):
                raise ToknError(f"the key was rejected by {url}: {exc.message}",
                                status=401, code="key_rejected") from None
            raise ToknError(f"could not verify the key against {url}: {exc.message}; "
                            "use --no-verify to save it anyway.", status=502,
                            code="verify_failed") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ToknError(f"could not verify the key against {url}: {exc}; "
                            "use --no-verify to save it anyway.", status=502,
                            code="verify_failed") from None
        return Verified(f"key works, {len(models)} models")

    @classmethod
    def same_account(cls, existing: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether the saved account table ``existing`` holds the credential of
        ``new`` (then signing in again updates it instead of adding one)."""
        return existing.get("provider") in (cls.id, *cls.ids) and \
            bool(new.get(cls.key_field)) and existing.get(cls.key_field) == new.get(cls.key_field)

    @classmethod
    def id_hint(cls, fields: Mapping[str, Any]) -> str:
        """A word to tell a second account of this provider by (a login name)."""
        return ""

    @classmethod
    def cached_facts(cls, account_id: str) -> dict[str, Any]:
        """What is known of the account without asking upstream (``plan``...)."""
        info = state.read("account-info").get(account_id)
        return dict(info) if isinstance(info, dict) else {}

    @classmethod
    def forget_tokens(cls, account_id: str) -> None:
        """Drop the account's cached expiring tokens (new credentials, removal)."""
        if cls.token_state:
            local_tokens().drop(cls.token_state, account_id)

    @classmethod
    def forget(cls, account_id: str) -> None:
        """Drop everything this provider keeps of a removed account."""
        cls.forget_tokens(account_id)
        for name in cls.state_files:
            if account_id in state.read(name):
                state.update(name, account_id, None)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """``headers[name]``, whatever the case of the name (a plain mapping)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    low = name.lower()
    return next((v for k, v in headers.items() if k.lower() == low), None)


def _mask_credential(value: str) -> str:
    scheme, sep, secret = value.partition(" ")
    return f"{scheme} {mask(secret)}" if sep else mask(value)
