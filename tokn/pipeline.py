"""One request's way through tokn: inbound format -> account pick -> convert ->
send -> convert back -> record.

The listener calls :meth:`Pipeline.handle` for every API request, and the
proxy's route mode reaches it through the listener, so both front doors share
one pool, one converter and one usage log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tokn import endings, rules, wire
from tokn.config import Config
from tokn.convert import (
    FORMATS,
    NO_HINTS,
    Hints,
    convert_request,
    convert_response,
    extract_usage,
    response_hints,
    stream_converter,
)
from tokn.convert.chat import completion_to_chunks
from tokn.convert.gemini.wire import count_tokens_request, count_tokens_response
from tokn.convert.models import normalize_model
from tokn.convert.tokens import count_tokens
from tokn.drain import InFlight
from tokn.endings import Ending, describe
from tokn.errors import ConversionError, ToknError
from tokn.identity import ANONYMOUS, Identity
from tokn.initiator import initiator_for
from tokn.pool import Candidate, Pool
from tokn.recorder import Attempt, Recorder
from tokn.resolve import is_glob
from tokn.sse import encode_event
from tokn.streaming import Relay
from tokn.usage import UsageRow, new_request_id

CONVERTIBLE = FORMATS  # the formats converted into one another (through chat)
# response headers naming who served a request (account, provider, model)
SERVED_HEADERS = ("x-tokn-account", "x-tokn-provider", "x-tokn-model")


@dataclass
class Inbound:
    """A parsed API request as it reached a front door."""

    fmt: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    front_door: str = "listener"
    route_mode: str = "route"
    client: str = ""
    size: int | None = None
    request_id: str = field(default_factory=new_request_id)
    params: Mapping[str, str] = field(default_factory=dict)  # the path's (wire.Endpoint)
    identity: Identity = ANONYMOUS  # who called, as the front door resolved it
    # the listener's registration of this request (bounded waits, drain)
    flight: InFlight = field(default_factory=InFlight)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def api(self) -> wire.Api:
        """The API the caller speaks (its error format)."""
        return wire.endpoint(self.fmt).api

    @property
    def session_key(self) -> str | None:
        for name in ("x-session-id", "x-tokn-session", "session_id"):
            if self.headers.get(name):
                return self.headers[name]
        meta = self.body.get("metadata")
        user = meta.get("user_id") if isinstance(meta, dict) else None
        key = user or self.body.get("prompt_cache_key") or self.body.get("user")
        return key if isinstance(key, str) and key else None

    @property
    def wants_usage(self) -> bool:
        """Whether a chat client asked for the usage-only stream chunk."""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))


@dataclass
class Reply:
    """What a front door sends back: a whole body or a byte stream."""

    status: int
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    failover: bool = False  # an account failure: the next account may try


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), headers=headers or {})


def error_reply(api: wire.Api, status: int, message: str, code: str | None = None,
                retry_after: float | None = None) -> Reply:
    headers = {}
    if retry_after and retry_after < 10**9:
        headers["retry-after"] = str(max(int(retry_after + 0.999), 1))
    return json_reply(status, api.error(status, message, code), headers)


def choose_format(fmt: str, served: frozenset[str]) -> str | None:
    """The upstream format for a caller speaking ``fmt``: native first, else
    the first convertible one the account serves."""
    if fmt in served:
        return fmt
    if fmt not in CONVERTIBLE:
        return None
    return next((f for f in CONVERTIBLE if f in served), None)


def _served(data: Any, cand: Candidate) -> str:
    """The served model for the usage row: the upstream's word, else the one
    the request was resolved to."""
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else cand.served_model


def _upstream_message(raw: bytes, status: int) -> tuple[str, str | None]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or f"upstream answered HTTP {status}"), None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        code = err.get("code")  # Google's is the HTTP status; its `status` names it
        if not isinstance(code, str):
            code = err.get("status") if isinstance(err.get("status"), str) else None
        return str(err.get("message") or err.get("msg") or err)[:1000], code
    return str(err)[:1000], None


class Pipeline:
    def __init__(self, config: Callable[[], Config], pool: Pool, recorder: Recorder) -> None:
        self.config = config
        self.pool = pool
        self.recorder = recorder

    @property
    def cfg(self) -> Config:
        """The config in force (read through the runtime's accessor, never kept)."""
        return self.config()

    # --- entry ---------------------------------------------------------------------
    async def handle(self, inbound: Inbound) -> Reply:
        try:
            if inbound.fmt == "count_tokens":
                return json_reply(200, {"input_tokens": count_tokens(inbound.body, "messages")})
            if inbound.fmt == "gemini_count_tokens":
                total = count_tokens(count_tokens_request(inbound.body), "gemini")
                return json_reply(200, count_tokens_response(total))
            model = inbound.body.get("model")
            if not isinstance(model, str) or not model:
                message = "`model` is required and must be a string."
                self.reject(inbound, 400, message)
                return error_reply(inbound.api, 400, message)
            started = time.perf_counter()
            try:
                candidates = await self.pool.candidates(model, inbound.headers,
                                                        inbound.session_key, fmt=inbound.fmt)
            except ToknError as exc:  # no attempt was made: the row says why
                self._begin(inbound, exc.account, started=started).finish(
                    None, status=exc.status, error=exc.message)
                raise
            except asyncio.CancelledError:  # the client left while accounts were listed
                self._begin(inbound, None, started=started).finish(self._abandoned(inbound))
                raise
            return await self._attempt(inbound, candidates)
        except ToknError as exc:  # ConversionError (a malformed body) is one: a 400
            return error_reply(inbound.api, exc.status, exc.message, exc.code, exc.retry_after)

    # --- attempts ------------------------------------------------------------------
    async def _attempt(self, inbound: Inbound, candidates: list[Candidate]) -> Reply:
        last: Reply | None = None
        unserved: tuple[str, str] | None = None  # the last answer was no account's attempt
        for cand in candidates:
            # With one account there is nowhere to fail over to: a transient
            # error is recorded, but the account rests only when told to wait.
            cand.solo = len(candidates) == 1
            target = choose_format(inbound.fmt, cand.provider.model_formats(cand.model))
            if target is None:
                unserved = (cand.account_id, f"account {cand.account_id} cannot serve "
                            f"{inbound.fmt} requests for {cand.upstream_model}.")
                last = error_reply(inbound.api, 400, unserved[1])
                continue
            unserved = None
            reply = await self._try(inbound, cand, target)
            if isinstance(reply, _Retry):  # the model is served in another format there
                reply = await self._try(inbound, cand, reply.fmt)
            if not reply.failover:
                return reply
            last = reply
        if unserved is not None:
            self.reject(inbound, 400, unserved[1], account=unserved[0])
        return last or error_reply(inbound.api, 503, "no account could serve this.")

    async def _try(self, inbound: Inbound, cand: Candidate, target: str) -> Any:
        attempt = self._begin(inbound, cand.account_id, target)
        try:
            return await self._send(inbound, cand, target, attempt)
        except asyncio.CancelledError:  # the client went away (or shutdown ran out)
            attempt.finish(self._abandoned(inbound))
            raise
        except ConversionError as exc:  # the client's malformed body: a 400, recorded
            attempt.finish(Ending(exc.status, exc.message))
            raise

    async def _send(self, inbound: Inbound, cand: Candidate, target: str,
                    attempt: Attempt) -> Any:
        provider = cand.provider
        limits = provider.account.timeouts
        # A ConversionError (the client's malformed body) goes up to handle() as a
        # 400; anything else a converter raises is a bug: a logged 500.
        shaping = rules.matching(self.cfg.rules, (inbound.body.get("model"), cand.served_model),
                                 cand.account_id, provider.account.provider)
        source = rules.shape(inbound.fmt, inbound.body, shaping)
        body = dict(convert_request(inbound.fmt, target, source,
                                    dialect=provider.dialect(target, cand.upstream_model))
                    if inbound.fmt in CONVERTIBLE else source)
        body["model"] = cand.upstream_model
        if target == "chat" and inbound.stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
        body = rules.strip(body, shaping)
        # a stream's headers come first; a plain answer's only with its whole body
        window = limits.first_byte_secs if inbound.stream else limits.response_secs
        deadline = time.perf_counter() + window
        try:
            async with inbound.flight.bounded(window):
                up = await provider.send(target, body, inbound.headers, stream=inbound.stream)
        except ConversionError:  # a provider-side converter (Kiro's) rejected the body
            raise
        except ToknError as exc:  # e.g. a rejected token: its status and fix
            return self._account_failed(inbound, cand, attempt, Ending(exc.status, exc.message))
        except httpx.HTTPError as exc:
            return self._account_failed(inbound, cand, attempt, Ending(
                502, f"cannot reach the upstream: {describe(exc)}"))
        except TimeoutError:
            return self._account_failed(inbound, cand, attempt,
                                        endings.no_answer(window, stream=inbound.stream))
        attempt.first_byte()
        if up.status >= 400:
            return await self._upstream_error(inbound, cand, target, up, attempt,
                                              deadline - time.perf_counter())
        if inbound.stream and up.is_sse:
            return await self._stream_reply(inbound, cand, up, attempt,
                                            deadline - time.perf_counter())
        if inbound.stream:  # a JSON answer to a stream request: its body is the answer
            window = limits.response_secs
            deadline = attempt.started + window
        try:
            raw = await self._read(inbound, up, deadline - time.perf_counter())
        except httpx.HTTPError as exc:
            return self._account_failed(inbound, cand, attempt, endings.upstream_broke(exc))
        except TimeoutError:
            return self._account_failed(inbound, cand, attempt,
                                        endings.no_answer(window, stream=False))
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._account_failed(inbound, cand, attempt, Ending(
                502, f"upstream sent invalid JSON (not an object): {raw[:120]!r}"))
        self.pool.mark_success(provider.account_id, inbound.session_key)
        if inbound.stream and inbound.fmt in CONVERTIBLE and up.fmt in CONVERTIBLE:
            return self._json_as_stream(inbound, cand, up, data, attempt)
        usage = extract_usage(up.fmt, data) if up.fmt in CONVERTIBLE else None
        if inbound.fmt in CONVERTIBLE and up.fmt != inbound.fmt:
            data = convert_response(up.fmt, inbound.fmt, data, model=inbound.body.get("model"),
                                    hints=self._hints(inbound, cand, up))
            out = json.dumps(data).encode()
        else:
            out = raw
        attempt.row.response_body = self.recorder.capture(out)
        attempt.finish(None, status=up.status, usage=usage,
                       served=_served(data, cand), bytes_out=len(out), extra=up.extra_usage)
        return Reply(up.status, out, headers=self._headers(cand))

    @staticmethod
    async def _read(inbound: Inbound, up: Any, secs: float) -> bytes:
        """The whole upstream body within ``secs`` (then TimeoutError); closed after."""
        try:
            async with inbound.flight.bounded(max(secs, 0.001)):
                return await up.read()
        finally:
            await up.aclose()

    def _abandoned(self, inbound: Inbound) -> Ending:
        return endings.shut_down(self.cfg.server.drain_secs) if inbound.flight.cut \
            else endings.client_closed()

    def _account_failed(self, inbound: Inbound, cand: Candidate, attempt: Attempt,
                        ending: Ending) -> Reply:
        """The account failed before the client got a byte: record it, rest the
        account, let the next one try.  A drain cut is no account's fault."""
        if inbound.flight.cut:
            ending = endings.shut_down(self.cfg.server.drain_secs)
            attempt.finish(ending)
            return error_reply(inbound.api, ending.status, ending.reason)
        self._rest(cand, ending.reason)
        attempt.finish(ending)
        reply = error_reply(inbound.api, ending.status,
                            f"account {cand.account_id} failed: {ending.reason}")
        reply.failover = True
        return reply

    def _rest(self, cand: Candidate, error: str) -> None:
        """The account failed (no answer, a broken stream): rest it, unless it is
        the only one (a transient error then just counts)."""
        self.pool.mark_failure(cand.account_id, error, cooldown=not cand.solo)

    async def _upstream_error(self, inbound: Inbound, cand: Candidate, target: str,
                              up: Any, attempt: Attempt, secs: float) -> Any:
        provider = cand.provider
        try:
            raw = await self._read(inbound, up, max(secs, 1.0))
        except (httpx.HTTPError, TimeoutError):
            raw = b""
        message, code = _upstream_message(raw, up.status)
        attempt.finish(None, status=up.status, error=message)
        retry = provider.format_refused(up.status, code, target, cand.model) \
            if inbound.fmt in CONVERTIBLE else None
        if retry is not None:
            return _Retry(retry)
        kind, retry_after = self.pool.mark_refused(provider, up.status, raw, up.headers,
                                                   f"HTTP {up.status}: {message}",
                                                   cooldown=not cand.solo)
        api = inbound.api
        if kind == "client":
            if up.fmt == inbound.fmt or (api is wire.OPENAI and wire.endpoint(up.fmt).api is api):
                headers = {"content-type": up.headers.get("content-type", "application/json")}
                return Reply(up.status, raw, headers=headers)
            return error_reply(api, up.status, message, code)
        reply = error_reply(api, up.status, f"{provider.account_id}: {message}", code,
                            retry_after)
        reply.failover = True
        return reply

    async def _stream_reply(self, inbound: Inbound, cand: Candidate, up: Any,
                            attempt: Attempt, window: float) -> Reply:
        limits = cand.provider.account.timeouts
        conv = stream_converter(up.fmt, inbound.fmt, model=inbound.body.get("model"),
                                normalize=cand.provider.chat_stream_quirks,
                                include_usage=inbound.wants_usage,
                                hints=self._hints(inbound, cand, up),
                                max_line=int(self.cfg.server.max_sse_line_mb * 1024 * 1024))
        capture = self.recorder.body_capture()

        def on_end(ending: Ending | None, sent: int) -> None:
            attempt.row.response_body = capture.text()
            if ending is not None and ending.status in (endings.UPSTREAM_FAILED,
                                                        endings.TIMED_OUT):
                self._rest(cand, ending.reason)
            attempt.finish(ending, status=up.status, usage=conv.usage,
                           served=conv.model or cand.served_model, bytes_out=sent,
                           extra=up.extra_usage)

        relay = Relay(up, conv, inbound.flight, idle_secs=limits.stream_idle_secs,
                      drain_secs=self.cfg.server.drain_secs, capture=capture, on_end=on_end)
        failed = await relay.look_ahead(max(window, 0.001))
        if failed is not None:  # nothing reached the client: the next account may try
            return self._account_failed(inbound, cand, attempt, failed)
        self.pool.mark_success(cand.account_id, inbound.session_key)
        inbound.flight.at_end(relay.abandon)
        headers = {**self._headers(cand), "cache-control": "no-cache"}
        return Reply(up.status, stream=relay.body(), headers=headers,
                     media_type="text/event-stream")

    def _json_as_stream(self, inbound: Inbound, cand: Candidate, up: Any, data: Any,
                        attempt: Attempt) -> Reply:
        """The client asked to stream but the upstream answered one JSON body:
        replay it as the stream the client expects."""
        hints = self._hints(inbound, cand, up)
        chat = convert_response(up.fmt, "chat", data, hints=hints) if up.fmt != "chat" else data
        conv = stream_converter("chat", inbound.fmt, model=inbound.body.get("model"),
                                include_usage=inbound.wants_usage, hints=hints)
        sse = b"".join(encode_event(c) for c in completion_to_chunks(chat))
        out = conv.feed(sse + b"data: [DONE]\n\n") + conv.close()
        attempt.finish(None, status=up.status, usage=extract_usage(up.fmt, data),
                       served=_served(data, cand), bytes_out=len(out), extra=up.extra_usage)

        async def once() -> AsyncIterator[bytes]:
            yield out

        return Reply(up.status, stream=once(), headers={**self._headers(cand),
                                                        "cache-control": "no-cache"},
                     media_type="text/event-stream")

    @staticmethod
    def _hints(inbound: Inbound, cand: Candidate, up: Any) -> Hints:
        """What converting this upstream's answer back to the client needs to know."""
        if inbound.fmt not in CONVERTIBLE or up.fmt not in CONVERTIBLE:
            return NO_HINTS
        return response_hints(inbound.fmt, inbound.body, up.fmt,
                              cand.provider.dialect(up.fmt, cand.upstream_model))

    # --- bookkeeping ---------------------------------------------------------------
    @staticmethod
    def _headers(cand: Candidate) -> dict[str, str]:
        return dict(zip(SERVED_HEADERS, (cand.account_id, cand.provider.account.provider,
                                         cand.served_model), strict=True))

    def _begin(self, inbound: Inbound, account: str | None, target: str | None = None, *,
               started: float | None = None) -> Attempt:
        """An attempt with its row's request columns; ``account`` the one tried
        (or at fault); timed from ``started`` (default: now)."""
        provider = self.pool.providers.get(account) if account else None
        initiator = None
        if inbound.fmt in CONVERTIBLE:  # the provider's rule: what Copilot sends too
            initiator = provider.initiator(inbound.fmt, inbound.body, inbound.headers) \
                if provider else initiator_for(inbound.fmt, inbound.body,
                                               inbound.headers.get("x-initiator"))
        attempt = self.recorder.begin(UsageRow(
            request_id=inbound.request_id, session_key=inbound.session_key,
            front_door=inbound.front_door, route_mode=inbound.route_mode,
            client=inbound.client, key_name=inbound.identity.name,
            inbound_format=inbound.fmt, upstream_format=target,
            provider=provider.account.provider if provider else None, account=account,
            model_requested=inbound.body.get("model"), initiator=initiator,
            stream=int(inbound.stream), bytes_in=inbound.size,
            request_body=self.recorder.capture(inbound.body)))
        if started is not None:
            attempt.started = started
        return attempt

    def reject(self, inbound: Inbound, status: int, reason: str, *,
               account: str | None = None) -> None:
        """Log and record a request answered before any upstream was tried (a
        malformed body, no model, a format no account serves)."""
        self._begin(inbound, account).finish(Ending(status, reason))

    # --- models --------------------------------------------------------------------
    async def models(self) -> list[dict[str, Any]]:
        """Every model the pool serves, once, as OpenAI lists them plus tokn's
        ``x_tokn`` facts (a caller's API shapes the answer: ``wire.Api.listing``),
        then the exact aliases of ``[models.aliases]`` whose target is served
        (``x_tokn.alias``)."""
        seen: dict[str, dict[str, Any]] = {}
        pairs = await self.pool.all_models()
        for provider, model in pairs:
            if model.id in seen:
                seen[model.id]["x_tokn"]["accounts"].append(provider.account_id)
                continue
            seen[model.id] = {
                "id": model.id, "object": "model", "created": 0,
                "owned_by": model.raw.get("vendor") or provider.account.provider,
                "x_tokn": {
                    "provider": provider.account.provider, "account": provider.account_id,
                    "accounts": [provider.account_id], "upstream_id": model.upstream_id,
                    "formats": sorted(provider.model_formats(model)),
                    "capabilities": model.capabilities,
                    "context_window": model.context_window,
                    "display_name": model.raw.get("name") or model.raw.get("display_name"),
                },
            }
        data = list(seen.values())
        served = [m.id for _, m in pairs]
        for alias, target in self.cfg.models.aliases.items():
            if is_glob(alias) or alias in seen:  # a pattern is no id; a served id wins
                continue
            found = normalize_model(target, served) if served else None
            if found is not None:
                data.append({"id": alias, "object": "model", "created": 0, "owned_by": "tokn",
                             "x_tokn": {"alias": True, "alias_of": target,
                                        "resolves_to": found,
                                        "accounts": list(seen[found]["x_tokn"]["accounts"]),
                                        "display_name": f"{alias} (alias of {found})"}})
        failing = self.pool.listing_errors()
        if not data and failing:  # not "no models": say which accounts fail and why
            raise self.pool.listing_failure(failing)
        return data


@dataclass(frozen=True)
class _Retry:
    """The upstream refused the format for this model: try ``fmt`` on the same account."""

    fmt: str
