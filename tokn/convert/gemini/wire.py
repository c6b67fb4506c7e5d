"""Gemini wire shapes around the converters: URLs, the Code Assist envelope,
``countTokens``, ``models.list`` and error bodies (pure).

Sources: Gemini API reference (https://ai.google.dev/api), ``google.genai``
2.x (``models.py``: paths, ``_ListModelsResponse_from_mldev``), the Gemini CLI
0.61 bundle (``code_assist/server.ts``, ``converter.ts``,
``utils/googleQuotaErrors.ts``) and quota errors users posted in
google-gemini/gemini-cli#29425.

* Public API: ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent?alt=sse`` (each ``data:`` a whole
  ``GenerateContentResponse``; without ``alt=sse`` a JSON array),
  ``:countTokens``, ``GET /v1beta/models``.
* Code Assist (the Gemini CLI's Google-login path):
  ``POST https://cloudcode-pa.googleapis.com/v1internal:{method}`` with
  ``{"model", "project", "user_prompt_id", "request": {...}}``; answers
  ``{"response": {...}, "traceId"}`` (each stream event too). ``countTokens``
  takes ``{"request": {"model": "models/{m}", "contents"}}`` and answers
  ``{"totalTokens"}``.
* Errors: ``{"error": {"code", "message", "status", "details"?}}`` with the
  google.rpc status name; quota errors carry ``RetryInfo.retryDelay``
  (``"41s"``) and, from Code Assist, ``ErrorInfo`` (``reason`` QUOTA_EXHAUSTED
  or RATE_LIMIT_EXCEEDED, ``metadata.quotaResetDelay`` like ``"2h13m4.5s"``).
"""

from __future__ import annotations

import re
from typing import Any

from tokn.errors import GOOGLE_RPC
from tokn.errors import google_duration as format_duration
from tokn.errors import google_error as error_body

from .base import Body, field, model_id, split_target
from .response import unwrap_envelope

__all__ = [
    "api_path",
    "code_assist_path",
    "count_tokens_body",
    "count_tokens_request",
    "count_tokens_response",
    "error_body",
    "error_reason",
    "format_duration",
    "model_entry",
    "model_ids",
    "models_list",
    "parse_duration",
    "parse_path",
    "retry_delay",
    "unwrap_code_assist_request",
    "unwrap_code_assist_response",
    "wrap_code_assist_request",
    "wrap_code_assist_response",
]

RPC = GOOGLE_RPC
DEFAULT_METHODS = ("generateContent", "countTokens")


# --- URLs ---------------------------------------------------------------------


def api_path(model: str, method: str = "generateContent", version: str = "v1beta") -> str:
    """``/v1beta/models/{model}:{method}`` (``?alt=sse`` for streamGenerateContent)."""
    path = f"/{version}/models/{model_id(model)}:{method}"
    return path + "?alt=sse" if method == "streamGenerateContent" else path


def code_assist_path(method: str, version: str = "v1internal") -> str:
    """``/v1internal:{method}`` (``?alt=sse`` for streamGenerateContent)."""
    path = f"/{version}:{method}"
    return path + "?alt=sse" if method == "streamGenerateContent" else path


_API_PATH = re.compile(r"^/(v1beta|v1alpha|v1)/models/([^/:]+):(\w+)$")
_CA_PATH = re.compile(r"^/(v1internal):(\w+)$")


def parse_path(path: str) -> tuple[str | None, str] | None:
    """``(model or None, method)`` of a Gemini or Code Assist path (query ignored), else None."""
    path = path.split("?", 1)[0]
    m = _API_PATH.match(path)
    if m:
        return m.group(2), m.group(3)
    m = _CA_PATH.match(path)
    return (None, m.group(2)) if m else None


# --- Code Assist envelope ---------------------------------------------------------


def wrap_code_assist_request(body: Body, *, project: str | None,
                             user_prompt_id: str | None = None) -> Body:
    """A Gemini body (with ``model``) in the envelope the Gemini CLI sends to Code Assist."""
    model, _, request = split_target(body)
    out: Body = {"model": model, "project": project}
    if user_prompt_id:
        out["user_prompt_id"] = user_prompt_id
    out["request"] = request
    return out


def unwrap_code_assist_request(envelope: Body) -> Body:
    """The Gemini body inside a Code Assist request, with the envelope's ``model``."""
    request = dict(envelope.get("request") or {})
    request.pop("session_id", None)
    request["model"] = model_id(envelope.get("model"))
    return request


def wrap_code_assist_response(body: Body, trace_id: str | None = None) -> Body:
    """A Gemini response (or stream chunk) as Code Assist sends it."""
    out: Body = {"response": body}
    trace = trace_id or field(body, "responseId")
    if trace:
        out["traceId"] = trace
    return out


