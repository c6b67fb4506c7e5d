"""Google's Gemini API with an API key (``generativelanguage.googleapis.com``),
and what every Google upstream shares: how its errors are judged, and how a
Gemini body is sent.

Wire facts (Gemini API reference; ``google.genai`` 2.x): the key goes in
``x-goog-api-key``; ``POST {base}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``; ``GET {base}/models?pageSize=N`` pages
with ``nextPageToken``.  A wrong key is a 400 ``INVALID_ARGUMENT`` with
``ErrorInfo.reason`` ``API_KEY_INVALID``; a spent quota a 429
``RESOURCE_EXHAUSTED`` whose ``QuotaFailure`` names the quota (``...PerDay``
for the daily one) and whose ``RetryInfo`` says when to retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from tokn.convert.gemini.base import model_id, split_target
from tokn.convert.gemini.wire import RPC, error_reason, retry_delay
from tokn.errors import ToknError
from tokn.providers.base import ModelInfo, Provider, UpstreamResponse
from tokn.sse import SSEEvent, SSEParser, encode_event

MAX_PAGES = 20


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _quota_ids(data: Any) -> list[str]:
    error = data.get("error") if isinstance(data, dict) else None
    out = []
    for d in (error.get("details") or []) if isinstance(error, dict) else []:
        if isinstance(d, dict) and d.get("@type") == RPC + "QuotaFailure":
            out += [str(v.get("quotaId") or "") for v in d.get("violations") or []
                    if isinstance(v, dict)]
    return out


def google_failure_kind(status: int, body: bytes) -> str | None:
    """How a Google error is judged, where it differs from the default: a
    spent daily or plan quota is ``quota`` (Code Assist's ``QUOTA_EXHAUSTED``,
    the API's ``...PerDay`` quotas); a per-minute limit rests the account; a
    wrong key (400 ``API_KEY_INVALID``) is the account's fault, not the
    request's.  ``None``: the default rule."""
    data = _json(body)
    reason = error_reason(data)
    if status == 429:
        if reason == "QUOTA_EXHAUSTED" or any("PerDay" in q for q in _quota_ids(data)):
            return "quota"
        return "account"
    if status == 400 and reason in ("API_KEY_INVALID", "API_KEY_EXPIRED"):
        return "account"
    return None


def google_quota_reset(body: bytes, now: float) -> float | None:
    """Epoch seconds when a spent quota comes back: Code Assist's
    ``quotaResetTimeStamp``, else the error's retry delay."""
    data = _json(body)
    error = data.get("error") if isinstance(data, dict) else None
    for d in (error.get("details") or []) if isinstance(error, dict) else []:
        stamp = (d.get("metadata") or {}).get("quotaResetTimeStamp") if isinstance(d, dict) \
            else None
        if stamp:
            try:
                return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
    delay = retry_delay(data)
    return now + delay if delay is not None else None


class GoogleProvider(Provider):
    """What the Gemini API and Code Assist share: Gemini bodies, Google's errors."""

    formats: ClassVar[frozenset[str]] = frozenset({"gemini"})

    def failure_kind(self, status: int, body: bytes) -> str:
        return google_failure_kind(status, body) or super().failure_kind(status, body)

    def quota_reset(self, status: int, body: bytes) -> float | None:
        return google_quota_reset(body, time.time())

    def forwarded_headers(self, inbound: Mapping[str, str]) -> dict[str, str]:
        return {}

    async def send(self, fmt: str, body: dict[str, Any], inbound: Mapping[str, str],
                   *, stream: bool) -> UpstreamResponse:
        model, _, request = split_target(body)
        method = "streamGenerateContent" if stream else "generateContent"
        url, payload = await self.call_for(model or "", method, request)
        headers = {**self.static_headers(), "content-type": "application/json",
                   "accept": "text/event-stream" if stream else "application/json"}
        response = await self.post(url, headers, json=payload)
        return await self.answer(response, stream)

    async def call_for(self, model: str, method: str,
                       request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and body of a ``method`` call for ``model``."""
        raise NotImplementedError

    async def answer(self, response: httpx.Response, stream: bool) -> UpstreamResponse:
        """The upstream's answer as the pipeline reads it."""
        return UpstreamResponse(response.status_code, response.headers, "gemini", stream,
                                _response=response)


class GeminiProvider(GoogleProvider):
    """Google's Gemini API with an API key."""

    id: ClassVar[str] = "gemini"
    display_name: ClassVar[str] = "Google Gemini API"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    paths: ClassVar[dict[str, str]] = {"models": "/models"}
    env_vars: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

    async def credentials(self, *, refresh: bool = False,
                          failed: str | None = None) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key()}

    async def call_for(self, model: str, method: str,
                       request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        url = f"{await self.base_url()}/models/{model_id(model)}:{method}"
        return (url + "?alt=sse" if method == "streamGenerateContent" else url), request

    async def list_models(self) -> list[ModelInfo]:
        base = await self.url_for("models")
        headers = {**self.static_headers(), "accept": "application/json"}
        out: list[ModelInfo] = []
        token = ""
        for _ in range(MAX_PAGES):
            query = {"pageSize": "1000", **({"pageToken": token} if token else {})}
            url = f"{base}?{urlencode(query)}"
            resp = await self.authorized(
                lambda creds, url=url: self.client.get(url, headers={**headers, **creds},
                                                       timeout=self.http_timeout()))
            if resp.status_code >= 400:
                raise self.listing_refused(resp.status_code, resp.text, "/models")
            data = resp.json()
            out += [self.model_from_listing(m) for m in data.get("models") or []
                    if isinstance(m, dict) and "generateContent" in (
                        m.get("supportedGenerationMethods") or ["generateContent"])]
            token = str(data.get("nextPageToken") or "")
            if not token:
                break
        return out

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        return ModelInfo(model_id(str(item.get("name") or "")), formats=self.formats,
                         context_window=item.get("inputTokenLimit"),
                         reasoning=item.get("thinking"),
                         raw={**item, "display_name": item.get("displayName")})

    def listing_refused(self, status: int, text: str, path: str) -> ToknError:
        if status == 400 and "API_KEY_INVALID" in text:  # Google's "wrong key" is a 400
            status = 401
        return super().listing_refused(status, text, path)

    async def switch_target(self, path: str, body: bytes | None) -> tuple[str, bytes | None]:
        # the client's own `?key=` goes: the pooled key travels as x-goog-api-key
        return strip_query_key(path), body


def strip_query_key(path: str) -> str:
    """``path`` without a ``key=`` query parameter (Google's API key in the URL)."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    kept = [p for p in query.split("&") if p.split("=", 1)[0] != "key"]
    return base + ("?" + "&".join(kept) if kept else "")


async def unwrapped_events(response: httpx.Response, unwrap: Any) -> AsyncIterator[bytes]:
    """An SSE body with each event's JSON passed through ``unwrap`` (events that
    are not JSON pass unchanged, for the stream converter to judge)."""
    parser = SSEParser()

    def out(events: list[SSEEvent]) -> bytes:
        chunks = []
        for ev in events:
            try:
                data = json.loads(ev.data)
            except ValueError:
                chunks.append(encode_event(ev.data, ev.event))
                continue
            chunks.append(encode_event(unwrap(data), ev.event))
        return b"".join(chunks)

    async for chunk in response.aiter_bytes():
        data = out(parser.feed(chunk))
        if data:
            yield data
    rest = out(parser.close())
    if rest:
        yield rest
