"""OpenAI Responses <-> OpenAI Chat Completions: requests, responses, streams.

Not representable and dropped: ``previous_response_id`` / ``store`` (tokn is
stateless: clients must send the whole conversation), built-in tools (web
search, file search, ...), encrypted reasoning. Chat ``stop`` has no Responses
equivalent and is dropped. Reasoning reaches Responses clients as reasoning
items with a ``summary_text`` part (what Codex-style clients show).
"""

from __future__ import annotations

from typing import Any

from . import common
from .anthropic import reasoning_of
from .common import (
    ChatReader,
    Frame,
    FromChatStage,
    Stage,
    Usage,
    chat_error,
    chat_stream_tail,
    drop_none,
    error_message,
    stronger_finish,
    text_of,
    usage_from_chat,
    usage_from_responses,
    usage_to_chat,
    usage_to_responses,
)

# ---------------------------------------------------------------------------
# requests: responses -> chat


def _part_to_chat(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal", "")}
    if kind == "input_image" and part.get("image_url"):
        image = drop_none({"url": part["image_url"], "detail": part.get("detail")})
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and part.get("file_data"):
        file = drop_none({"filename": part.get("filename"), "file_data": part["file_data"]})
        return {"type": "file", "file": file}
    return None


def _content_to_chat(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = [p for p in (_part_to_chat(x) for x in content or []) if p]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_to_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return text_of(output, "\n") if isinstance(output, list) else str(output or "")


def _input_to_chat(items: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    reasoning: list[str] = []  # reasoning items precede the assistant output they belong to

    def assistant(fresh: bool) -> dict[str, Any]:
        if fresh or not out or out[-1]["role"] != "assistant":
            out.append({"role": "assistant", "content": None})
        msg = out[-1]
        if reasoning:
            msg["reasoning_content"] = (msg.get("reasoning_content") or "") + "".join(reasoning)
            reasoning.clear()
        return msg

    for item in items:
        if isinstance(item, str):
            out.append({"role": "user", "content": item})
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role", "user")
            if role == "assistant":
                text = _content_to_chat(item.get("content"))
                msg = assistant(fresh=True)
                msg["content"] = text if isinstance(text, str) else text_of(text)
            else:
                out.append({"role": role, "content": _content_to_chat(item.get("content"))})
        elif kind == "reasoning":
            parts = (item.get("summary") or []) + (item.get("content") or [])
            reasoning.append(text_of(parts, "\n"))
        elif kind == "function_call":
            msg = assistant(fresh=False)
            msg.setdefault("tool_calls", []).append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {
                        "name": item.get("name", ""),
                        "arguments": item.get("arguments") or "",
                    },
                }
            )
        elif kind == "function_call_output":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id", ""),
                    "content": _output_to_text(item.get("output")),
                }
            )
    return out