def unwrap_code_assist_response(envelope: Body) -> Body:
    """The ``GenerateContentResponse`` in a Code Assist answer (``traceId`` -> ``responseId``)."""
    return unwrap_envelope(envelope)


# --- countTokens ------------------------------------------------------------------


def count_tokens_request(body: Body) -> Body:
    """Any ``countTokens`` body -- public (``contents`` or ``generateContentRequest``) or
    Code Assist (``request``) -- as a Gemini generate body with ``model`` when known."""
    inner = field(body, "generateContentRequest") or body.get("request")
    if isinstance(inner, dict):
        out = dict(inner)
        if out.get("model"):
            out["model"] = model_id(out["model"])
        return out
    return {k: v for k, v in body.items() if k in ("contents", "model")}


def count_tokens_body(body: Body, *, code_assist: bool = False) -> Body:
    """The ``countTokens`` request for a Gemini generate body (with ``model``).

    Public API: ``{"contents"}``, or ``{"generateContentRequest"}`` when there
    are tools or a system prompt. Code Assist: ``{"request": {"model":
    "models/{m}", "contents"}}``, as the Gemini CLI sends it.
    """
    model, _, request = split_target(body)
    if code_assist:
        return {"request": {"model": f"models/{model}", "contents": request.get("contents") or []}}
    if set(request) <= {"contents"}:
        return {"contents": request.get("contents") or []}
    return {"generateContentRequest": {"model": f"models/{model}", **request}}


def count_tokens_response(total: int, *, code_assist: bool = False) -> Body:
    """A ``countTokens`` answer (Code Assist's has ``totalTokens`` only)."""
    if code_assist:
        return {"totalTokens": total}
    details = [{"modality": "TEXT", "tokenCount": total}]
    return {"totalTokens": total, "promptTokensDetails": details}


# --- models.list --------------------------------------------------------------------


def model_entry(model: str, *, display_name: str | None = None, input_limit: int | None = None,
                output_limit: int | None = None, methods: tuple[str, ...] = DEFAULT_METHODS,
                ) -> dict[str, Any]:
    """One ``models.list`` entry (``name`` is ``models/{id}``)."""
    entry: dict[str, Any] = {"name": f"models/{model_id(model)}", "version": "001",
                             "displayName": display_name or model_id(model)}
    if input_limit:
        entry["inputTokenLimit"] = input_limit
    if output_limit:
        entry["outputTokenLimit"] = output_limit
    entry["supportedGenerationMethods"] = list(methods)
    return entry


def models_list(models: list[str | dict[str, Any]]) -> Body:
    """``{"models": [...]}``; plain ids become :func:`model_entry` entries."""
    return {"models": [m if isinstance(m, dict) else model_entry(m) for m in models]}


def model_ids(body: Body) -> list[str]:
    """The model ids of a ``models.list`` answer, without ``models/``."""
    return [model_id(m.get("name")) for m in body.get("models") or []
            if isinstance(m, dict) and m.get("name")]


# --- errors -------------------------------------------------------------------------


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """Seconds of a Google duration: ``"41s"``, ``"0.5s"``, ``"500ms"``, ``"2h13m4.5s"``."""
    text = (text or "").strip()
    pieces = _DURATION.findall(text)
    if not pieces or "".join(n + u for n, u in pieces) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in pieces)


def _details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details or [] if isinstance(d, dict)]


def error_reason(body: Any) -> str | None:
    """``ErrorInfo.reason`` of an error body (``QUOTA_EXHAUSTED``, ``API_KEY_INVALID`` ...)."""
    for d in _details(body):
        if d.get("@type") == RPC + "ErrorInfo" and d.get("reason"):
            return str(d["reason"])
    return None


_RETRY_TEXT = re.compile(r"(?:retry in|[Rr]esets in) ([0-9hms.]+)")


def retry_delay(body: Any) -> float | None:
    """Seconds until a quota / rate-limit error clears, as the error says it.

    Looks, in order, at ``RetryInfo.retryDelay``, ``ErrorInfo.metadata.
    quotaResetDelay`` and "Please retry in 41.5s" / "Resets in 9h22m20s" in
    the message (the order the Gemini CLI trusts them).
    """
    for d in _details(body):
        if d.get("@type") == RPC + "RetryInfo":
            seconds = parse_duration(str(d.get("retryDelay") or ""))
            if seconds is not None:
                return seconds
    for d in _details(body):
        reset = (d.get("metadata") or {}).get("quotaResetDelay")
        if reset and parse_duration(str(reset)) is not None:
            return parse_duration(str(reset))
    error = body.get("error") if isinstance(body, dict) else None
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    m = _RETRY_TEXT.search(message)
    return parse_duration(m.group(1).rstrip(".")) if m else None
