"""Fake LLM upstream: OpenAI chat/responses/embeddings, Anthropic messages, Copilot quirks.

Deterministic behaviour (the same for every API it serves):

* reply text is ``"echo: <text of the last user turn>"``;
* if the request has tools and the last user turn contains ``tool_trigger``
  (default "weather", case-insensitive) the answer is one call of the first
  tool with ``tool_arguments`` (JSON, streamed in 3 fragments);
* if the last turn is a tool result the reply is ``"tool said: <result>"``;
* usage: input = (characters of all message/system/instruction text) // 4 + 1,
  output = len(reply text or tool arguments) // 4 + 1, plus the configurable
  ``cached_tokens`` / ``reasoning_tokens`` / ``cache_creation_tokens``.

Streams put each event on the wire as its own chunk (``chunk_delay`` s between
content deltas), so tests can assert on arrival times.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .base import CapturedRequest, Exchange, FakeServer

__all__ = ["THINKING_SIGNATURE", "FakeLLM", "split_words"]

# Fixed opaque signature on thinking blocks, so tests can check it survives untouched.
THINKING_SIGNATURE = base64.b64encode(
    b"tokn-fake-thinking-signature\x00" + hashlib.sha256(b"tokn").digest() * 2
).decode()

ALL_FORMATS = frozenset({"chat", "responses", "messages", "embeddings"})

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_denied", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "not_found", "Not found."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


def split_words(text: str) -> list[str]:
    """``"echo: a b"`` -> ``["echo:", " a", " b"]`` (joins back to ``text``)."""
    parts = re.findall(r"\s*\S+", text)
    tail = text[len("".join(parts)) :]
    if tail:
        parts.append(tail)
    return parts or ([text] if text else [])


def _thirds(s: str) -> list[str]:
    if len(s) < 3:
        return [s]
    a, b = len(s) // 3, 2 * len(s) // 3
    return [s[:a], s[a:b], s[b:]]


def _new_id(prefix: str, n: int = 24) -> str:
    return prefix + secrets.token_hex(n)[:n]


class FakeLLM(FakeServer):
    """Configurable OpenAI / Copilot / Anthropic / Z.ai style upstream.

    Constructor args:
        formats: APIs served, subset of {"chat","responses","messages","embeddings"}
            (default all).
        path_prefix: "" (Copilot: /chat/completions), "/v1" (OpenAI, Anthropic),
            "/api/paas/v4" (Z.ai), anything.  Messages are also served at
            /v1/messages (+ /v1/messages/count_tokens) whatever the prefix, as
            Copilot does.
        models: ids or dicts for ``GET {prefix}/models``; dict entries are sent
            as given.
        models_style: "openai" | "copilot" | "anthropic"; default copilot if
            copilot_style, anthropic if formats == {"messages"}, else openai.
        copilot_style: Copilot-shaped /models entries (capabilities,
            supported_endpoints) and Copilot error bodies.
        copilot_quirks: chat streams always end with a usage chunk with empty
            choices; tool calls go in choice index 1 with tool-call index 1.
        auth: accepted credentials (Bearer token or x-api-key); None = any.
        token_validator: ``fn(token, req) -> bool`` instead of ``auth``.
        responses_only_models: ids whose chat completions fail with HTTP 400
            ``unsupported_api_for_model`` (default {"gpt-5-codex"} when
            copilot_style else empty).
        chunk_delay: seconds between streamed content deltas.
        tool_trigger: word in the last user text that triggers a tool call.
        tool_name: the tool called then (default: the request's first tool); a
            request without a tool of that name gets a text answer.
        tool_arguments: dict sent as the tool call's arguments.
        tool_preamble: text sent before a tool call (choice 0 under quirks).
        cached_tokens / reasoning_tokens / cache_creation_tokens: usage extras (chat
            answers report cache writes as OpenRouter does,
            ``prompt_tokens_details.cache_write_tokens``).
        redacted_thinking: with thinking on, a ``redacted_thinking`` block with this
            ``data`` follows the thinking block (as Claude sends when its
            reasoning was flagged).
        cache_needs_marker: cache reads / writes happen only for a request that
            carries a breakpoint (``cache_control`` on a part, block or tool, or
            Copilot's ``copilot_cache_control``), as with Claude models.
        embedding_dim: length of embedding vectors (default 8).
        strict_models: unknown model ids -> 404 (OpenAI/Anthropic) / 400
            model_not_supported (Copilot).
        enforce_copilot_headers: Copilot-style 400s for a missing
            editor-version header, or an image without copilot-vision-request.
        ssl_context, host, port: see FakeServer.

    Run-time switches: ``mode`` ("slow", "drop_mid_stream"), ``slow_delay``,
    ``drop_after`` (events sent before the drop, default 3), ``fail_next()``.

    Observations: ``requests`` (each with ``meta``: api, model, stream,
    had_image, tool_call, usage), ``request_count``, ``reported_usage``,
    ``usage_log``, ``image_request_count``.
    """

    def __init__(
        self,
        *,
        formats: Iterable[str] = ALL_FORMATS,
        path_prefix: str = "",
        models: list[str | dict[str, Any]] | None = None,
        models_style: str | None = None,
        copilot_style: bool = False,
        copilot_quirks: bool = False,
        auth: Iterable[str] | None = None,
        token_validator: Callable[[str | None, CapturedRequest], bool] | None = None,
        responses_only_models: Iterable[str] | None = None,
        chunk_delay: float = 0.0,
        tool_trigger: str = "weather",
        tool_name: str | None = None,
        tool_arguments: dict[str, Any] | None = None,
        tool_preamble: str | None = None,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cache_needs_marker: bool = False,
        redacted_thinking: str | None = None,
        embedding_dim: int = 8,
        strict_models: bool = False,
        enforce_copilot_headers: bool = False,
        drop_after: int = 3,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.formats = frozenset(formats)
        unknown = self.formats - ALL_FORMATS
        if unknown:
            raise ValueError(f"unknown formats: {sorted(unknown)}")
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.copilot_style = copilot_style
        self.copilot_quirks = copilot_quirks
        self.auth = set(auth) if auth is not None else None
        self.token_validator = token_validator
        if responses_only_models is None:
            responses_only_models = {"gpt-5-codex"} if copilot_style else set()
        self.responses_only_models = set(responses_only_models)
        if models_style is None:
            if copilot_style:
                models_style = "copilot"
            elif self.formats == {"messages"}:
                models_style = "anthropic"
            else:
                models_style = "openai"
        self.models_style = models_style
        if models is None:
            if models_style == "anthropic":
                models = ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]
            elif copilot_style:
                models = [
                    "gpt-4o",
                    "gpt-4.1",
                    "claude-sonnet-4",
                    "gpt-5-codex",
                    "text-embedding-3-small",
                ]
            else:
                models = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        self.models: list[str | dict[str, Any]] = list(models)
        self.chunk_delay = chunk_delay
        self.tool_trigger = tool_trigger
        self.tool_name = tool_name
        self.tool_arguments = tool_arguments or {"location": "Paris", "unit": "celsius"}
        self.tool_preamble = tool_preamble
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens
        self.cache_creation_tokens = cache_creation_tokens
        self.cache_needs_marker = cache_needs_marker
        self.redacted_thinking = redacted_thinking
        self.embedding_dim = embedding_dim
        self.strict_models = strict_models
        self.enforce_copilot_headers = enforce_copilot_headers
        self.drop_after = drop_after
        self._usage_lock = threading.Lock()
        self._zero_usage()

    def _zero_usage(self) -> None:
        self.reported_usage: dict[str, int] = {
            "input_tokens": 0,  # OpenAI prompt/input tokens (incl. cached); Anthropic input_tokens
            "output_tokens": 0,
            "cached_tokens": 0,  # OpenAI cached_tokens; Anthropic cache_read_input_tokens
            "cache_creation_tokens": 0,  # Anthropic cache_creation_input_tokens
            "reasoning_tokens": 0,
            "total_tokens": 0,  # input + output (as OpenAI counts it)
            "count": 0,  # responses whose usage reached the client
        }
        self.usage_log: list[dict[str, Any]] = []  # {"api", "model", "usage": as sent}
        self.image_request_count = 0

    def reset(self) -> None:
        super().reset()
        with self._usage_lock:
            self._zero_usage()

    def model_ids(self) -> list[str]:
        return [m if isinstance(m, str) else str(m.get("id")) for m in self.models]

    # ==================================================================
    # routing
    # ==================================================================
    def route(self, ex: Exchange) -> bool:
        req = ex.req
        path = req.path.rstrip("/") or "/"
        p = self.path_prefix
        method = req.method
        api: str | None = None
        if method == "GET" and (
            path == f"{p}/models" or (path == "/v1/models" and self.models_style == "anthropic")
        ):
            api = "models"
        elif method == "POST":
            table = {
                f"{p}/chat/completions": "chat",
                f"{p}/responses": "responses",
                f"{p}/embeddings": "embeddings",
                f"{p}/messages": "messages",
                "/v1/messages": "messages",
                f"{p}/messages/count_tokens": "count_tokens",
                "/v1/messages/count_tokens": "count_tokens",
            }
            api = table.get(path)
            fmt = "messages" if api == "count_tokens" else api
            if fmt is not None and fmt not in self.formats:
                api = None
        if api is None:
            return False
        req.meta["api"] = api
        if not self._authorized(req):
            self._error(ex, 401, None)
            return True
        if api == "models":
            self._models(ex)
            return True
        body = req.json
        if not isinstance(body, dict):
            self._error(ex, 400, "request body must be a JSON object")
            return True
        model = str(body.get("model") or "")
        req.meta["model"] = model
        req.meta["stream"] = bool(body.get("stream"))
        had_image = self._has_image(body.get("messages") or body.get("input") or [])
        req.meta["had_image"] = had_image
        if had_image:
            with self._usage_lock:
                self.image_request_count += 1
        if self.strict_models and model not in self.model_ids():
            self._model_not_found(ex, model)
            return True
        handler = {
            "chat": self._chat,
            "responses": self._responses,
            "embeddings": self._embeddings,
            "messages": self._messages,
            "count_tokens": self._count_tokens,
        }[api]
        handler(ex, body)
        return True

    def _authorized(self, req: CapturedRequest) -> bool:
        token = req.bearer()
        if self.token_validator is not None:
            return bool(self.token_validator(token, req))
        if self.auth is None:
            return True
        return token in self.auth

    def _is_anthropic(self, req: CapturedRequest) -> bool:
        api = req.meta.get("api")
        if api in ("messages", "count_tokens"):
            return True
        return api == "models" and self.models_style == "anthropic"

    # ==================================================================
    # errors
    # ==================================================================
    def error_payload(
        self, status: int, message: str | None, req: CapturedRequest
    ) -> tuple[Any, dict[str, str]]:
        path = req.path.rstrip("/")
        anthropic = (
            self._is_anthropic(req)
            or path.endswith("/messages")
            or path.endswith("/messages/count_tokens")
        )
        if anthropic:
            etype, default = _ANTHROPIC_ERRORS.get(
                status,
                ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"),
            )
            rid = _new_id("req_", 24)
            return (
                {
                    "type": "error",
                    "error": {"type": etype, "message": message or default},
                    "request_id": rid,
                },
                {"request-id": rid},
            )
        etype, code, default = _OPENAI_ERRORS.get(
            status,
            ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"),
        )
        rid = _new_id("req_", 32)
        if self.copilot_style:
            ccode = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}.get(status, code)
            return {"error": {"message": message or default, "code": ccode}}, {"x-request-id": rid}
        return (
            {"error": {"message": message or default, "type": etype, "param": None, "code": code}},
            {"x-request-id": rid},
        )

    def _error(self, ex: Exchange, status: int, message: str | None) -> None:
        payload, extra = self.error_payload(status, message, ex.req)
        ex.send_json(status, payload, extra)

    def _model_not_found(self, ex: Exchange, model: str) -> None:
        if self._is_anthropic(ex.req):
            self._error(ex, 404, f"model: {model}")
        elif self.copilot_style:
            ex.send_json(
                400,
                {
                    "error": {
                        "message": "The requested model is not supported.",
                        "code": "model_not_supported",
                        "param": "model",
                        "type": "invalid_request_error",
                    }
                },
            )
        else:
            ex.send_json(
                404,
                {
                    "error": {
                        "message": f"The model `{model}` does not exist"
                        " or you do not have access to it.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "model_not_found",
                    }
                },
            )

    # ==================================================================
    # /models
    # ==================================================================
    def _copilot_model(self, mid: str) -> dict[str, Any]:
        emb = "embedding" in mid
        claude = mid.startswith("claude")
        if mid in self.responses_only_models:
            endpoints = ["/responses"]
        elif claude:
            endpoints = ["/chat/completions", "/v1/messages"]
        elif emb:
            endpoints = ["/embeddings"]
        else:
            endpoints = ["/chat/completions", "/responses"]
        entry: dict[str, Any] = {
            "id": mid,
            "name": mid.replace("-", " ").title(),
            "object": "model",
            "vendor": "Anthropic" if claude else "Azure OpenAI",
            "version": mid,
            "preview": False,
            "model_picker_enabled": not emb,
            "capabilities": {
                "family": mid,
                "object": "model_capabilities",
                "type": "embeddings" if emb else "chat",
                "tokenizer": "o200k_base" if not claude else "o200k_base",
                "limits": {"max_inputs": 512}
                if emb
                else {
                    "max_context_window_tokens": 128000,
                    "max_output_tokens": 16384,
                    "max_prompt_tokens": 128000,
                    "vision": {
                        "max_prompt_image_size": 3145728,
                        "max_prompt_images": 1,
                        "supported_media_types": ["image/jpeg", "image/png", "image/webp"],
                    },
                },
                "supports": {"dimensions": True}
                if emb
                else {
                    "streaming": True,
                    "tool_calls": True,
                    "parallel_tool_calls": True,
                    "vision": True,
                    "structured_outputs": not claude,
                },
            },
        }
        if not emb:
            entry["supported_endpoints"] = endpoints
        return entry

    def _models(self, ex: Exchange) -> None:
        style = self.models_style
        if style == "anthropic":
            data = [
                m
                if isinstance(m, dict)
                else {
                    "type": "model",
                    "id": m,
                    "display_name": m,
                    "created_at": "2025-05-14T00:00:00Z",
                }
                for m in self.models
            ]
            ex.send_json(
                200,
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                },
            )
            return
        if style == "copilot":
            data = [m if isinstance(m, dict) else self._copilot_model(m) for m in self.models]
        else:
            data = [
                m
                if isinstance(m, dict)
                else {
                    "id": m,
                    "object": "model",
                    "created": 1715367049,
                    "owned_by": "system",
                }
                for m in self.models
            ]
        ex.send_json(200, {"object": "list", "data": data})

    # ==================================================================
    # request analysis
    # ==================================================================
    @staticmethod
    def _text_of(content: Any) -> str:
        """All text in a content value (string, list of parts/blocks, nested tool results)."""
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if isinstance(content, dict):
            for key in ("text", "thinking", "output", "content", "input_text"):
                if key in content and isinstance(content[key], (str, list)):
                    return FakeLLM._text_of(content[key])
            return ""
        if isinstance(content, list):
            return "".join(FakeLLM._text_of(p) for p in content)
        return str(content)

    @staticmethod
    def _has_cache_marker(obj: Any) -> bool:
        if isinstance(obj, dict):
            if obj.get("cache_control") or obj.get("copilot_cache_control"):
                return True
            return any(FakeLLM._has_cache_marker(v) for v in obj.values()
                       if isinstance(v, (dict, list)))
        if isinstance(obj, list):
            return any(FakeLLM._has_cache_marker(v) for v in obj)
        return False

    def _caches(self, body: dict[str, Any]) -> bool:
        """Whether this request gets cache reads / writes."""
        return not self.cache_needs_marker or self._has_cache_marker(body)

    @staticmethod
    def _has_image(obj: Any) -> bool:
        if isinstance(obj, dict):
            if obj.get("type") in ("image_url", "input_image", "image"):
                return True
            return any(FakeLLM._has_image(v) for v in obj.values() if isinstance(v, (dict, list)))
        if isinstance(obj, list):
            return any(FakeLLM._has_image(v) for v in obj)
        return False

    def _plan(self, api: str, body: dict[str, Any], req: CapturedRequest) -> dict[str, Any]:
        """Decide the answer: {'kind': 'text'|'tool', 'text', 'tool_name', 'arguments', ...}."""
        prompt_text = ""
        last_kind = "user"  # "user" | "tool"
        last_text = ""
        tools = body.get("tools") or []
        tool_name = None
        if api == "chat":
            msgs = body.get("messages") or []
            prompt_text = "".join(
                self._text_of(m.get("content")) for m in msgs if isinstance(m, dict)
            )
            if msgs and isinstance(msgs[-1], dict):
                last = msgs[-1]
                last_kind = "tool" if last.get("role") == "tool" else "user"
                last_text = self._text_of(last.get("content"))
            if tools and isinstance(tools[0], dict):
                tool_name = (tools[0].get("function") or {}).get("name") or tools[0].get("name")
        elif api == "responses":
            inp = body.get("input")
            prompt_text = self._text_of(body.get("instructions"))
            if isinstance(inp, str):
                prompt_text += inp
                last_text = inp
            elif isinstance(inp, list):
                prompt_text += "".join(self._text_of(i) for i in inp if isinstance(i, dict))
                if inp and isinstance(inp[-1], dict):
                    last = inp[-1]
                    if last.get("type") in ("function_call_output", "custom_tool_call_output"):
                        last_kind = "tool"
                        last_text = self._text_of(last.get("output"))
                    else:
                        last_text = self._text_of(last.get("content"))
                # Codex's "lite" requests carry their tools in an input item
                tools = [*tools, *(t for i in inp if isinstance(i, dict)
                                   and i.get("type") == "additional_tools"
                                   for t in i.get("tools") or [])]
            tools = [u for t in tools if isinstance(t, dict)
                     for u in (t.get("tools") if t.get("type") == "namespace" else [t]) or []]
            if tools and isinstance(tools[0], dict):
                tool_name = tools[0].get("name") or (tools[0].get("function") or {}).get("name")
        elif api in ("messages", "count_tokens"):
            msgs = body.get("messages") or []
            prompt_text = self._text_of(body.get("system")) + "".join(
                self._text_of(m.get("content")) for m in msgs if isinstance(m, dict)
            )
            turns = [m for m in msgs if isinstance(m, dict) and m.get("role") != "system"]
            if turns:  # (Claude Code puts a mid-conversation system message last)
                last = turns[-1]
                content = last.get("content")
                results = [
                    b
                    for b in (content if isinstance(content, list) else [])
                    if isinstance(b, dict) and b.get("type") == "tool_result"
                ]
                if last.get("role") == "user" and results:
                    last_kind = "tool"
                    last_text = "".join(self._text_of(b.get("content")) for b in results)
                else:
                    last_text = self._text_of(content)
            if tools and isinstance(tools[0], dict):
                tool_name = tools[0].get("name")
            sigs = [
                b.get("signature")
                for m in msgs
                if isinstance(m, dict) and isinstance(m.get("content"), list)
                for b in m["content"]
                if isinstance(b, dict) and b.get("type") == "thinking"
            ]
            req.meta["thinking_signatures"] = sigs
            req.meta["redacted_thinking"] = [
                b.get("data")
                for m in msgs
                if isinstance(m, dict) and isinstance(m.get("content"), list)
                for b in m["content"]
                if isinstance(b, dict) and b.get("type") == "redacted_thinking"
            ]
        input_tokens = len(prompt_text) // 4 + 1
        kinds = {t.get("name") or (t.get("function") or {}).get("name"): t.get("type")
                 for t in tools if isinstance(t, dict)}
        if self.tool_name is not None:
            tool_name = self.tool_name if self.tool_name in kinds else None
        custom = kinds.get(tool_name) == "custom"  # a freeform tool: its input is text
        trigger = (self.tool_trigger or "").lower()
        choice = body.get("tool_choice") if api == "messages" else None
        choice = choice if isinstance(choice, dict) else {}
        if choice.get("type") == "tool":  # Anthropic: a forced tool is always called
            tool_name = choice.get("name")
        fmt = (body.get("output_config") or {}).get("format") if api == "messages" else None
        if choice.get("type") in ("tool", "any") and tool_name:
            args = json.dumps(self.tool_arguments)
            plan = {"kind": "tool", "tool_name": tool_name, "arguments": args, "text": "",
                    "output_tokens": len(args) // 4 + 1}
        elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":  # structured output
            text = json.dumps(self.tool_arguments)
            plan = {"kind": "text", "text": text, "output_tokens": len(text) // 4 + 1}
        elif tool_name and last_kind == "user" and trigger and trigger in last_text.lower():
            args = str(self.tool_arguments.get("input", "")) if custom \
                else json.dumps(self.tool_arguments)
            plan = {
                "kind": "tool",
                "custom": custom,
                "tool_name": tool_name,
                "arguments": args,
                "text": self.tool_preamble or "",
                "output_tokens": len(args) // 4 + 1,
            }
        else:
            text = f"tool said: {last_text}" if last_kind == "tool" else f"echo: {last_text}"
            plan = {"kind": "text", "text": text, "output_tokens": len(text) // 4 + 1}
        plan["input_tokens"] = input_tokens
        req.meta["tool_call"] = plan["kind"] == "tool"
        req.meta["reply_text"] = plan["text"]
        return plan

    def _record_usage(
        self,
        api: str,
        req: CapturedRequest,
        sent: dict[str, Any],
        *,
        inp: int,
        out: int,
        cached: int,
        creation: int,
        reasoning: int,
    ) -> None:
        with self._usage_lock:
            u = self.reported_usage
            u["input_tokens"] += inp
            u["output_tokens"] += out
            u["cached_tokens"] += cached
            u["cache_creation_tokens"] += creation
            u["reasoning_tokens"] += reasoning
            u["total_tokens"] += inp + out
            u["count"] += 1
            self.usage_log.append({"api": api, "model": req.meta.get("model"), "usage": sent})
        req.meta["usage"] = sent

    def _sleep(self) -> None:
        if self.chunk_delay > 0:
            time.sleep(self.chunk_delay)

    # ==================================================================
    # streaming helpers
    # ==================================================================
    def _stream(
        self,
        ex: Exchange,
        events: Iterable[tuple[str | None, Any] | None],
        headers: dict[str, str] | None = None,
    ) -> bool:
        """Send SSE events; ``None`` items mean "sleep chunk_delay".  False if dropped."""
        ex.start_stream(headers=headers)
        sent = 0
        for item in events:
            if item is None:
                self._sleep()
                continue
            event, data = item
            if self.mode == "drop_mid_stream" and sent >= self.drop_after:
                ex.drop()
                return False
            ex.sse(data, event)
            sent += 1
        ex.end_stream()
        return True

    def _drop_plain(self, ex: Exchange, payload: Any) -> None:
        """drop_mid_stream for a non-stream request: half a body, then close."""
        raw = json.dumps(payload).encode()
        h = ex.handler
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        ex.headers_sent = True
        h.wfile.write(raw[: len(raw) // 2])
        ex.drop()

    def _send_result(
        self,
        ex: Exchange,
        payload: Any,
        headers: dict[str, str] | None = None,
        record: Callable[[], None] | None = None,
    ) -> None:
        """Send a non-stream answer; usage is recorded first (no race with the client)."""
        if self.mode == "drop_mid_stream":
            self._drop_plain(ex, payload)
            return
        if record is not None:
            record()
        ex.send_json(200, payload, headers)

    # ==================================================================
    # chat completions
    # ==================================================================
    def _chat(self, ex: Exchange, body: dict[str, Any]) -> None:
        req = ex.req
        model = req.meta["model"]
        if model in self.responses_only_models:
            ex.send_json(
                400,
                {
                    "error": {
                        "message": f'model "{model}" is not accessible'
                        " via the /chat/completions endpoint",
                        "code": "unsupported_api_for_model",
                    }
                },
            )
            return
        if self.enforce_copilot_headers and self._copilot_header_error(ex, body):
            return
        plan = self._plan("chat", body, req)
        inp, out = plan["input_tokens"], plan["output_tokens"]
        cached = min(self.cached_tokens, inp) if self._caches(body) else 0
        written = min(self.cache_creation_tokens, inp - cached) if self._caches(body) else 0
        details: dict[str, int] = {"cached_tokens": cached, "audio_tokens": 0}
        if written:
            details["cache_write_tokens"] = written
        usage = {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": details,
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        cid = _new_id("chatcmpl-", 29)
        created = int(time.time())
        quirks = self.copilot_quirks
        call_id = _new_id("call_", 24)
        choice_idx = 1 if (quirks and plan["kind"] == "tool") else 0
        tc_idx = 1 if quirks else 0
        headers = {"x-request-id": _new_id("", 32)}

        def record() -> None:
            self._record_usage(
                "chat",
                req,
                usage,
                inp=inp,
                out=out,
                cached=cached,
                creation=written,
                reasoning=self.reasoning_tokens,
            )

        if not body.get("stream"):
            tool_calls = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": plan.get("tool_name"), "arguments": plan.get("arguments")},
                }
            ]
            if plan["kind"] == "tool" and quirks:
                choices = [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": plan["text"] or None},
                        "logprobs": None,
                        "finish_reason": "tool_calls",
                    },
                    {
                        "index": 1,
                        "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                        "logprobs": None,
                        "finish_reason": "tool_calls",
                    },
                ]
            elif plan["kind"] == "tool":
                choices = [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": plan["text"] or None,
                            "tool_calls": tool_calls,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "tool_calls",
                    }
                ]
            else:
                choices = [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": plan["text"],
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ]
            payload = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
            }
            self._send_result(ex, payload, headers, record)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) or quirks

        def chunk(choices: list[dict[str, Any]], with_usage: Any = False) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage and not quirks:
                c["usage"] = None
            if with_usage is not False:
                c["usage"] = with_usage
            return c

        def ch(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

        def events() -> Iterable[tuple[str | None, Any] | None]:
            yield None, chunk([ch({"role": "assistant", "content": "", "refusal": None})])
            for i, word in enumerate(split_words(plan["text"])):
                if i:
                    yield None
                yield None, chunk([ch({"content": word})])
            if plan["kind"] == "tool":
                if plan["text"]:
                    yield None
                first = {
                    "index": tc_idx,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": plan["tool_name"], "arguments": ""},
                }
                yield None, chunk([ch({"tool_calls": [first]}, index=choice_idx)])
                for frag in _thirds(plan["arguments"]):
                    yield None
                    yield (
                        None,
                        chunk(
                            [
                                ch(
                                    {
                                        "tool_calls": [
                                            {"index": tc_idx, "function": {"arguments": frag}}
                                        ]
                                    },
                                    index=choice_idx,
                                )
                            ]
                        ),
                    )
                yield None, chunk([ch({}, "tool_calls", index=choice_idx)])
            else:
                yield None, chunk([ch({}, "stop")])
            if include_usage:
                yield None, chunk([], usage)
                record()  # runs once the usage chunk is on the wire
            yield None, "[DONE]"

        self._stream(ex, events(), headers)

    def _copilot_header_error(self, ex: Exchange, body: dict[str, Any]) -> bool:
        h = ex.req.headers
        if "editor-version" not in h:
            ex.send(400, "missing Editor-Version header for IDE auth", "text/plain; charset=utf-8")
            return True
        if self._has_image(body.get("messages") or body.get("input") or []) and (
            (h.get("copilot-vision-request") or "").lower() != "true"
        ):
            ex.send(
                400, "missing required Copilot-Vision-Request header", "text/plain; charset=utf-8"
            )
            return True
        return False

    # ==================================================================
    # responses
    # ==================================================================
    def _responses(self, ex: Exchange, body: dict[str, Any]) -> None:
        req = ex.req
        model = req.meta["model"]
        if self.enforce_copilot_headers and self._copilot_header_error(ex, body):
            return
        plan = self._plan("responses", body, req)
        inp, out = plan["input_tokens"], plan["output_tokens"]
        cached = min(self.cached_tokens, inp)
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": inp + out,
        }
        rid = _new_id("resp_", 48)
        created = int(time.time())
        msg_id = _new_id("msg_", 48)
        fc_id = _new_id("fc_", 48)
        call_id = _new_id("call_", 24)

        def response(status: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": body.get("parallel_tool_calls", True),
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {
                    "effort": (body.get("reasoning") or {}).get("effort"),
                    "summary": None,
                },
                "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0),
                "text": {"format": {"type": "text"}},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools") or [],
                "top_p": body.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": usage if with_usage else None,
                "user": None,
                "metadata": body.get("metadata") or {},
            }

        def text_part(text: str) -> dict[str, Any]:
            return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

        def message_item(status: str, text: str | None) -> dict[str, Any]:
            content = [] if text is None else [text_part(text)]
            return {
                "id": msg_id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }

        def fc_item(status: str, args: str) -> dict[str, Any]:
            if plan.get("custom"):
                return {"id": fc_id, "type": "custom_tool_call", "status": status,
                        "call_id": call_id, "name": plan.get("tool_name"), "input": args}
            return {
                "id": fc_id,
                "type": "function_call",
                "status": status,
                "call_id": call_id,
                "name": plan.get("tool_name"),
                "arguments": args,
            }

        final_output: list[Any] = []
        if plan["text"]:
            final_output.append(message_item("completed", plan["text"]))
        if plan["kind"] == "tool":
            final_output.append(fc_item("completed", plan["arguments"]))

        def record() -> None:
            self._record_usage(
                "responses",
                req,
                usage,
                inp=inp,
                out=out,
                cached=cached,
                creation=0,
                reasoning=self.reasoning_tokens,
            )

        if not body.get("stream"):
            self._send_result(ex, response("completed", final_output, True), None, record)
            return

        seq = iter(range(1_000_000))

        def ev(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            data["sequence_number"] = next(seq)
            return data["type"], data

        def events() -> Iterable[tuple[str | None, Any] | None]:
            yield ev({"type": "response.created", "response": response("in_progress", [], False)})
            yield ev(
                {"type": "response.in_progress", "response": response("in_progress", [], False)}
            )
            oi = 0
            if plan["text"]:
                yield ev(
                    {
                        "type": "response.output_item.added",
                        "output_index": oi,
                        "item": message_item("in_progress", None),
                    }
                )
                yield ev(
                    {
                        "type": "response.content_part.added",
                        "item_id": msg_id,
                        "output_index": oi,
                        "content_index": 0,
                        "part": text_part(""),
                    }
                )
                for i, word in enumerate(split_words(plan["text"])):
                    if i:
                        yield None
                    yield ev(
                        {
                            "type": "response.output_text.delta",
                            "item_id": msg_id,
                            "output_index": oi,
                            "content_index": 0,
                            "delta": word,
                            "logprobs": [],
                        }
                    )
                yield ev(
                    {
                        "type": "response.output_text.done",
                        "item_id": msg_id,
                        "output_index": oi,
                        "content_index": 0,
                        "text": plan["text"],
                        "logprobs": [],
                    }
                )
                yield ev(
                    {
                        "type": "response.content_part.done",
                        "item_id": msg_id,
                        "output_index": oi,
                        "content_index": 0,
                        "part": text_part(plan["text"]),
                    }
                )
                yield ev(
                    {
                        "type": "response.output_item.done",
                        "output_index": oi,
                        "item": message_item("completed", plan["text"]),
                    }
                )
                oi += 1
            if plan["kind"] == "tool":
                yield ev(
                    {
                        "type": "response.output_item.added",
                        "output_index": oi,
                        "item": fc_item("in_progress", ""),
                    }
                )
                kind = "custom_tool_call_input" if plan.get("custom") \
                    else "function_call_arguments"
                field = "input" if plan.get("custom") else "arguments"
                for frag in _thirds(plan["arguments"]):
                    yield None
                    yield ev(
                        {
                            "type": f"response.{kind}.delta",
                            "item_id": fc_id,
                            "output_index": oi,
                            "delta": frag,
                        }
                    )
                yield ev(
                    {
                        "type": f"response.{kind}.done",
                        "item_id": fc_id,
                        "output_index": oi,
                        "name": plan["tool_name"],
                        field: plan["arguments"],
                    }
                )
                yield ev(
                    {
                        "type": "response.output_item.done",
                        "output_index": oi,
                        "item": fc_item("completed", plan["arguments"]),
                    }
                )
            yield ev(
                {
                    "type": "response.completed",
                    "response": response("completed", final_output, True),
                }
            )
            record()  # after the last event is sent, before the stream terminator

        self._stream(ex, events())

    # ==================================================================
    # embeddings
    # ==================================================================
    def vector_for(self, text: str) -> list[float]:
        """The deterministic embedding of ``text`` (unit length, ``embedding_dim`` floats)."""
        raw = hashlib.sha256(text.encode()).digest()
        while len(raw) < self.embedding_dim * 2:
            raw += hashlib.sha256(raw).digest()
        vals = [
            (int.from_bytes(raw[2 * i : 2 * i + 2], "big") / 65535.0) * 2 - 1
            for i in range(self.embedding_dim)
        ]
        norm = sum(v * v for v in vals) ** 0.5 or 1.0
        # round-trip through float32 so base64 and float answers agree exactly
        return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vals]

    def _embeddings(self, ex: Exchange, body: dict[str, Any]) -> None:
        req = ex.req
        inp = body.get("input")
        if isinstance(inp, str):
            items: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            items = [inp]  # one token array
        elif isinstance(inp, list):
            items = inp
        else:
            self._error(ex, 400, "'input' is a required property")
            return
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in items]
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, t in enumerate(texts):
            vec = self.vector_for(t)
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(t) // 4 + 1 for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload = {"object": "list", "data": data, "model": req.meta["model"], "usage": usage}
        self._send_result(
            ex,
            payload,
            None,
            lambda: self._record_usage(
                "embeddings", req, usage, inp=tokens, out=0, cached=0, creation=0, reasoning=0
            ),
        )

    # ==================================================================
    # anthropic messages
    # ==================================================================
    def _count_tokens(self, ex: Exchange, body: dict[str, Any]) -> None:
        plan = self._plan("count_tokens", body, ex.req)
        ex.send_json(200, {"input_tokens": plan["input_tokens"]})

    def _messages(self, ex: Exchange, body: dict[str, Any]) -> None:
        req = ex.req
        model = req.meta["model"]
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
        thinking_on = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
        if thinking_on and choice.get("type") in ("any", "tool"):
            self._error(ex, 400, "Thinking may not be enabled when tool_choice forces tool use.")
            return
        plan = self._plan("messages", body, req)
        total_in, out = plan["input_tokens"], plan["output_tokens"]
        cached = min(self.cached_tokens, total_in) if self._caches(body) else 0
        creation = self.cache_creation_tokens if self._caches(body) else 0
        inp = total_in - cached
        thinking_cfg = body.get("thinking") or {}
        thinking = isinstance(thinking_cfg, dict) and thinking_cfg.get("type") in (
            "enabled",
            "adaptive",
        )
        thinking_text = f"Thinking about: {req.meta['reply_text'] or 'the request'}"
        usage = {
            "input_tokens": inp,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": cached,
            "output_tokens": out,
            "service_tier": "standard",
        }
        msg_id = _new_id("msg_01", 22)
        tool_id = _new_id("toolu_01", 22)
        stop_reason = "tool_use" if plan["kind"] == "tool" else "end_turn"
        blocks: list[dict[str, Any]] = []
        if thinking:
            blocks.append(
                {"type": "thinking", "thinking": thinking_text, "signature": THINKING_SIGNATURE}
            )
            if self.redacted_thinking:
                blocks.append({"type": "redacted_thinking", "data": self.redacted_thinking})
        if plan["text"]:
            blocks.append({"type": "text", "text": plan["text"]})
        if plan["kind"] == "tool":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": plan["tool_name"],
                    "input": self.tool_arguments,
                }
            )
        headers = {"request-id": _new_id("req_", 24)}

        def message(content: list[Any], stop: str | None, u: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": u,
            }

        def record() -> None:
            self._record_usage(
                "messages",
                req,
                usage,
                inp=inp,
                out=out,
                cached=cached,
                creation=creation,
                reasoning=0,
            )

        if not body.get("stream"):
            self._send_result(ex, message(blocks, stop_reason, usage), headers, record)
            return

        def events() -> Iterable[tuple[str | None, Any] | None]:
            start_usage = dict(usage, output_tokens=1)
            yield (
                "message_start",
                {"type": "message_start", "message": message([], None, start_usage)},
            )
            yield "ping", {"type": "ping"}
            idx = 0
            if thinking:
                yield (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
                for i, part in enumerate(split_words(thinking_text)):
                    if i:
                        yield None
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {"type": "thinking_delta", "thinking": part},
                        },
                    )
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": idx,
                        "delta": {"type": "signature_delta", "signature": THINKING_SIGNATURE},
                    },
                )
                yield "content_block_stop", {"type": "content_block_stop", "index": idx}
                idx += 1
                if self.redacted_thinking:
                    yield (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": idx,
                            "content_block": {
                                "type": "redacted_thinking",
                                "data": self.redacted_thinking,
                            },
                        },
                    )
                    yield "content_block_stop", {"type": "content_block_stop", "index": idx}
                    idx += 1
            if plan["text"]:
                yield (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for i, word in enumerate(split_words(plan["text"])):
                    if i or thinking:
                        yield None
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {"type": "text_delta", "text": word},
                        },
                    )
                yield "content_block_stop", {"type": "content_block_stop", "index": idx}
                idx += 1
            if plan["kind"] == "tool":
                yield (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool_id,
                            "name": plan["tool_name"],
                            "input": {},
                        },
                    },
                )
                for frag in _thirds(plan["arguments"]):
                    yield None
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {"type": "input_json_delta", "partial_json": frag},
                        },
                    )
                yield "content_block_stop", {"type": "content_block_stop", "index": idx}
            yield (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": out},
                },
            )
            yield "message_stop", {"type": "message_stop"}
            record()

        self._stream(ex, events(), headers)
