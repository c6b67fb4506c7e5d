"""Shared pieces of the Gemini converters: field access, routing keys, tool-call ids."""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
from functools import lru_cache
from typing import Any

Body = dict[str, Any]
SYNTHETIC_ID_PREFIX = "gcall_"
_SIG = "__sig_"
_CAMEL = re.compile(r"(?<!^)([A-Z])")


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a camelCase proto field, or under its snake_case spelling."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def split_target(body: Body) -> tuple[str | None, bool, Body]:
    """``(model, stream, body)`` with the routing keys taken out of a Gemini body."""
    rest = {k: v for k, v in body.items() if k not in ("model", "stream")}
    model = body.get("model")
    return (model_id(model) if isinstance(model, str) else None), bool(body.get("stream")), rest


def model_id(name: str | None) -> str:
    """``"models/gemini-2.5-flash"`` -> ``"gemini-2.5-flash"`` (other names unchanged)."""
    return (name or "").removeprefix("models/")


# --- tool-call ids ------------------------------------------------------------


def encode_call_id(base: str, signature: str | None = None) -> str:
    """A chat tool-call id for a Gemini call id (or synthetic id) and its signature."""
    if not signature:
        return base
    enc = base64.urlsafe_b64encode(signature.encode("utf-8")).decode("ascii").rstrip("=")
    return f"{base}{_SIG}{enc}"


def decode_call_id(chat_id: str | None) -> tuple[str | None, str | None]:
    """``(gemini id or None for synthetic ids, thought signature or None)``."""
    chat_id = chat_id or ""
    base, sep, enc = chat_id.partition(_SIG)
    signature = None
    if sep:
        try:
            signature = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            base, signature = chat_id, None
    if not base or base.startswith(SYNTHETIC_ID_PREFIX):
        return None, signature
    return base, signature



def guess_mime(uri: str, default: str = "application/octet-stream") -> str:
    return mimetypes.guess_type(uri.split("?", 1)[0])[0] or default


def is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


GEN_TO_CHAT = (
    ("temperature", "temperature"), ("topP", "top_p"), ("maxOutputTokens", "max_tokens"),
    ("candidateCount", "n"), ("seed", "seed"), ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"), ("responseLogprobs", "logprobs"),
    ("logprobs", "top_logprobs"),
)
