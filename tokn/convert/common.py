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


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_from_chat(u: dict[str, Any] | None) -> Usage:
    """Chat usage in the shapes upstreams send it: ``prompt_tokens`` includes
    cache reads (``prompt_tokens_details.cached_tokens``: OpenAI, Copilot,
    Z.ai, OpenRouter; ``prompt_cache_hit_tokens``: DeepSeek) and cache writes
    (``prompt_tokens_details.cache_write_tokens``: OpenRouter)."""
    u = u if isinstance(u, dict) else {}
    details = u.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _count(details.get("cached_tokens")) or _count(u.get("prompt_cache_hit_tokens"))
    written = _count(details.get("cache_write_tokens"))
    out_details = u.get("completion_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    prompt = _count(u.get("prompt_tokens"))
    return Usage(
        input_tokens=max(prompt - cached - written, 0),
        output_tokens=_count(u.get("completion_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def usage_to_chat(u: Usage) -> dict[str, Any]:
    details: dict[str, Any] = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        details["cache_write_tokens"] = u.cache_write_tokens  # OpenRouter's field
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def usage_from_anthropic(u: dict[str, Any] | None, into: Usage | None = None) -> Usage:
    """Anthropic usage; with ``into``, fields present in ``u`` overwrite (stream updates)."""
    out = into if into is not None else Usage()
    u = u if isinstance(u, dict) else {}
    for key, attr in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                      ("cache_read_input_tokens", "cache_read_tokens"),
                      ("cache_creation_input_tokens", "cache_write_tokens")):
        if u.get(key) is not None:
            setattr(out, attr, _count(u[key]))
    return out


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def usage_from_responses(u: dict[str, Any] | None) -> Usage:
    u = u if isinstance(u, dict) else {}
    details = u.get("input_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out_details = u.get("output_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return Usage(
        input_tokens=max(_count(u.get("input_tokens")) - cached, 0),
        output_tokens=_count(u.get("output_tokens")),
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
