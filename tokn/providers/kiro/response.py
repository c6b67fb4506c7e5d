"""Kiro's event stream -> OpenAI ``chat.completion.chunk`` dicts, and its
``getUsageLimits`` answer (pure, no I/O).

* **Token counts.**  Kiro returns none.  Output tokens are estimated from the
  streamed text (tokn's shared estimate,
  :func:`tokn.convert.tokens.text_tokens`); input tokens come from
  ``contextUsageEvent`` percentage x the model's context window when known,
  else the caller's estimate.  The usage chunk is marked
  ``"estimated": true``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

from tokn.auth.kiro import parse_expiry
from tokn.convert.tokens import text_tokens

from .errors import KiroError, short_kind
from .eventstream import Message
from .request import ToolNameMap

log = logging.getLogger(__name__)

# --- tokens -----------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Rough token count: ~4 characters per token (1 per CJK character)."""
    if not text:
        return 0
    wide = sum(1 for ch in text if ord(ch) >= 0x2E80)
    return math.ceil((len(text) - wide) / 4) + wide


# --- stream -----------------------------------------------------------------


class _ToolCall:
    __slots__ = ("index", "id", "name", "args", "pending_empty", "stopped")

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.args = ""
        self.pending_empty = False
        self.stopped = False


class KiroToChatStream:
    """Kiro event-stream messages -> OpenAI ``chat.completion.chunk`` dicts.

    ``feed`` each decoded :class:`Message`; call ``finish`` once at the end
    for the finish-reason chunk and a usage chunk (``choices: []``, usage
    marked ``"estimated": true``).  Raises :class:`KiroError` for exceptions
    in the stream, except ``ContentLengthExceededException``, which ends the
    answer with ``finish_reason: "length"``.
    """

    def __init__(
        self,
        model: str,
        names: ToolNameMap | None = None,
        *,
        input_tokens_estimate: int,
        context_window: int | None = None,
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.names = names or ToolNameMap()
        self.input_tokens_estimate = max(0, int(input_tokens_estimate or 0))
        self.context_window = context_window
        self.id = completion_id or f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time()) if created is None else created
        self.credits = 0.0
        self.credit_unit: str | None = None
        self.context_usage_percentage: float | None = None
        self.truncated = False
        self.text = ""
        self._last_content: str | None = None
        self._calls: dict[str, _ToolCall] = {}
        self._role_sent = False
        self._finished = False

    # chunk helpers
    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _args_chunk(self, call: _ToolCall, fragment: str) -> dict[str, Any]:
        call.args += fragment
        return self._chunk(
            {"tool_calls": [{"index": call.index, "function": {"arguments": fragment}}]}
        )

    def feed(self, msg: Message) -> list[dict[str, Any]]:
        if self._finished:
            return []
        if msg.is_error:
            return self._exception(msg)
        try:
            data = msg.json()
        except ValueError:
            log.debug("kiro: ignoring non-JSON %s event", msg.event_type)
            return []
        if not isinstance(data, dict):
            return []
        if "__type" in data and msg.event_type is None:
            return self._raise_or_truncate(str(data["__type"]), str(data.get("message", "")))
        kind = msg.event_type
        if kind == "assistantResponseEvent" or (
            kind is None and "content" in data and "toolUseId" not in data
        ):
            return self._content(data.get("content"))
        if kind == "toolUseEvent" or (kind is None and "toolUseId" in data):
            return self._tool_use(data)
        if kind == "meteringEvent":
            usage = data.get("usage")
            if isinstance(usage, (int, float)) and not isinstance(usage, bool):
                self.credits += float(usage)
            if isinstance(data.get("unit"), str):
                self.credit_unit = data["unit"]
            return []
        if kind == "contextUsageEvent":
            pct = data.get("contextUsagePercentage")
            if isinstance(pct, (int, float)) and not isinstance(pct, bool):
                self.context_usage_percentage = float(pct)
            return []
        return []  # followupPromptEvent, codeReferenceEvent, ... carry nothing we map

    def _content(self, content: Any) -> list[dict[str, Any]]:
        if not isinstance(content, str) or not content:
            return []
        if content == self._last_content:
            return []  # Kiro sometimes repeats a chunk verbatim
        self._last_content = content
        self.text += content
        return [self._chunk({"content": content})]

    def _tool_use(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        call_id = data.get("toolUseId")
        name = data.get("name")
        if not isinstance(call_id, str) or not call_id:
            # no id: continue the latest call if there is one
            if not self._calls:
                return []
            call_id = next(reversed(self._calls))
        call = self._calls.get(call_id)
        if call is None:
            call = _ToolCall(
                len(self._calls),
                call_id,
                self.names.from_kiro(name) if isinstance(name, str) else "",
            )
            self._calls[call_id] = call
            out.append(
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": call.index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
        if call.stopped:
            return out
        fragment = data.get("input")
        if isinstance(fragment, dict):
            fragment = json.dumps(fragment, ensure_ascii=False) if fragment else "{}"
        if isinstance(fragment, str) and fragment:
            if not call.args and fragment.strip() == "{}":
                call.pending_empty = True  # an initial {} counts as no input yet
            elif call.args and fragment == call.args and _is_json(call.args):
                pass  # the complete input repeated at the end
            else:
                call.pending_empty = False
                out.append(self._args_chunk(call, fragment))
        if data.get("stop") is True:
            call.stopped = True
            out += self._close_call(call)
        return out

    def _close_call(self, call: _ToolCall) -> list[dict[str, Any]]:
        if not call.args:
            return [self._args_chunk(call, "{}")]
        return []

    def _exception(self, msg: Message) -> list[dict[str, Any]]:
        kind = msg.exception_type
        message = ""
        try:
            data = msg.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            kind = kind or data.get("__type") or data.get("code")
            message = str(data.get("message") or data.get("Message") or "")
        elif msg.payload:
            message = msg.payload.decode("utf-8", "replace")
        if not message:
            header = msg.headers.get(":error-message")
            message = str(header) if header else ""
        return self._raise_or_truncate(str(kind or "UnknownError"), message)

    def _raise_or_truncate(self, kind: str, message: str) -> list[dict[str, Any]]:
        short = short_kind(kind)
        if short == "ContentLengthExceededException" or "CONTENT_LENGTH_EXCEEDS" in message:
            self.truncated = True
            return []
        raise KiroError(short, message)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.args or "{}"},
            }
            for c in self._calls.values()
        ]

    def usage(self) -> dict[str, Any]:
        """Estimated usage (``estimated: true``)."""
        parts = [self.text] + [c.name + c.args for c in self._calls.values()]
        completion = sum(text_tokens(p) for p in parts if p)
        prompt = self.input_tokens_estimate
        if self.context_usage_percentage is not None and self.context_window:
            total = round(self.context_usage_percentage / 100 * self.context_window)
            if total > completion:
                prompt = total - completion
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "estimated": True,
        }

    @property
    def finish_reason(self) -> str:
        if self.truncated:
            return "length"
        return "tool_calls" if self._calls else "stop"

    def finish(self) -> list[dict[str, Any]]:
        if self._finished:
            return []
        out: list[dict[str, Any]] = []
        for call in self._calls.values():
            if not call.stopped:
                call.stopped = True
                out += self._close_call(call)
        out.append(self._chunk({}, self.finish_reason))
        self._finished = True
        out.append(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage(),
            }
        )
        return out


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def chunks_to_completion(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fold ``chat.completion.chunk`` dicts into one ``chat.completion``."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    head: dict[str, Any] = {}
    for chunk in chunks:
        head = head or chunk
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(
                    tc["index"],
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    result: dict[str, Any] = {
        "id": head.get("id", f"chatcmpl-{uuid.uuid4().hex}"),
        "object": "chat.completion",
        "created": head.get("created", int(time.time())),
        "model": head.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or "stop",
            }
        ],
    }
    if usage is not None:
        result["usage"] = copy.deepcopy(usage)
    return result


