"""The wire formats tokn speaks with clients: one record per endpoint (pure data).

Every place that asks "which endpoint is this", "where does it live" or "how
does this caller want its errors" reads this table: the listener's routes, the
proxy's route mode (which endpoint a path on any host names, and where on the
listener it goes), a provider's default upstream paths, the error bodies both
front doors answer with, and the event a converter ends a broken stream with.

* :class:`Api` -- a client API family: its error body, its model listing, the
  request headers only its clients send (``markers``), and words that make a
  host its own (``host_words``).
* :class:`Endpoint` -- one endpoint: tokn's name for it (``fmt``, the
  pipeline's format), method, :class:`Api`, its path under an API base URL
  (``path``: the default upstream path, and the suffix route mode matches on
  any host), the listener's paths (``routes``; the first is where route mode
  hands a flow), and the event that ends a stream with an error.

Paths may hold parameters, ``{name}``, each one path segment (or a part of one:
``/models/{model}:generateContent``); the same syntax is Starlette's, so a
route is registered as written and its parameters reach the pipeline.

Adding a client format is one :class:`Endpoint` per endpoint (and an
:class:`Api` when its errors look different).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tokn.errors import anthropic_error, google_error, openai_error

Event = tuple[str | None, dict[str, Any]]  # an SSE event: (event name, data)
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Api:
    """A client API family."""

    name: str
    error: Callable[[int, str, str | None], dict[str, Any]]  # (status, message, code) -> body
    listing: Callable[[list[dict[str, Any]]], dict[str, Any]]  # tokn's model entries -> body
    markers: tuple[str, ...] = ()  # request headers only this API's clients send
    host_words: tuple[str, ...] = ()  # a host whose name holds one speaks this API


@dataclass(frozen=True)
class Endpoint:
    fmt: str
    method: str
    api: Api
    path: str
    routes: tuple[str, ...]
    stream_error: Callable[[str], Event] | None = None
    shared: bool = False  # other APIs serve the same path: a marker header picks the API
    websocket: bool = False  # also served over a WebSocket at the same paths (GET + Upgrade)
    # the request facts this API keeps in the path, not the body (Gemini's model and
    # stream switch): (body, path parameters) -> the body the pipeline reads
    from_path: Callable[[dict[str, Any], Mapping[str, str]], dict[str, Any]] | None = None

    def body_of(self, body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
        """The request body with what the path says (:attr:`from_path`) put in."""
        return self.from_path(body, params) if self.from_path is not None else body

    @cached_property
    def _suffix(self) -> re.Pattern[str]:
        return re.compile(_template(self.path) + r"/*$")

    def names(self, path: str) -> dict[str, str] | None:
        """The path parameters when ``path`` (on any host, under any prefix)
        names this endpoint, else ``None``; the method is not looked at."""
        found = self._suffix.search(path.split("?", 1)[0])
        return found.groupdict() if found else None

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """:meth:`names` for a request with ``method``."""
        return self.names(path) if method.upper() == self.method else None

    def listener_path(self, params: Mapping[str, str] | None = None) -> str:
        """Where on the listener this endpoint lives (``params`` filled in)."""
        return _PARAM.sub(lambda m: (params or {})[m.group(1)], self.routes[0])


def _template(path: str) -> str:
    out, last = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[last:m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/?#]+?)")
        last = m.end()
    out.append(re.escape(path[last:]))
    return "".join(out)


# --- APIs ---------------------------------------------------------------------------
def _openai_listing(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": models}


def _anthropic_listing(models: list[dict[str, Any]]) -> dict[str, Any]:
    items = [{"type": "model", "id": m["id"],
              "display_name": m["x_tokn"]["display_name"] or m["id"],
              "created_at": "1970-01-01T00:00:00Z"} for m in models]
    return {"data": items, "has_more": False,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None}


def _anthropic_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return anthropic_error(status, message)  # Anthropic's errors carry no code


def _google_listing(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Google's ``models.list`` answer (``name`` is ``models/{id}``)."""
    out = []
    for m in models:
        entry: dict[str, Any] = {"name": f"models/{m['id']}", "version": "001",
                                 "displayName": m["x_tokn"]["display_name"] or m["id"]}
        if m["x_tokn"].get("context_window"):
            entry["inputTokenLimit"] = m["x_tokn"]["context_window"]
        entry["supportedGenerationMethods"] = ["generateContent", "countTokens"]
        out.append(entry)
    return {"models": out}


def _google_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return google_error(status, message, code.upper() if code else None)


OPENAI = Api("openai", error=openai_error, listing=_openai_listing)
ANTHROPIC = Api("anthropic", error=_anthropic_error, listing=_anthropic_listing,
                markers=("anthropic-version",), host_words=("anthropic",))
# google-genai and the Gemini CLI send x-goog-api-client; a key as x-goog-api-key
GEMINI = Api("gemini", error=_google_error, listing=_google_listing,
             markers=("x-goog-api-key", "x-goog-api-client"), host_words=("googleapis",))
APIS: tuple[Api, ...] = (OPENAI, ANTHROPIC, GEMINI)


# --- the events that end a stream with an error, per format ---------------------------
def _chat_stream_error(message: str) -> Event:
    return None, {"error": {"message": message, "type": "api_error", "param": None, "code": None}}


def _messages_stream_error(message: str) -> Event:
    return "error", {"type": "error", "error": {"type": "api_error", "message": message}}


def _responses_stream_error(message: str) -> Event:
    # a Responses stream numbers its events and ends with response.failed: the
    # converter adds both (tokn.convert.responses.stream)
    return "error", {"type": "error", "code": "server_error", "message": message, "param": None}


def _gemini_stream_error(message: str) -> Event:
    return None, google_error(500, message)


