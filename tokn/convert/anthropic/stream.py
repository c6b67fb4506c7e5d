"""Anthropic Messages <-> OpenAI Chat Completions: streams."""

from __future__ import annotations

from typing import Any

from ..common import (
    ANTHROPIC_TO_CHAT_STOP,
    CHAT_TO_ANTHROPIC_STOP,
    ChatReader,
    Frame,
    FromChatStage,
    Stage,
    Usage,
    chat_error,
    chat_stream_tail,
    dumps,
    error_message,
    usage_from_anthropic,
    usage_to_anthropic,
)
from .request import anthropic_tool_id

# ---------------------------------------------------------------------------
# streams: chat chunks -> Anthropic events


class ChatToMessagesStream(FromChatStage):
    """``chat.completion.chunk`` frames in, Anthropic Messages events out.

    Upstream quirks are absorbed by :class:`ChatReader`. A new block starts
    whenever the kind changes (thinking -> text -> tool_use) and for each tool
    call. The message is finished at ``[DONE]``/``close()`` so that usage sent in
    a trailing chunk is counted. Thinking signatures are never invented.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reader = ChatReader()
        self.started = False
        self.open_kind: str | None = None  # thinking / text / tool_use
        self.open_index = -1
        self.next_index = 0

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [("error", {"type": "error", "error": {"type": "api_error", "message": message}})]

    # -- internals --
    def _start(self, chunk: dict[str, Any]) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        model = self.model_override or chunk.get("model") or ""
        message = {
            "id": self.ids("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.reader.usage.input_tokens, "output_tokens": 0},
        }
        return [
            ("message_start", {"type": "message_start", "message": message}),
            ("ping", {"type": "ping"}),
        ]

    def _op(self, op: tuple[Any, ...]) -> list[Frame]:
        kind = op[0]
        if kind == "reasoning":
            return self._block("thinking") + [
                self._delta(self.open_index, {"type": "thinking_delta", "thinking": op[1]})
            ]
        if kind == "text":
            return self._block("text") + [
                self._delta(self.open_index, {"type": "text_delta", "text": op[1]})
            ]
        tool = op[1]
        if kind == "tool":
            block = {
                "type": "tool_use",
                "id": anthropic_tool_id(tool.id or self.ids("toolu_")),
                "name": tool.name or "",
                "input": {},
            }
            out = self._block("tool_use", block)
            tool.slot = self.open_index
            return out
        # args; after a tool block was closed (interleaved upstream) its index is still used
        return [self._delta(tool.slot, {"type": "input_json_delta", "partial_json": op[2]})]

    def _block(self, kind: str, block: dict[str, Any] | None = None) -> list[Frame]:
        if self.open_kind == kind and kind != "tool_use":
            return []
        out = self._close_block()
        if block is None:
            block = (
                {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
        self.open_kind, self.open_index = kind, self.next_index
        self.next_index += 1
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self.open_index, "content_block": block},
            )
        )
        return out

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> Frame:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def _close_block(self) -> list[Frame]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.open_index})]

    def _finish(self) -> list[Frame]:
        out = self._start({})
        for op in self.reader.flush():
            out += self._op(op)
        out += self._close_block()
        stop = CHAT_TO_ANTHROPIC_STOP.get(self.reader.final_finish(), "end_turn")
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": usage_to_anthropic(self.reader.usage),
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        self.done = True
        return out


# ---------------------------------------------------------------------------
# streams: Anthropic events -> chat chunks


class MessagesToChatStream(Stage):
    """Anthropic Messages events in, ``chat.completion.chunk`` frames out
    (role first, tool calls by index, finish_reason, a usage chunk, ``[DONE]``)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.id = ""
        self.created = 0
        self.model = self.model_override or ""
        self.usage = Usage()
        self.started = False
        self.finished = False
        self.tool_of_block: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Frame:
        return (
            None,
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            },
        )

    def _begin(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        self.id = self.id or self.ids("chatcmpl-")
        self.created = self.clock()
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        if self.done or not isinstance(data, dict):
            return []
        kind = data.get("type") or event
        if kind == "error":
            return self.error(error_message(data))
        if kind == "message_start":
            msg = data.get("message") or {}
            self.model = self.model_override or msg.get("model") or self.model
            usage_from_anthropic(msg.get("usage"), self.usage)
            return self._begin()
        out = self._begin()
        if kind == "content_block_start":
            out += self._block_start(int(data.get("index") or 0), data.get("content_block") or {})
        elif kind == "content_block_delta":
            out += self._block_delta(int(data.get("index") or 0), data.get("delta") or {})
        elif kind == "message_delta":
            usage_from_anthropic(data.get("usage"), self.usage)
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop and not self.finished:
                self.finished = True
                out.append(self._chunk({}, ANTHROPIC_TO_CHAT_STOP.get(stop, "stop")))
        elif kind == "message_stop":
            out += self._end()
        return out

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Frame]:
        kind = block.get("type")
        if kind in ("tool_use", "server_tool_use"):
            n = self.tool_of_block[index] = len(self.tool_of_block)
            args = dumps(block["input"]) if block.get("input") else ""
            return [
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": n,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name") or "", "arguments": args},
                            }
                        ]
                    }
                )
            ]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[Frame]:
        kind = delta.get("type")
        if not any(delta.get(k) for k in ("text", "thinking", "partial_json")):
            return []  # empty fragments (e.g. Anthropic's first "" partial_json) say nothing
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text") or ""})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
        if kind == "input_json_delta" and index in self.tool_of_block:
            return [
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": self.tool_of_block[index],
                                "function": {"arguments": delta.get("partial_json") or ""},
                            }
                        ]
                    }
                )
            ]
        return []

    def _end(self) -> list[Frame]:
        out = self._begin()
        if not self.finished:
            self.finished = True
            out.append(self._chunk({}, "tool_calls" if self.tool_of_block else "stop"))
        out += chat_stream_tail(self.id, self.created, self.model, self.usage)
        self.done = True
        return out

    def close(self) -> list[Frame]:
        return [] if self.done else self._end()

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [(None, chat_error(message))]