def collect_response(
    msgs: Iterable[Message],
    model: str = "kiro",
    names: ToolNameMap | None = None,
    *,
    input_tokens_estimate: int = 0,
    context_window: int | None = None,
) -> dict[str, Any]:
    """Non-streaming ``chat.completion`` built by running :class:`KiroToChatStream`."""
    stream = KiroToChatStream(
        model, names, input_tokens_estimate=input_tokens_estimate, context_window=context_window
    )
    chunks: list[dict[str, Any]] = []
    for msg in msgs:
        chunks += stream.feed(msg)
    chunks += stream.finish()
    return chunks_to_completion(chunks)


def parse_usage_limits(data: Any) -> dict[str, Any]:
    """Plan, email, credits (``quotas``) and their reset from a ``getUsageLimits``
    answer."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    sub = data.get("subscriptionInfo") if isinstance(data.get("subscriptionInfo"),
                                                     dict) else {}
    if sub.get("subscriptionTitle") or sub.get("type"):
        out["plan"] = sub.get("subscriptionTitle") or sub.get("type")
    user = data.get("userInfo") if isinstance(data.get("userInfo"), dict) else {}
    if user.get("email"):
        out["email"] = user["email"]
    quotas: dict[str, Any] = {}
    for item in data.get("usageBreakdownList") or []:
        if not isinstance(item, dict):
            continue
        used = item.get("currentUsageWithPrecision", item.get("currentUsage"))
        limit = item.get("usageLimitWithPrecision", item.get("usageLimit"))
        for extra in [item.get("freeTrialInfo"), *(item.get("bonuses") or [])]:
            if isinstance(extra, dict) and extra.get("freeTrialStatus", "ACTIVE") == \
                    "ACTIVE":
                used = (used or 0) + (extra.get("currentUsageWithPrecision")
                                      or extra.get("currentUsage") or 0)
                limit = (limit or 0) + (extra.get("usageLimitWithPrecision")
                                        or extra.get("usageLimit") or 0)
        name = str(item.get("displayName") or item.get("resourceType") or "credits").lower()
        entry: dict[str, Any] = {"used": used, "entitlement": limit}
        if isinstance(used, (int, float)) and isinstance(limit, (int, float)):
            entry["remaining"] = round(limit - used, 2)
            if limit:
                entry["percent_remaining"] = max(0.0, (limit - used) / limit * 100)
        quotas[name] = entry
    if quotas:
        out["quotas"] = quotas
    reset = parse_expiry(data.get("nextDateReset"))
    if reset:
        out["credits_reset_expires_at"] = reset
    return out