def _tools_to_chat(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        if t.get("type") != "function":
            continue  # built-in tools have no chat equivalent
        fn = drop_none(
            {
                "name": t.get("name"),
                "description": t.get("description"),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                "strict": t.get("strict"),
            }
        )
        out.append({"type": "function", "function": fn})
    return out


def _format_to_chat(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (fmt or {}).get("type")
    if kind == "json_schema":
        schema = drop_none(
            {
                "name": fmt.get("name", "response"),
                "schema": fmt.get("schema"),  # type: ignore[union-attr]
                "strict": fmt.get("strict"),
                "description": fmt.get("description"),
            }
        )  # type: ignore[union-attr]
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def responses_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    inp = body.get("input")
    if isinstance(inp, str):
        messages.append({"role": "user", "content": inp})
    else:
        messages += _input_to_chat(inp or [])
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools = _tools_to_chat(body.get("tools") or [])
    if tools:
        out["tools"] = tools
        tc = body.get("tool_choice")
        if tc in ("auto", "required", "none"):
            out["tool_choice"] = tc
        elif isinstance(tc, dict) and tc.get("type") == "function" and tc.get("name"):
            out["tool_choice"] = {"type": "function", "function": {"name": tc["name"]}}
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        out["reasoning_effort"] = effort
    fmt = _format_to_chat((body.get("text") or {}).get("format"))
    if fmt:
        out["response_format"] = fmt
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ---------------------------------------------------------------------------
# requests: chat -> responses


def _part_to_responses(part: Any, role: str) -> dict[str, Any] | None:
    if isinstance(part, str):
        part = {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return {
            "type": "output_text" if role == "assistant" else "input_text",
            "text": part.get("text", ""),
        }
    if kind == "image_url":
        url = part.get("image_url")
        url, detail = (
            (url.get("url", ""), url.get("detail")) if isinstance(url, dict) else (url, None)
        )
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        f = part.get("file") or {}
        return drop_none(
            {
                "type": "input_file",
                "filename": f.get("filename"),
                "file_data": f.get("file_data"),
                "file_id": f.get("file_id"),
            }
        )
    return None


def _message_item(role: str, content: Any) -> dict[str, Any]:
    parts = [content] if isinstance(content, str) else (content or [])
    conv = [p for p in (_part_to_responses(x, role) for x in parts) if p]
    return {"type": "message", "role": role, "content": conv}


def _chat_messages_to_input(
    messages: list[dict[str, Any]],
) -> tuple[str | None, list[dict[str, Any]]]:
    instructions = None
    items: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer") and i == 0:
            instructions = text_of(m.get("content"), "\n")
        elif role == "assistant":
            text = text_of(m.get("content")) or m.get("refusal") or ""
            if text:
                items.append(_message_item("assistant", text))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id", ""),
                        "name": fn.get("name", ""),
                        "arguments": fn.get("arguments") or "",
                    }
                )
        elif role in ("tool", "function"):
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.get("tool_call_id", ""),
                    "output": text_of(m.get("content"), "\n"),
                }
            )
        else:
            items.append(_message_item(role or "user", m.get("content")))
    return instructions, items


def chat_request_to_responses(body: dict[str, Any]) -> dict[str, Any]:
    instructions, items = _chat_messages_to_input(body.get("messages") or [])
    out: dict[str, Any] = {"model": body.get("model"), "input": items}
    if instructions:
        out["instructions"] = instructions
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        out["max_output_tokens"] = max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools = []
    for t in body.get("tools") or []:
        fn = t.get("function") if t.get("type") == "function" else None
        if fn:
            tools.append(
                drop_none(
                    {
                        "type": "function",
                        "name": fn.get("name"),
                        "description": fn.get("description"),
                        "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                        "strict": fn.get("strict"),
                    }
                )
            )
    if tools:
        out["tools"] = tools
        tc = body.get("tool_choice")
        if tc in ("auto", "required", "none"):
            out["tool_choice"] = tc
        elif isinstance(tc, dict) and (tc.get("function") or {}).get("name"):
            out["tool_choice"] = {"type": "function", "name": tc["function"]["name"]}
    if body.get("reasoning_effort"):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema") or {}
        out["text"] = {
            "format": drop_none(
                {
                    "type": "json_schema",
                    "name": js.get("name", "response"),
                    "schema": js.get("schema"),
                    "strict": js.get("strict"),
                    "description": js.get("description"),
                }
            )
        }
    elif rf.get("type") == "json_object":
        out["text"] = {"format": {"type": "json_object"}}
    if body.get("stream"):
        out["stream"] = True
    return out


# ---------------------------------------------------------------------------
# whole responses


