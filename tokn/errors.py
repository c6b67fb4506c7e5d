"""tokn's one domain error, and the error bodies of the OpenAI, Anthropic and Google APIs
(which endpoint answers in which: :mod:`tokn.wire`)."""

from __future__ import annotations

from typing import Any


class ToknError(Exception):
    """A failure with a message fit for a user (what happened, what to do).

    ``status`` is the HTTP status the listener answers with; ``code`` a short
    machine-readable reason; ``account`` the account at fault, when one is.
    """

    def __init__(self, message: str, *, status: int = 500, code: str = "tokn_error",
                 retry_after: float | None = None, account: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.account = account


class ConversionError(ToknError):
    """A request body the converters cannot read (wrong shape, or something the
    chosen upstream cannot express): the client's mistake, answered with 400.

    Only this is a client error; anything else a converter raises is a bug in
    tokn and surfaces as a logged 500.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400, code="invalid_request_body")


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def openai_error(status: int, message: str, code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    """``{"error": {...}}`` as the OpenAI API returns it."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {...}}`` as the Anthropic API returns it."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# google.rpc.Code names of HTTP statuses (googleapis/googleapis rpc/code.proto)
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GOOGLE_RPC = "type.googleapis.com/google.rpc."


def google_error(status: int, message: str, code: str | None = None, *,
                 retry_after: float | None = None, domain: str = "googleapis.com",
                 ) -> dict[str, Any]:
    """``{"error": {"code", "message", "status", "details"?}}`` as Google APIs return
    it; ``code`` becomes an ``ErrorInfo.reason``, ``retry_after`` a ``RetryInfo``."""
    name = GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    details = []
    if code:
        details.append({"@type": GOOGLE_RPC + "ErrorInfo", "reason": code, "domain": domain})
    if retry_after is not None:
        details.append({"@type": GOOGLE_RPC + "RetryInfo",
                        "retryDelay": google_duration(retry_after)})
    if details:
        error["details"] = details
    return {"error": error}


def google_duration(seconds: float) -> str:
    """A Google duration string: ``2.5`` -> ``"2.5s"``, ``60`` -> ``"60s"`` (ns precision)."""
    return f"{max(seconds, 0):.9f}".rstrip("0").rstrip(".") + "s"
