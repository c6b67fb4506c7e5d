"""What Kiro's errors mean: the exceptions its event stream reports, the class
of an HTTP error (refresh, quota, suspension, context...), and the chat-format
error answers tokn makes of them for the pool and the client."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import httpx

from tokn.errors import ToknError, openai_error
from tokn.providers.base import UpstreamResponse

_ERROR_STATUS = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
}


class KiroError(ToknError):
    """An exception Kiro reported inside the event stream."""

    def __init__(self, kind: str, message: str) -> None:
        status = _ERROR_STATUS.get(kind, 502)
        super().__init__(
            f"Kiro error {kind}: {message}" if message else f"Kiro error {kind}",
            status=status,
            code=f"kiro_{kind}",
        )
        self.kind = kind
        self.upstream_message = message


def short_kind(kind: str) -> str:
    """``com.amazon...#ThrottlingException`` -> ``ThrottlingException``."""
    return re.split(r"[#:]", kind)[-1] if kind else kind


def classify_error(status: int, body: str) -> str:
    """What an HTTP error from Kiro means for the account.

    Returns ``refresh`` (token rejected: refresh and retry), ``suspended``
    (account suspended), ``quota`` (credits exhausted until the monthly
    reset), ``context`` (conversation too long), ``bad_request`` (our body
    was rejected; retrying elsewhere will not help), ``rate_limit``,
    ``server`` or ``other``.
    """
    text = body or ""
    low = text.lower()
    if "CONTENT_LENGTH_EXCEEDS_THRESHOLD" in text or "contentlengthexceeded" in low:
        return "context"
    if status == 402 or "MONTHLY_REQUEST_COUNT" in text:
        return "quota"
    if status == 429:
        return "rate_limit"
    if status == 403:
        if "temporarily is suspended" in low or "suspended" in low:
            return "suspended"
        if any(
            w in low
            for w in (
                "quota",
                "usage limit",
                "limit exceeded",
                "reached the limit",
                "insufficient credits",
            )
        ):
            return "quota"
        if any(
            w in low
            for w in ("token", "expired", "invalid bearer", "unauthorized", "not authorized")
        ):
            return "refresh"
        return "other"
    if status == 401:
        return "refresh"
    if status in (400, 422):
        return "bad_request"
    if 500 <= status <= 599:
        return "server"
    return "other"


def upstream_text(raw: bytes) -> str:
    """The message of an error body Kiro sent (JSON or text), at most 500 characters."""
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


def error_reply(status: int, message: str, code: str,
                headers: Mapping[str, str] | None = None) -> UpstreamResponse:
    """A chat-format error answer tokn makes up for what Kiro said."""
    h = httpx.Headers({k: v for k, v in (headers or {}).items()
                       if k.lower() in ("retry-after", "x-amzn-requestid")})
    h["content-type"] = "application/json"
    return UpstreamResponse(status, h, "chat", False,
                            _body=json.dumps(openai_error(status, message, code)).encode())


def http_error(status: int, raw: bytes,
               headers: Mapping[str, str]) -> UpstreamResponse:
    """Kiro's HTTP error answer as the error the pool and the client act on."""
    text = raw.decode("utf-8", "replace")
    message = f"Kiro answered HTTP {status}: {upstream_text(raw)}"
    kind = classify_error(status, text)
    if kind == "quota":
        return error_reply(402, message, "kiro_quota_exhausted", headers)
    if kind == "suspended":
        return error_reply(403, message, "kiro_account_suspended", headers)
    if kind == "context":
        return error_reply(400, message, "context_length_exceeded", headers)
    if kind == "refresh":
        return error_reply(401, message, "kiro_token_rejected", headers)
    if kind == "bad_request":
        code = "model_not_found" if "INVALID_MODEL_ID" in text else "kiro_bad_request"
        return error_reply(400, message, code, headers)
    if kind == "rate_limit":
        return error_reply(429, message, "rate_limit_exceeded", headers)
    return error_reply(status, message, f"kiro_http_{status}", headers)


def stream_error(exc: KiroError) -> UpstreamResponse:
    """An exception Kiro reported up front in its event stream, as an error answer."""
    message = str(exc)
    kind = classify_error(exc.status, f"{exc.kind} {exc.upstream_message}")
    if kind == "quota" or "MONTHLY_REQUEST_COUNT" in message:
        return error_reply(402, message, "kiro_quota_exhausted")
    if kind == "suspended":
        return error_reply(403, message, "kiro_account_suspended")
    if kind == "context":
        return error_reply(400, message, "context_length_exceeded")
    code = "rate_limit_exceeded" if exc.status == 429 else exc.code
    return error_reply(exc.status, message, code)


def error_code(body: bytes) -> str:
    """The ``error.code`` of an error answer (:func:`error_reply`'s), or ``""``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    return str(err.get("code") or "") if isinstance(err, dict) else ""