def _finish_of_response(body: dict[str, Any], has_calls: bool) -> str:
    if body.get("status") == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def responses_response_to_chat(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    texts, reasoning, calls = [], [], []
    refusal = None
    for item in body.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "refusal":
                    refusal = part.get("refusal")
        elif kind == "reasoning":
            reasoning.append(
                text_of((item.get("summary") or []) + (item.get("content") or []), "\n")
            )
        elif kind == "function_call":
            calls.append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {
                        "name": item.get("name", ""),
                        "arguments": item.get("arguments") or "",
                    },
                }
            )
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if refusal:
        msg["refusal"] = refusal
    if any(reasoning):
        msg["reasoning_content"] = "".join(reasoning)
    if calls:
        msg["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(body.get("id") or common.make_id("")),
        "object": "chat.completion",
        "created": int(body.get("created_at") or common.now()),
        "model": model or body.get("model") or "",
        "choices": [
            {
                "index": 0,
                "message": msg,
                "logprobs": None,
                "finish_reason": _finish_of_response(body, bool(calls)),
            }
        ],
        "usage": usage_to_chat(usage_from_responses(body.get("usage"))),
    }


def response_shell(resp_id: str, model: str, created: int, status: str) -> dict[str, Any]:
    """A Responses ``response`` object with the fields the real API always sends."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def _finish_response(resp: dict[str, Any], finish: str, usage: Usage) -> None:
    if finish in ("length", "content_filter"):
        resp["status"] = "incomplete"
        reason = "max_output_tokens" if finish == "length" else "content_filter"
        resp["incomplete_details"] = {"reason": reason}
    else:
        resp["status"] = "completed"
    resp["usage"] = usage_to_responses(usage)


def _text_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _call_item(
    item_id: str, call_id: str, name: str, args: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": args,
    }


def chat_response_to_responses(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    texts, reasoning, output, finish = [], [], [], None
    calls: list[dict[str, Any]] = []
    for choice in body.get("choices") or []:
        msg = choice.get("message") or {}
        r = reasoning_of(msg)
        if r:
            reasoning.append(r)
        text = text_of(msg.get("content")) or msg.get("refusal") or ""
        if text:
            texts.append(text)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append(
                _call_item(
                    common.make_id("fc_"),
                    call.get("id") or common.make_id("call_"),
                    fn.get("name", ""),
                    fn.get("arguments") or "",
                )
            )
        finish = stronger_finish(finish, choice.get("finish_reason"))
    if reasoning:
        output.append(_reasoning_item(common.make_id("rs_"), "".join(reasoning)))
    if texts:
        output.append(_text_item(common.make_id("msg_"), "".join(texts)))
    output += calls
    resp = response_shell(
        common.make_id("resp_"),
        model or body.get("model") or "",
        int(body.get("created") or common.now()),
        "completed",
    )
    resp["output"] = output
    _finish_response(resp, finish or "stop", usage_from_chat(body.get("usage")))
    return resp


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
        out.append(self._ev("error", code="server_error", message=message, param=None))
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
        tool = op[1]
        if kind == "tool":
            out = self._open("function_call", tool)
            tool.slot = self.open
            return out
        slot = tool.slot
        slot["text"] += op[2]
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
        self.open = {
            "kind": kind,
            "id": item_id,
            "index": index,
            "text": "",
            "call_id": call_id,
            "name": tool.name or "",
        }
        item = _call_item(item_id, call_id, tool.name or "", "", "in_progress")
        return out + [self._ev("response.output_item.added", output_index=index, item=item)]

    def _close_item(self) -> list[Frame]:
        it, self.open = self.open, None
        if it is None:
            return []
        i, text = it["index"], it["text"]
        if it["kind"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            item = _reasoning_item(it["id"], text)
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
            item = _text_item(it["id"], text)
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
        else:
            item = _call_item(it["id"], it["call_id"], it["name"], text)
            out = [
                self._ev(
                    "response.function_call_arguments.done",
                    item_id=it["id"],
                    output_index=i,
                    name=it["name"],
                    arguments=text,
                )
            ]
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
        _finish_response(self.resp, finish, self.reader.usage)
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
            out.append(self._chunk({"content": data.get("delta", "")}))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            out.append(self._chunk({"reasoning_content": data.get("delta", "")}))
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
                "function": {"name": item.get("name", ""), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        elif kind == "response.function_call_arguments.delta":
            out += self._args(int(data.get("output_index") or 0), data.get("delta", ""))
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
            out += self._end(_finish_of_response(resp, bool(self.tools)))
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
        return [(None, chat_error(message))]
