"""The chat hub's own helpers (pure): what a particular chat upstream is sent,
and chat -> chat stream repair for upstreams with Copilot's quirks.

A chat body made from another format keeps everything chat can carry, with
tokn's extensions (cache breakpoints, signed reasoning, a session cache key);
:func:`for_upstream` then keeps what the upstream's :class:`Dialect` accepts.

Copilot (Claude models especially) may put the text in choice 0 and the tool
call in choice 1, number tool calls from 1, and report different
finish_reasons per choice.  OpenAI clients index ``choices[0]`` and tool calls
by position, so this stage folds every choice into choice 0, renumbers tool
calls from 0 in order of appearance, and sends one finish_reason (the
strongest) once, before the usage chunk or ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

from ..wire import stream_error
from .common import stronger_finish
from .context import Dialect
from .stage import Frame, Stage


class ChatNormalizeStream(Stage):
    """``keep_usage=False`` also drops usage-only chunks, for clients that did
    not ask for them (``stream_options.include_usage``)."""

    def __init__(self, *, keep_usage: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.keep_usage = keep_usage
        self._index: dict[tuple[int, int], int] = {}
        self._ids: dict[tuple[int, int], str] = {}
        self._finish: str | None = None
        self._template: dict[str, Any] | None = None

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        if data == "[DONE]":
            return [*self._flush(), (event, data)]
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            return [(event, data)]
        if not data["choices"]:  # usage-only trailing chunk
            return [*self._flush(), *([(event, data)] if self.keep_usage else [])]
        self._template = data
        out: list[Frame] = []
        for choice in data["choices"]:
            delta = dict(choice.get("delta") or {})
            if delta.get("tool_calls"):
                delta["tool_calls"] = [self._renumber(choice.get("index") or 0, tc)
                                       for tc in delta["tool_calls"]]
            finish = choice.get("finish_reason")
            if finish:
                self._finish = stronger_finish(self._finish, finish)
            if delta or data.get("usage"):
                fixed = {**choice, "index": 0, "delta": delta, "finish_reason": None}
                out.append((event, {**data, "choices": [fixed]}))
        return out

    def close(self) -> list[Frame]:
        return self._flush()

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [stream_error("chat", message)]

    def _renumber(self, choice: int, call: dict[str, Any]) -> dict[str, Any]:
        key = (choice, call.get("index") or 0)
        new_id = call.get("id")
        if key not in self._index or (new_id and self._ids.get(key) not in (None, new_id)):
            self._index[key] = len(self._index)
        if new_id:
            self._ids[key] = new_id
        return {**call, "index": self._index[key]}

    def _flush(self) -> list[Frame]:
        if self._finish is None or self._template is None:
            return []
        chunk = {k: v for k, v in self._template.items() if k != "usage"}
        chunk["choices"] = [{"index": 0, "delta": {}, "finish_reason": self._finish}]
        self._finish = None
        return [(None, chunk)]


def completion_to_chunks(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole ``chat.completion`` as the chunks a stream of it would carry:
    role and content, reasoning, tool calls by index, finish, then usage."""
    base = {"id": resp.get("id") or "chatcmpl-tokn", "object": "chat.completion.chunk",
            "created": resp.get("created") or 0, "model": resp.get("model")}
    out: list[dict[str, Any]] = []
    for choice in resp.get("choices") or []:
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role") or "assistant"}
        for key in ("content", "reasoning_content", "refusal"):
            if message.get(key):
                delta[key] = message[key]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{**call, "index": i}
                                   for i, call in enumerate(message["tool_calls"])]
        index = choice.get("index") or 0
        out.append({**base, "choices": [{"index": index, "delta": delta,
                                         "finish_reason": None}]})
        out.append({**base, "choices": [{"index": index, "delta": {},
                                         "finish_reason": choice.get("finish_reason")
                                         or "stop"}]})
    if resp.get("usage"):
        out.append({**base, "choices": [], "usage": resp["usage"]})
    return out


def tidy_assistant(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat assistant turns upstreams accept: a turn with no text and no tool
    calls keeps its reasoning with ``content: ""``, and is left out when it has
    nothing at all."""
    out = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("content") is None and not m.get("tool_calls"):
            if not any(k.startswith("reasoning") for k in m):
                continue
            m = {**m, "content": ""}
        out.append(m)
    return out


_EPHEMERAL = {"type": "ephemeral"}


def _parts_breakpoint(m: dict[str, Any], marker: Any) -> dict[str, Any]:
    """``cache_control`` on the message's last text part (OpenRouter's place)."""
    content = m.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) and content \
        else list(content or [])
    for i in range(len(parts) - 1, -1, -1):
        if isinstance(parts[i], dict) and parts[i].get("type") == "text":
            parts[i] = {**parts[i], "cache_control": marker}
            return {**m, "content": parts}
    return m


def _unmarked(content: Any) -> Any:
    """Content without part breakpoints; text-only parts joined into one string."""
    if not isinstance(content, list) or not any(
            isinstance(p, dict) and "cache_control" in p for p in content):
        return content
    parts = [{k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p
             for p in content]
    if all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        return "\n\n".join(p.get("text") or "" for p in parts)
    return parts


def for_upstream(chat: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """A hub chat body as ``dialect``'s upstream takes it: cache breakpoints where
    it reads them (or nowhere), ``prompt_cache_key`` / ``verbosity`` /
    ``reasoning_details`` only where accepted."""
    out = dict(chat)
    for key, keep in (("prompt_cache_key", dialect.prompt_cache_key),
                      ("verbosity", dialect.verbosity)):
        if key in out and not keep:
            del out[key]
    messages = []
    for m in chat.get("messages") or []:
        level = m.get("cache_control")  # the hub's message-level breakpoint
        content = m.get("content")
        marked = isinstance(content, list) and any(
            isinstance(p, dict) and p.get("cache_control") for p in content)
        m = {k: v for k, v in m.items() if k != "cache_control"
             and (k != "reasoning_details" or dialect.reasoning_details)}
        if dialect.cache_control == "parts":
            if level and not marked:
                m = _parts_breakpoint(m, level)
        else:
            if "content" in m:
                m["content"] = _unmarked(content)
            if (level or marked) and dialect.cache_control == "copilot":
                m["copilot_cache_control"] = _EPHEMERAL
        messages.append(m)
    out["messages"] = messages
    if "tools" in out:
        tools = []
        for t in out["tools"]:
            marker = t.get("cache_control")
            t = {k: v for k, v in t.items() if k != "cache_control"}
            if marker and dialect.cache_control == "parts":
                t["cache_control"] = marker
            elif marker and dialect.cache_control == "copilot":
                t["copilot_cache_control"] = _EPHEMERAL
            tools.append(t)
        out["tools"] = tools
    return out
