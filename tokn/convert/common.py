"""Shared pieces of the converters: usage, ids, clock, stop reasons, small helpers.

Ids and timestamps go through :func:`make_id` and :func:`now`, looked up on this
module at call time, so tests can make output deterministic with
``monkeypatch.setattr(common, "make_id", ...)``; stream converters also take
``ids=`` / ``clock=`` arguments.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IdFactory = Callable[[str], str]
Clock = Callable[[], int]


@dataclass
class Usage:
    """Token counts. ``input_tokens`` EXCLUDES cache reads and writes (Anthropic's
    convention); :attr:`prompt_tokens` is the OpenAI-style total."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def make_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def default_ids(prefix: str) -> str:
    return make_id(prefix)  # late lookup: honours a monkeypatched make_id


def default_clock() -> int:
    return now()


# --- stop reasons -----------------------------------------------------------
# chat finish_reason -> Anthropic stop_reason. content_filter becomes "refusal"
# (Anthropic's reason for a declined answer); both directions map it so.
CHAT_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ANTHROPIC_TO_CHAT_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# When several choices report different reasons (split-choice upstreams), the
# strongest wins.
_FINISH_RANK = {"tool_calls": 4, "function_call": 4, "length": 3, "content_filter": 2, "stop": 1}


def stronger_finish(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if _FINISH_RANK.get(a, 0) >= _FINISH_RANK.get(b, 0) else b


# --- usage ------------------------------------------------------------------


def usage_from_chat(u: dict[str, Any] | None) -> Usage:
    u = u or {}
    cached = int(((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    reasoning = int(((u.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    prompt = int(u.get("prompt_tokens") or 0)
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=int(u.get("completion_tokens") or 0),
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


def usage_to_chat(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }
    return out


def usage_from_anthropic(u: dict[str, Any] | None, into: Usage | None = None) -> Usage:
    """Anthropic usage; with ``into``, fields present in ``u`` overwrite (stream updates)."""
    out = into if into is not None else Usage()
    u = u or {}
    if u.get("input_tokens") is not None:
        out.input_tokens = int(u["input_tokens"])
    if u.get("output_tokens") is not None:
        out.output_tokens = int(u["output_tokens"])
    if u.get("cache_read_input_tokens") is not None:
        out.cache_read_tokens = int(u["cache_read_input_tokens"])
    if u.get("cache_creation_input_tokens") is not None:
        out.cache_write_tokens = int(u["cache_creation_input_tokens"])
    return out


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def usage_from_responses(u: dict[str, Any] | None) -> Usage:
    u = u or {}
    cached = int(((u.get("input_tokens_details") or {}).get("cached_tokens")) or 0)
    reasoning = int(((u.get("output_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return Usage(
        input_tokens=max(int(u.get("input_tokens") or 0) - cached, 0),
        output_tokens=int(u.get("output_tokens") or 0),
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


def usage_to_responses(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


# --- small helpers ----------------------------------------------------------


def dumps(obj: Any) -> str:
    """Compact JSON for tool arguments."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def parse_args(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as the object Anthropic wants.

    Empty -> ``{}``; valid JSON that is not an object -> ``{"value": ...}``;
    invalid JSON -> ``{"_raw_arguments": text}`` so nothing is silently lost.
    """
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        return {"_raw_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"value": value}


_DATA_URL = re.compile(r"^data:([^;,]*)(;[^,]*)?,(.*)$", re.S)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ``("image/png", "AAAA")``; None for other URLs."""
    m = _DATA_URL.match(url or "")
    if not m or "base64" not in (m.group(2) or ""):
        return None
    return m.group(1) or "application/octet-stream", m.group(3)


def text_of(content: Any, sep: str = "") -> str:
    """The text in a content value: a string, or a list of parts with ``text``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(
            p.get("text") or ""
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return str(content)


def reasoning_of(obj: dict[str, Any]) -> str | None:
    """Reasoning text of a chat message or delta, whichever field the upstream uses."""
    for key in ("reasoning_content", "reasoning", "reasoning_text"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}


def effort_for_budget(budget: int) -> str:
    """Anthropic thinking budget -> OpenAI reasoning effort: <4096 low, <16384 medium, else high."""
    if budget < 4096:
        return "low"
    if budget < 16384:
        return "medium"
    return "high"


# --- stream stages ------------------------------------------------------------
# A stage turns parsed upstream events into parsed client events. A frame is
# ``(event_name, data)``: data is a dict, or the string "[DONE]" in chat streams.
Frame = tuple[str | None, Any]


class Stage:
    def __init__(
        self, *, model: str | None = None, ids: IdFactory | None = None, clock: Clock | None = None
    ) -> None:
        self.model_override = model
        self.ids: IdFactory = ids or default_ids
        self.clock: Clock = clock or default_clock
        self.done = False

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        raise NotImplementedError

    def close(self) -> list[Frame]:
        raise NotImplementedError

    def error(self, message: str) -> list[Frame]:
        raise NotImplementedError


class FromChatStage(Stage):
    """A stage turning chat chunks (read with :class:`ChatReader`) into another
    format.  Subclasses set ``self.reader`` and give ``_start(chunk)``,
    ``_op(op)``, ``_finish()`` and ``error()``."""

    reader: Any

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        if self.done:
            return []
        if data == "[DONE]":
            return self._finish()
        if not isinstance(data, dict):
            return []
        if data.get("error"):
            return self.error(error_message(data))
        ops = self.reader.read(data)
        out = self._start(data)
        for op in ops:
            out += self._op(op)
        return out

    def close(self) -> list[Frame]:
        return [] if self.done else self._finish()

    def _start(self, chunk: dict[str, Any]) -> list[Frame]:
        raise NotImplementedError

    def _op(self, op: Any) -> list[Frame]:
        raise NotImplementedError

    def _finish(self) -> list[Frame]:
        raise NotImplementedError


def chat_stream_tail(chunk_id: str, created: int, model: str | None,
                     usage: Usage) -> list[Frame]:
    """The closing frames of a chat stream: a usage-only chunk, then ``[DONE]``."""
    chunk = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
             "model": model, "choices": [], "usage": usage_to_chat(usage)}
    return [(None, chunk), (None, "[DONE]")]


def chat_error(message: str, kind: str = "api_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_message(data: Any) -> str:
    """The message of an error payload in any of the three formats."""
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if isinstance(err, str):
            return err
        if data.get("message"):
            return str(data["message"])
        resp = data.get("response")
        if isinstance(resp, dict) and isinstance(resp.get("error"), dict):
            return str(resp["error"].get("message") or resp["error"])
    return "upstream error"


class ChatTool:
    """One tool call assembled from chat deltas; ``slot`` is the consumer's block/item."""

    def __init__(self, tool_id: str | None, name: str | None) -> None:
        self.id, self.name = tool_id, name
        self.pending = ""
        self.arguments = ""
        self.opened = False
        self.slot: Any = None


class ChatReader:
    """Reads ``chat.completion.chunk`` dicts into simple ops, absorbing upstream quirks.

    Ops: ``("reasoning", text)``, ``("text", text)``, ``("tool", ChatTool)`` when a
    tool call can be opened (its name is known), ``("args", ChatTool, fragment)``.
    Quirks handled: text and tool calls in different choices (all choices feed
    one message), tool-call indexes not starting at 0, arguments without (or
    before) id/name, a new id on a reused index (a new call), usage in a
    trailing chunk with empty ``choices``, missing ``finish_reason``.
    """

    def __init__(self) -> None:
        self.tools: dict[tuple[int, int], ChatTool] = {}
        self.finish: str | None = None
        self.usage = Usage()
        self.model: str | None = None
        self.any_tool = False

    def read(self, chunk: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.model = self.model or chunk.get("model")
        if chunk.get("usage"):
            self.usage = usage_from_chat(chunk["usage"])
        ops: list[tuple[Any, ...]] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            for key in ("reasoning_content", "reasoning", "reasoning_text"):
                if isinstance(delta.get(key), str) and delta[key]:
                    ops.append(("reasoning", delta[key]))
                    break
            text = delta.get("content")
            text = text_of(text) if isinstance(text, list) else text
            if isinstance(text, str) and text:
                ops.append(("text", text))
            for call in delta.get("tool_calls") or []:
                ops += self._tool(int(choice.get("index") or 0), call)
            if choice.get("finish_reason"):
                self.finish = stronger_finish(self.finish, choice["finish_reason"])
        return ops

    def _tool(self, choice_index: int, call: dict[str, Any]) -> list[tuple[Any, ...]]:
        key = (choice_index, int(call.get("index") or 0))
        fn = call.get("function") or {}
        tool_id, name = call.get("id"), fn.get("name")
        tool = self.tools.get(key)
        if tool is None or (tool_id and tool.id and tool_id != tool.id):
            tool = self.tools[key] = ChatTool(tool_id, name)
        else:
            tool.id = tool.id or tool_id
            tool.name = tool.name or name
        tool.pending += fn.get("arguments") or ""
        ops: list[tuple[Any, ...]] = []
        if not tool.opened and tool.name:
            tool.opened = self.any_tool = True
            ops.append(("tool", tool))
        if tool.opened and tool.pending:
            ops.append(("args", tool, tool.pending))
            tool.arguments += tool.pending
            tool.pending = ""
        return ops

    def flush(self) -> list[tuple[Any, ...]]:
        """Ops for tool calls whose arguments came but whose name never did."""
        ops: list[tuple[Any, ...]] = []
        for tool in self.tools.values():
            if not tool.opened and tool.pending:
                tool.opened = self.any_tool = True
                ops += [("tool", tool), ("args", tool, tool.pending)]
                tool.arguments += tool.pending
                tool.pending = ""
        return ops

    def final_finish(self) -> str:
        """The chat finish_reason of the message: tool calls win over a plain/missing stop."""
        if self.any_tool and self.finish in (None, "stop"):
            return "tool_calls"
        return self.finish or "stop"
