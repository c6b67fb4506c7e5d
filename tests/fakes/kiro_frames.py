"""Encoder of AWS event-stream frames, for the fake Kiro server and tests.

The inverse of :mod:`tokn.providers.kiro.eventstream`.  Header values are
typed from their Python type (``str`` -> string, ``bool`` -> bool,
``bytes`` -> byte array, ``int`` -> long, ``uuid.UUID`` -> uuid,
``datetime`` -> timestamp); pass ``Typed(type_code, value)`` to pick a type
explicitly (e.g. byte/short/int).
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BOOL_TRUE, BOOL_FALSE, BYTE, SHORT, INTEGER, LONG, BYTE_ARRAY, STRING, TIMESTAMP, UUID = range(10)

_FIXED = {BYTE: ">b", SHORT: ">h", INTEGER: ">i", LONG: ">q"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Typed:
    """A header value with an explicit event-stream type code."""

    kind: int
    value: Any = None


def _encode_value(value: Any) -> bytes:
    if not isinstance(value, Typed):
        if isinstance(value, bool):
            value = Typed(BOOL_TRUE if value else BOOL_FALSE)
        elif isinstance(value, str):
            value = Typed(STRING, value)
        elif isinstance(value, (bytes, bytearray)):
            value = Typed(BYTE_ARRAY, bytes(value))
        elif isinstance(value, int):
            value = Typed(LONG, value)
        elif isinstance(value, uuid.UUID):
            value = Typed(UUID, value)
        elif isinstance(value, datetime):
            value = Typed(TIMESTAMP, value)
        else:
            raise TypeError(f"cannot encode header value {value!r}")
    kind, raw = value.kind, value.value
    if kind in (BOOL_TRUE, BOOL_FALSE):
        return bytes([kind])
    if kind in _FIXED:
        return bytes([kind]) + struct.pack(_FIXED[kind], raw)
    if kind in (BYTE_ARRAY, STRING):
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        return bytes([kind]) + struct.pack(">H", len(data)) + data
    if kind == TIMESTAMP:
        if isinstance(raw, datetime):
            delta = raw - _EPOCH
            raw = (delta.days * 86_400_000 + delta.seconds * 1000
                   + delta.microseconds // 1000)
        return bytes([kind]) + struct.pack(">q", raw)
    if kind == UUID:
        return bytes([kind]) + (raw.bytes if isinstance(raw, uuid.UUID) else bytes(raw))
    # unknown type codes are written bare, for negative tests
    return bytes([kind]) + (bytes(raw) if raw is not None else b"")


def encode_headers(headers: dict[str, Any]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        out += bytes([len(raw_name)]) + raw_name + _encode_value(value)
    return bytes(out)


def encode_frame(headers: dict[str, Any], payload: bytes) -> bytes:
    """One complete frame with correct lengths and CRCs."""
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` frame as Kiro sends it (JSON payload)."""
    return encode_frame(
        {":message-type": "event", ":event-type": event_type,
         ":content-type": "application/json"},
        json.dumps(payload).encode("utf-8"),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """An ``exception`` frame (``:exception-type`` header, ``{"message"}`` body)."""
    return encode_frame(
        {":message-type": "exception", ":exception-type": exception_type,
         ":content-type": "application/json"},
        json.dumps({"message": message}).encode("utf-8"),
    )


def error_frame(error_code: str, message: str) -> bytes:
    """An ``error`` frame (``:error-code`` / ``:error-message`` headers)."""
    return encode_frame(
        {":message-type": "error", ":error-code": error_code, ":error-message": message},
        b"",
    )


# Convenience builders for a typical Kiro answer -----------------------------

def text_events(*chunks: str) -> bytes:
    return b"".join(event_frame("assistantResponseEvent", {"content": c}) for c in chunks)


def tool_events(tool_use_id: str, name: str, *fragments: str) -> bytes:
    """A tool call streamed as ``toolUseEvent`` fragments ending with ``stop``."""
    frames = [event_frame("toolUseEvent", {"name": name, "toolUseId": tool_use_id, "input": f})
              for f in fragments]
    frames.append(event_frame("toolUseEvent", {"name": name, "toolUseId": tool_use_id,
                                               "stop": True}))
    return b"".join(frames)


def metering_event(usage: float, unit: str = "credit") -> bytes:
    return event_frame("meteringEvent", {"unit": unit, "unitPlural": unit + "s", "usage": usage})


def context_usage_event(percentage: float) -> bytes:
    return event_frame("contextUsageEvent", {"contextUsagePercentage": percentage})
