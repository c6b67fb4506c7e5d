"""OpenAI Responses <-> OpenAI Chat Completions: streams."""

from __future__ import annotations

from typing import Any

from ...wire import stream_error
from ..common import (
    Usage,
    usage_from_responses,
)
from ..stage import (
    ChatReader,
    Frame,
    FromChatStage,
    Stage,
    chat_stream_tail,
    error_message,
)
from .response import (
    call_item,
    finish_of_response,
    finish_response,
    reasoning_item,
    response_shell,
    text_item,
)

# ---------------------------------------------------------------------------
# streams: chat chunks -> Responses events


class ChatToResponsesStream(FromChatStage):
    """``chat.completion.chunk`` frames in, Responses events out (with ``sequence_number``)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reader = ChatReader()
        self.seq = 0
        self.resp: dict[str, Any] | None = None
        self.output: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the item being streamed

    def _ev(self, kind: str, **fields: Any) -> Frame:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return (kind, data)


    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        out = self._start({})
        event, data = stream_error("responses", message)
        out.append(self._ev(data["type"], **{k: v for k, v in data.items() if k != "type"}))
        assert self.resp is not None
        self.resp["status"] = "failed"
        self.resp["error"] = {"code": "server_error", "message": message}
        self.resp["output"] = self.output
        out.append(self._ev("response.failed", response=self.resp))
        self.done = True
        return out

    # -- internals --
    def _start(self, chunk: dict[str, Any]) -> list[Frame]:
        model = chunk.get("model")
        if self.resp is not None:
            return []
        model = self.model_override or model or ""
        self.resp = response_shell(self.ids("resp_"), model, self.clock(), "in_progress")
        return [
            self._ev("response.created", response=dict(self.resp)),
            self._ev("response.in_progress", response=dict(self.resp)),
        ]

    def _op(self, op: tuple[Any, ...]) -> list[Frame]:
        kind = op[0]
        if kind == "reasoning":
            out = self._open("reasoning")
            assert self.open is not None
            self.open["text"] += op[1]
            return out + [
                self._ev(
                    "response.reasoning_summary_text.delta",
                    item_id=self.open["id"],
                    output_index=self.open["index"],
                    summary_index=0,
                    delta=op[1],
                )
            ]
        if kind == "text":
            out = self._open("message")
            assert self.open is not None
            self.open["text"] += op[1]
            return out + [
                self._ev(
                    "response.output_text.delta",
                    item_id=self.open["id"],
                    output_index=self.open["index"],
                    content_index=0,
                    delta=op[1],
                    logprobs=[],
                )
            ]
        if kind not in ("tool", "args"):
            return []  # Anthropic thinking signatures: nothing to say in Responses
        tool = op[1]
        if kind == "tool":
            out = self._open("function_call", tool)
            tool.slot = self.open
            return out
        slot = tool.slot
        slot["text"] += op[2]
        if slot["custom"]:
            return []  # a custom tool's input is sent whole when the call ends
        return [
            self._ev(
                "response.function_call_arguments.delta",
                item_id=slot["id"],
                output_index=slot["index"],
                delta=op[2],
            )
        ]

    def _open(self, kind: str, tool: Any = None) -> list[Frame]:
        if self.open is not None and self.open["kind"] == kind and tool is None:
            return []
        out = self._close_item()
        index = len(self.output)
        if kind == "reasoning":
            item_id = self.ids("rs_")
            self.open = {"kind": kind, "id": item_id, "index": index, "text": ""}
            return out + [
                self._ev(
                    "response.output_item.added",
                    output_index=index,
                    item={"id": item_id, "type": "reasoning", "summary": []},
                ),
                self._ev(
                    "response.reasoning_summary_part.added",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                ),
            ]
        if kind == "message":
            item_id = self.ids("msg_")
            self.open = {"kind": kind, "id": item_id, "index": index, "text": ""}
            item = {
                "id": item_id,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            return out + [
                self._ev("response.output_item.added", output_index=index, item=item),
                self._ev(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
                ),
            ]
        item_id = self.ids("fc_")
        call_id = tool.id or self.ids("call_")
        item = call_item(item_id, call_id, tool.name or "", "", "in_progress",
                         names=self.hints.tool_names)
        self.open = {"kind": kind, "id": item_id, "index": index, "text": "",
                     "call_id": call_id, "name": tool.name or "",
                     "custom": item["type"] == "custom_tool_call"}
        return out + [self._ev("response.output_item.added", output_index=index, item=item)]

    def _close_item(self) -> list[Frame]:
        it, self.open = self.open, None
        if it is None:
            return []
        i, text = it["index"], it["text"]
        if it["kind"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            item = reasoning_item(it["id"], text)
            out = [
                self._ev(
                    "response.reasoning_summary_text.done",
                    item_id=it["id"],
                    output_index=i,
                    summary_index=0,
                    text=text,
                ),
                self._ev(
                    "response.reasoning_summary_part.done",
                    item_id=it["id"],
                    output_index=i,
                    summary_index=0,
                    part=part,
                ),
            ]
        elif it["kind"] == "message":
            item = text_item(it["id"], text)
            out = [
                self._ev(
                    "response.output_text.done",
                    item_id=it["id"],
                    output_index=i,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._ev(
                    "response.content_part.done",
                    item_id=it["id"],
                    output_index=i,
                    content_index=0,
                    part=item["content"][0],
                ),
            ]
        elif it["custom"]:
            item = call_item(it["id"], it["call_id"], it["name"], text,
                             names=self.hints.tool_names)
            out = [self._ev("response.custom_tool_call_input.delta", item_id=it["id"],
                            output_index=i, delta=item["input"]),
                   self._ev("response.custom_tool_call_input.done", item_id=it["id"],
                            output_index=i, input=item["input"])]
        else:
            item = call_item(it["id"], it["call_id"], it["name"], text,
                             names=self.hints.tool_names)
            out = [self._ev("response.function_call_arguments.done", item_id=it["id"],
                            output_index=i, name=item["name"], arguments=text)]
        self.output.append(item)
        return out + [self._ev("response.output_item.done", output_index=i, item=item)]

    def _finish(self) -> list[Frame]:
        out = self._start({})
        for op in self.reader.flush():
            out += self._op(op)
        out += self._close_item()
        assert self.resp is not None
        finish = self.reader.final_finish()
        self.resp["output"] = self.output
        finish_response(self.resp, finish, self.reader.usage)
        kind = "response.completed" if self.resp["status"] == "completed" else "response.incomplete"
        out.append(self._ev(kind, response=self.resp))
        self.done = True
        return out


# ---------------------------------------------------------------------------
# streams: Responses events -> chat chunks


class ResponsesToChatStream(Stage):
    """Responses events in, ``chat.completion.chunk`` frames out."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.id = ""
        self.created = 0
        self.model = self.model_override or ""
        self.started = False
        self.tools: dict[int, dict[str, Any]] = {}  # output_index -> {n, args}
        self.usage = Usage()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Frame:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return (
            None,
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            },
        )

    def _begin(self, resp: dict[str, Any] | None = None) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        resp = resp or {}
        self.model = self.model_override or resp.get("model") or self.model
        self.id = "chatcmpl-" + (resp.get("id") or self.ids(""))
        self.created = int(resp.get("created_at") or self.clock())
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: str | None, data: Any) -> list[Frame]:
        if self.done or not isinstance(data, dict):
            return []
        kind = data.get("type") or event or ""
        if kind in ("error", "response.failed"):
            return self.error(error_message(data))
        out = self._begin(data.get("response") if kind == "response.created" else None)
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            out.append(self._chunk({"content": data.get("delta") or ""}))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            out.append(self._chunk({"reasoning_content": data.get("delta") or ""}))
        elif (
            kind == "response.output_item.added"
            and (data.get("item") or {}).get("type") == "function_call"
        ):
            item = data["item"]
            n = len(self.tools)
            self.tools[int(data.get("output_index") or 0)] = {"n": n, "args": ""}
            call = {
                "index": n,
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": item.get("name") or "", "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        elif kind == "response.function_call_arguments.delta":
            out += self._args(int(data.get("output_index") or 0), data.get("delta") or "")
        elif (
            kind == "response.output_item.done"
            and (data.get("item") or {}).get("type") == "function_call"
        ):
            tool = self.tools.get(int(data.get("output_index") or 0))
            if tool is not None and not tool["args"]:  # arguments sent only whole, at the end
                out += self._args(
                    int(data.get("output_index") or 0), data["item"].get("arguments") or ""
                )
        elif kind in ("response.completed", "response.incomplete"):
            resp = data.get("response") or {}
            self.usage = usage_from_responses(resp.get("usage"))
            out += self._end(finish_of_response(resp, bool(self.tools)))
        return out

    def _args(self, output_index: int, fragment: str) -> list[Frame]:
        tool = self.tools.get(output_index)
        if tool is None or not fragment:
            return []
        tool["args"] += fragment
        return [
            self._chunk({"tool_calls": [{"index": tool["n"], "function": {"arguments": fragment}}]})
        ]

    def _end(self, finish: str) -> list[Frame]:
        out = self._begin()
        out.append(self._chunk({}, finish))
        out += chat_stream_tail(self.id, self.created, self.model, self.usage)
        self.done = True
        return out

    def close(self) -> list[Frame]:
        return [] if self.done else self._end("tool_calls" if self.tools else "stop")

    def error(self, message: str) -> list[Frame]:
        if self.done:
            return []
        self.done = True
        return [stream_error("chat", message)]
