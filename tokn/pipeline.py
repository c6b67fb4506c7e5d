"""One request's way through tokn: inbound format -> account pick -> convert ->
send -> convert back -> record.

The listener calls :meth:`Pipeline.handle` for every API request, and the
proxy's route mode reaches it through the listener, so both front doors share
one pool, one converter and one usage log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tokn import endings
from tokn.config import Config
from tokn.convert import (
    NO_HINTS,
    Hints,
    convert_request,
    convert_response,
    extract_usage,
    response_hints,
    stream_converter,
)
from tokn.convert.chat import completion_to_chunks
from tokn.convert.tokens import count_tokens
from tokn.drain import InFlight
from tokn.endings import Ending, describe
from tokn.errors import ConversionError, ToknError, error_body
from tokn.initiator import initiator_for
from tokn.pool import Candidate, Pool, parse_retry_after
from tokn.sse import encode_event
from tokn.streaming import Relay
from tokn.usage import BodyCapture, UsageStore, capture_body

log = logging.getLogger("tokn.request")


def usage_columns(usage: Any) -> dict[str, int]:
    """A converter :class:`~tokn.convert.Usage` as usage-store columns."""
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "estimated": int(usage.estimated)}


def log_request(row: dict[str, Any]) -> None:
    """One line per request: id, mode, front door, provider/account, requested ->
    served model ("-": none served), status, latency and, for a failure, its
    reason; structured fields for ``[logging] format = "json"``."""
    status, error = row.get("status") or 0, row.get("error")
    fields = {"request_id": row.get("request_id"), "mode": row.get("route_mode"),
              "front_door": row.get("front_door"), "provider": row.get("provider"),
              "account": row.get("account"), "model": row.get("model_requested"),
              "model_served": row.get("model_served"), "stream": bool(row.get("stream")),
              "status": status, "latency_ms": round(row.get("latency_ms") or 0.0, 1),
              "input_tokens": row.get("input_tokens", 0),
              "output_tokens": row.get("output_tokens", 0), "error": error}
    (log.warning if status >= 500 or error else log.info)(
        "%s %s %s %s/%s %s -> %s %d %.0fms%s", fields["request_id"], fields["mode"],
        fields["front_door"], fields["provider"] or "-", fields["account"] or "-",
        fields["model"] or "-", fields["model_served"] or "-", status, fields["latency_ms"],
        f" reason: {error}" if error else "", extra={"fields": fields})

CONVERTIBLE = ("chat", "messages", "responses")


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
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    # the listener's registration of this request (bounded waits, drain)
    flight: InFlight = field(default_factory=InFlight)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

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


def error_reply(fmt: str, status: int, message: str, code: str | None = None,
                retry_after: float | None = None) -> Reply:
    headers = {}
    if retry_after and retry_after < 10**9:
        headers["retry-after"] = str(max(int(retry_after + 0.999), 1))
    return json_reply(status, error_body(fmt, status, message, code), headers)


def choose_format(fmt: str, served: frozenset[str]) -> str | None:
    """The upstream format for a caller speaking ``fmt``: native first, else
    the first convertible one the account serves."""
    if fmt in served:
        return fmt
    if fmt not in CONVERTIBLE:
        return None
    return next((f for f in CONVERTIBLE if f in served), None)


def _upstream_message(raw: bytes, status: int) -> tuple[str, str | None]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or f"upstream answered HTTP {status}"), None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("msg") or err)[:1000], err.get("code")
    return str(err)[:1000], None


class Pipeline:
    def __init__(self, cfg: Config, pool: Pool, usage: UsageStore | None = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.usage = usage

    # --- entry ---------------------------------------------------------------------
    async def handle(self, inbound: Inbound) -> Reply:
        try:
            if inbound.fmt == "count_tokens":
                return json_reply(200, {"input_tokens": count_tokens(inbound.body, "messages")})
            model = inbound.body.get("model")
            if not isinstance(model, str) or not model:
                message = "`model` is required and must be a string."
                self.reject(inbound, 400, message)
                return error_reply(self._err_fmt(inbound), 400, message)
            started = time.perf_counter()
            try:
                candidates = await self.pool.candidates(model, inbound.headers,
                                                        inbound.session_key)
            except ToknError as exc:  # no attempt was made: the row says why
                self._record(self._row(inbound, exc.account), started,
                             status=exc.status, error=exc.message)
                raise
            except asyncio.CancelledError:  # the client left while accounts were listed
                ending = self._abandoned(inbound)
                self._record(self._row(inbound, None), started, status=ending.status,
                             error=ending.reason)
                raise
            return await self._attempt(inbound, candidates)
        except ToknError as exc:  # ConversionError (a malformed body) is one: a 400
            return error_reply(self._err_fmt(inbound), exc.status, exc.message, exc.code,
                               exc.retry_after)

    @staticmethod
    def _err_fmt(inbound: Inbound) -> str:
        return "messages" if inbound.fmt in ("messages", "count_tokens") else "chat"

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
                last = error_reply(self._err_fmt(inbound), 400, unserved[1])
                continue
            unserved = None
            reply = await self._try(inbound, cand, target)
            if reply is _RETRY_RESPONSES:  # a responses-only model: convert instead
                reply = await self._try(inbound, cand, "responses")
            if not reply.failover:
                return reply
            last = reply
        if unserved is not None:
            self.reject(inbound, 400, unserved[1], account=unserved[0])
        return last or error_reply(self._err_fmt(inbound), 503, "no account could serve this.")

    async def _try(self, inbound: Inbound, cand: Candidate, target: str) -> Any:
        attempt = Attempt(self, self._row(inbound, cand.account_id, target))
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
        body = dict(convert_request(inbound.fmt, target, inbound.body,
                                    dialect=provider.dialect(target, cand.upstream_model))
                    if inbound.fmt in CONVERTIBLE else inbound.body)
        body["model"] = cand.upstream_model
        if target == "chat" and inbound.stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
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
        attempt.row["ttfb_ms"] = (time.perf_counter() - attempt.started) * 1000
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
        attempt.row["response_body"] = capture_body(self.cfg, out)
        attempt.finish(None, status=up.status, usage=usage,
                       served=data.get("model") if isinstance(data, dict) else None,
                       bytes_out=len(out), extra=up.extra_usage)
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
            return error_reply(self._err_fmt(inbound), ending.status, ending.reason)
        self._rest(cand, ending.reason)
        attempt.finish(ending)
        reply = error_reply(self._err_fmt(inbound), ending.status,
                            f"account {cand.account_id} failed: {ending.reason}")
        reply.failover = True
        return reply

    def _rest(self, cand: Candidate, error: str, *, retry_after: float | None = None,
              exhausted_until: float | None = None) -> None:
        cooldown = not cand.solo or retry_after is not None or exhausted_until is not None
        self.pool.mark_failure(cand.account_id, error, retry_after=retry_after,
                               exhausted_until=exhausted_until, cooldown=cooldown)

    async def _upstream_error(self, inbound: Inbound, cand: Candidate, target: str,
                              up: Any, attempt: Attempt, secs: float) -> Any:
        provider = cand.provider
        try:
            raw = await self._read(inbound, up, max(secs, 1.0))
        except (httpx.HTTPError, TimeoutError):
            raw = b""
        message, code = _upstream_message(raw, up.status)
        attempt.finish(None, status=up.status, error=message)
        if code == "unsupported_api_for_model" and target != "responses" \
                and "responses" in provider.formats and inbound.fmt in CONVERTIBLE:
            if cand.model is not None:
                cand.model.formats = frozenset({"responses"})
            return _RETRY_RESPONSES
        kind = provider.failure_kind(up.status, raw)
        fmt = self._err_fmt(inbound)
        if kind == "client":
            if up.fmt == inbound.fmt or (fmt == "chat" and up.fmt != "messages"):
                headers = {"content-type": up.headers.get("content-type", "application/json")}
                return Reply(up.status, raw, headers=headers)
            return error_reply(fmt, up.status, message, code)
        retry_after = parse_retry_after(up.headers.get("retry-after"))
        exhausted = provider.quota_reset(up.status, raw) if kind == "quota" else None
        self._rest(cand, f"HTTP {up.status}: {message}",
                   retry_after=retry_after, exhausted_until=exhausted)
        reply = error_reply(fmt, up.status, f"{provider.account_id}: {message}", code,
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
        capture = BodyCapture(self.cfg)

        def on_end(ending: Ending | None, sent: int) -> None:
            attempt.row["response_body"] = capture.text()
            if ending is not None and ending.status in (endings.UPSTREAM_FAILED,
                                                        endings.TIMED_OUT):
                self._rest(cand, ending.reason)
            attempt.finish(ending, status=up.status, usage=conv.usage, served=conv.model,
                           bytes_out=sent, extra=up.extra_usage)

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
                       served=data.get("model") if isinstance(data, dict) else None,
                       bytes_out=len(out), extra=up.extra_usage)

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
        return {"x-tokn-account": cand.account_id,
                "x-tokn-provider": cand.provider.account.provider}

    def _row(self, inbound: Inbound, account: str | None,
             target: str | None = None) -> dict[str, Any]:
        """A usage row's request columns; ``account`` the one tried (or at fault)."""
        provider = self.pool.providers.get(account) if account else None
        initiator = None
        if inbound.fmt in CONVERTIBLE:
            mode = provider.setting("initiator_mode", "auto") if provider else "auto"
            initiator = initiator_for(inbound.fmt, inbound.body,
                                      inbound.headers.get("x-initiator"), mode)
        return {
            "request_id": inbound.request_id, "session_key": inbound.session_key,
            "front_door": inbound.front_door, "route_mode": inbound.route_mode,
            "client": inbound.client, "inbound_format": inbound.fmt, "upstream_format": target,
            "provider": provider.account.provider if provider else None, "account": account,
            "model_requested": inbound.body.get("model"), "initiator": initiator,
            "stream": int(inbound.stream), "bytes_in": inbound.size,
            "request_body": capture_body(self.cfg, inbound.body),
        }

    def reject(self, inbound: Inbound, status: int, reason: str, *,
               account: str | None = None) -> None:
        """Log and record a request answered before any upstream was tried (a
        malformed body, no model, a format no account serves)."""
        self._record(self._row(inbound, account), time.perf_counter(), status=status,
                     error=reason)

    def _record(self, row: dict[str, Any], started: float, *, status: int,
                error: str | None = None, usage: Any = None, served: str | None = None,
                bytes_out: int | None = None, extra: dict[str, Any] | None = None) -> None:
        row = dict(row, status=status, error=error, model_served=served, bytes_out=bytes_out,
                   latency_ms=(time.perf_counter() - started) * 1000)
        if usage is not None:
            row.update(usage_columns(usage))
        if extra:
            row.update(extra)
        log_request(row)
        if self.usage is not None:
            self.usage.record(row)

    # --- models --------------------------------------------------------------------
    async def models(self, anthropic_shape: bool = False) -> dict[str, Any]:
        seen: dict[str, dict[str, Any]] = {}
        for provider, model in await self.pool.all_models():
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
        failing = self.pool.listing_errors()
        if not data and failing:  # not "no models": say which accounts fail and why
            raise self.pool.listing_failure(failing)
        if anthropic_shape:
            items = [{"type": "model", "id": m["id"],
                      "display_name": m["x_tokn"]["display_name"] or m["id"],
                      "created_at": "1970-01-01T00:00:00Z"} for m in data]
            return {"data": items, "has_more": False,
                    "first_id": items[0]["id"] if items else None,
                    "last_id": items[-1]["id"] if items else None}
        return {"object": "list", "data": data}


_RETRY_RESPONSES = object()


class Attempt:
    """One upstream attempt's usage row, recorded exactly once however the
    attempt ended (the first :meth:`finish` wins)."""

    def __init__(self, pipeline: Pipeline, row: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.row = row
        self.started = time.perf_counter()
        self.done = False

    def finish(self, ending: Ending | None, *, status: int = 0, error: str | None = None,
               usage: Any = None, served: str | None = None, bytes_out: int | None = None,
               extra: dict[str, Any] | None = None) -> None:
        """Record the row: with ``ending`` its status and reason win over the
        upstream's ``status`` / ``error``."""
        if self.done:
            return
        self.done = True
        if ending is not None:
            status, error = ending.status, ending.reason
        self.pipeline._record(self.row, self.started, status=status, error=error, usage=usage,
                              served=served, bytes_out=bytes_out, extra=extra)