def _gemini_generate(body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    return {**body, "model": params["model"], "stream": False}


def _gemini_stream(body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    return {**body, "model": params["model"], "stream": True}


def _gemini_count(body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    return {**body, "model": params["model"]}


# --- endpoints, most specific path first (count_tokens before messages) -----------------
CHAT = Endpoint("chat", "POST", OPENAI, "/chat/completions",
                ("/v1/chat/completions", "/chat/completions"), _chat_stream_error)
COUNT_TOKENS = Endpoint("count_tokens", "POST", ANTHROPIC, "/messages/count_tokens",
                        ("/v1/messages/count_tokens",))
MESSAGES = Endpoint("messages", "POST", ANTHROPIC, "/messages", ("/v1/messages",),
                    _messages_stream_error)
RESPONSES = Endpoint("responses", "POST", OPENAI, "/responses", ("/v1/responses", "/responses"),
                     _responses_stream_error, websocket=True)
EMBEDDINGS = Endpoint("embeddings", "POST", OPENAI, "/embeddings",
                      ("/v1/embeddings", "/embeddings"))
MODELS = Endpoint("models", "GET", OPENAI, "/models", ("/v1/models", "/models"), shared=True)

# Gemini: generateContent and streamGenerateContent are one format ("gemini"; the
# path says whether it streams), under /v1beta/ and /v1/ (google-genai uses both)
_GEMINI_ROOTS = ("/v1beta", "/v1")
GEMINI_GENERATE = Endpoint(
    "gemini", "POST", GEMINI, "/models/{model}:generateContent",
    tuple(f"{r}/models/{{model}}:generateContent" for r in _GEMINI_ROOTS),
    _gemini_stream_error, from_path=_gemini_generate)
GEMINI_STREAM = Endpoint(
    "gemini", "POST", GEMINI, "/models/{model}:streamGenerateContent",
    tuple(f"{r}/models/{{model}}:streamGenerateContent" for r in _GEMINI_ROOTS),
    _gemini_stream_error, from_path=_gemini_stream)
GEMINI_COUNT_TOKENS = Endpoint(
    "gemini_count_tokens", "POST", GEMINI, "/models/{model}:countTokens",
    tuple(f"{r}/models/{{model}}:countTokens" for r in _GEMINI_ROOTS), from_path=_gemini_count)
GEMINI_MODELS = Endpoint("gemini_models", "GET", GEMINI, "/v1beta/models", ("/v1beta/models",))
GEMINI_MODEL = Endpoint("gemini_model", "GET", GEMINI, "/v1beta/models/{model}",
                        ("/v1beta/models/{model}",))  # models.get: one model

ENDPOINTS: tuple[Endpoint, ...] = (CHAT, COUNT_TOKENS, MESSAGES, RESPONSES, EMBEDDINGS,
                                   GEMINI_GENERATE, GEMINI_STREAM, GEMINI_COUNT_TOKENS,
                                   GEMINI_MODELS, GEMINI_MODEL, MODELS)
_BY_FMT = {e.fmt: e for e in reversed(ENDPOINTS)}  # the first endpoint of a format wins


def endpoint(fmt: str) -> Endpoint:
    """The endpoint tokn calls ``fmt`` (``KeyError`` for a name it has none of)."""
    return _BY_FMT[fmt]


def match(method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint ``method path`` names on any host, and its path parameters."""
    for ep in ENDPOINTS:
        params = ep.match(method, path)
        if params is not None:
            return ep, params
    return None


def match_websocket(path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint a WebSocket upgrade (``GET`` + ``Upgrade: websocket``) to
    ``path`` names on any host, and its path parameters."""
    for ep in ENDPOINTS:
        params = ep.names(path) if ep.websocket else None
        if params is not None:
            return ep, params
    return None


def is_websocket_upgrade(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request head asks to become a WebSocket (RFC 6455 §4.1)."""
    return method.upper() == "GET" and "websocket" in headers.get("upgrade", "").lower() \
        and "upgrade" in headers.get("connection", "").lower()


def upstream_paths() -> dict[str, str]:
    """Each endpoint's path under an API base URL (a provider's default paths)."""
    return {e.fmt: e.path for e in reversed(ENDPOINTS)}


def stream_error(fmt: str, message: str) -> Event:
    """The event that ends a ``fmt`` stream with an error."""
    make = endpoint(fmt).stream_error
    if make is None:
        raise KeyError(f"{fmt} has no streams")
    return make(message)


def caller_api(path: str, *, host: str = "", headers: Mapping[str, str] | None = None) -> Api:
    """The API a caller speaks, to answer it in its own error format (the one rule).

    The endpoint's API: the endpoint its path names, on any host and whatever
    the method; else, when the host names an API, that one; else the endpoint
    of the longest listener path the path lies under; else OpenAI's.  For an
    endpoint several APIs share, the API whose marker header the caller sent
    wins, then the host's.
    """
    path = path.split("?", 1)[0].rstrip("/") or "/"
    by_host = next((api for api in APIS if any(w in host.lower() for w in api.host_words)), None)
    found = next((ep for ep in ENDPOINTS if ep.names(path) is not None), None)
    if found is None:
        if by_host is not None:
            return by_host
        under = [(len(route), ep) for ep in ENDPOINTS for route in ep.routes
                 if _PARAM.search(route) is None and path.startswith(route + "/")]
        if not under:
            return OPENAI
        found = max(under, key=lambda x: x[0])[1]
    if found.shared:
        return _marked(headers or {}) or by_host or found.api
    return found.api


def _marked(headers: Mapping[str, str]) -> Api | None:
    return next((api for api in APIS if any(m in headers for m in api.markers)), None)
