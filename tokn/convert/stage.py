"""Stream machinery shared by the converters: frames, stages, and a reader of
chat chunks that absorbs upstream quirks (pure).

A stage turns parsed upstream events into parsed client events. A frame is
``(event_name, data)``: data is a dict, or the string "[DONE]" in chat streams.
"""

from __future__ import annotations

from typing import Any

from .common import (
    Clock,
    IdFactory,
    Usage,
    default_clock,
    default_ids,
    stronger_finish,
    text_of,
    usage_from_chat,
    usage_to_chat,
)
from .context import NO_HINTS, Hints

Frame = tuple[str | None, Any]


class Stage:
    """``model`` replaces the upstream's model name; ``ids`` / ``clock`` make output
    deterministic; ``hints`` say what the client's request needs back."""

    def __init__(self, *, model: str | None = None, ids: IdFactory | None = None,
                 clock: Clock | None = None, hints: Hints = NO_HINTS) -> None:
        self.model_override = model
        self.ids: IdFactory = ids or default_ids
        self.clock: Clock = clock or default_clock
        self.hints = hints
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


def _signed_reasoning(details: Any) -> list[tuple[Any, ...]]:
    """Signatures and redacted blocks of Anthropic thinking carried in chat
    ``reasoning_details`` (the text comes in the reasoning fields)."""
    ops: list[tuple[Any, ...]] = []
    for d in details if isinstance(details, list) else []:
        if not isinstance(d, dict) or d.get("format") not in (None, "anthropic-claude-v1"):
            continue
        if d.get("type") == "reasoning.encrypted" and isinstance(d.get("data"), str):
            ops.append(("redacted", d["data"]))
        elif d.get("type") == "reasoning.text" and isinstance(d.get("signature"), str) \
                and d["signature"]:
            ops.append(("signature", d["signature"]))
    return ops


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

    Ops: ``("reasoning", text)``, ``("signature", sig)`` / ``("redacted", data)``
    (Anthropic thinking in ``reasoning_details``), ``("text", text)`` (a
    ``refusal`` too, setting ``refused``), ``("tool", ChatTool)`` when a
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
        self.refused = False  # the model declined (OpenAI's ``refusal``)

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
            ops += _signed_reasoning(delta.get("reasoning_details"))
            text = delta.get("content")
            text = text_of(text) if isinstance(text, list) else text
            if isinstance(text, str) and text:
                ops.append(("text", text))
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                self.refused = True
                ops.append(("text", delta["refusal"]))
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
