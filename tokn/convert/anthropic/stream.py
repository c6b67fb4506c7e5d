"""Anthropic Messages <-> OpenAI Chat Completions: streams."""

from __future__ import annotations

from typing import Any

from ...wire import stream_error
from ..common import (
    ANTHROPIC_TO_CHAT_STOP,
    CHAT_TO_ANTHROPIC_STOP,
    Usage,
    dumps,
    usage_from_anthropic,
    usage_to_anthropic,
)
from ..stage import (
    ChatReader,
    Frame,
    FromChatStage,
    Stage,
    chat_stream_tail,
    error_message,
)
from .request import REASONING_FORMAT, anthropic_tool_id

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
        return [stream_error("messages", message)]

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
        if kind == "signature":  # the upstream's own (a Claude model behind chat)
            out = self._block("thinking")
            self.open_kind = "signed"  # a thinking block ends with its signature
            return out + [self._delta(self.open_index,
                                      {"type": "signature_delta", "signature": op[1]})]
        if kind == "redacted":
            out = self._block("redacted", {"type": "redacted_thinking", "data": op[1]})
            return out + self._close_block()
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
        finish = self.reader.final_finish()
        if self.reader.refused and finish == "stop":
            finish = "content_filter"  # OpenAI's refusal is Anthropic's "refusal"
        stop = CHAT_TO_ANTHROPIC_STOP.get(finish, "end_turn")
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
    (role first, tool calls by index, finish_reason, a usage chunk, ``[DONE]``).

    Thinking streams as ``reasoning_content``; each signed or redacted thinking
    block is repeated whole in ``reasoning_details`` (OpenRouter's shape, with
    its ``index``) when it ends, so a chat client can send the blocks back.
    With ``hints.json_tool`` the call of that tool is the answer: its arguments
    stream as ``content``, and text around it is held back (and sent at the
    end only if the tool was never called).
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.id = ""
        self.created = 0
        self.model = self.model_override or ""
        self.usage = Usage()
        self.started = False
        self.finished = False
        self.tool_of_block: dict[int, int] = {}
        self.thinking: dict[int, dict[str, str]] = {}  # block index -> text, signature
        self.details = 0  # reasoning_details sent
        self.answer_block: int | None = None  # the json tool's block
        self.held: list[str] = []  # text held back in json-tool mode

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Frame:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return (None, {"id": self.id, "object": "chat.completion.chunk",
                       "created": self.created, "model": self.model, "choices": [choice]})

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
        index = data.get("index") if isinstance(data.get("index"), int) else 0
        if kind == "content_block_start":
            out += self._block_start(index, data.get("content_block") or {})
        elif kind == "content_block_delta":
            out += self._block_delta(index, data.get("delta") or {})
        elif kind == "content_block_stop":
            out += self._block_stop(index)
        elif kind == "message_delta":
            usage_from_anthropic(data.get("usage"), self.usage)
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop and not self.finished:
                out += self._finish(stop)
        elif kind == "message_stop":
            out += self._end()
        return out

    def _text(self, text: str) -> list[Frame]:
        if self.hints.json_tool and self.answer_block is None:
            self.held.append(text)
            return []
        if self.answer_block is not None:
            return []  # the answer is the tool's input, not the words around it
        return [self._chunk({"content": text})]

    def _detail(self, detail: dict[str, Any]) -> Frame:
        detail = {"index": self.details, **detail, "format": REASONING_FORMAT}
        self.details += 1
        return self._chunk({"reasoning_details": [detail]})

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Frame]:
        kind = block.get("type")
        answer = self.hints.json_tool
        if kind == "tool_use" and answer and block.get("name") == answer:
            self.answer_block, self.held = index, []
            return [self._chunk({"content": dumps(block["input"])})] if block.get("input") else []
        if kind == "tool_use":
            n = self.tool_of_block[index] = len(self.tool_of_block)
            args = dumps(block["input"]) if block.get("input") else ""
            call = {"index": n, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": args}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return self._text(block["text"])
        if kind == "thinking":
            self.thinking[index] = {"text": block.get("thinking") or "",
                                    "signature": block.get("signature") or ""}
            if block.get("thinking"):
                return [self._chunk({"reasoning_content": block["thinking"]})]
        if kind == "redacted_thinking":
            return [self._detail({"type": "reasoning.encrypted", "data": block.get("data") or ""})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[Frame]:
        kind = delta.get("type")
        if kind == "signature_delta" and index in self.thinking:
            self.thinking[index]["signature"] += delta.get("signature") or ""
            return []
        if not any(delta.get(k) for k in ("text", "thinking", "partial_json")):
            return []  # empty fragments (e.g. Anthropic's first "" partial_json) say nothing
        if kind == "text_delta":
            return self._text(delta.get("text") or "")
        if kind == "thinking_delta":
            if index in self.thinking:
                self.thinking[index]["text"] += delta.get("thinking") or ""
            return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
        if kind == "input_json_delta" and index == self.answer_block:
            return [self._chunk({"content": delta.get("partial_json") or ""})]
        if kind == "input_json_delta" and index in self.tool_of_block:
            call = {"index": self.tool_of_block[index],
                    "function": {"arguments": delta.get("partial_json") or ""}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _block_stop(self, index: int) -> list[Frame]:
        block = self.thinking.pop(index, None)
        if not block or not block["signature"]:
            return []
        return [self._detail({"type": "reasoning.text", "text": block["text"],
                              "signature": block["signature"]})]

    def _finish(self, stop: str | None) -> list[Frame]:
        self.finished = True
        out = [self._chunk({"content": "".join(self.held)})] if self.held else []
        self.held = []
        if stop == "tool_use" and self.answer_block is not None and not self.tool_of_block:
            stop = "end_turn"
        default = "tool_calls" if self.tool_of_block else "stop"
        return out + [self._chunk({}, ANTHROPIC_TO_CHAT_STOP.get(stop or "", default))]

    def _end(self) -> list[Frame]:
        out = self._begin()
        if not self.finished:
            out += self._finish(None)
        out += chat_stream_tail(self.id, self.created, self.model, self.usage)
        self.done = True
        return out

    def close(self) -> list[Frame]:
        return [] if self.done else self._end()

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [stream_error("chat", message)]
