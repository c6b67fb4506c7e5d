"""Decoder for the AWS event-stream binary framing Kiro answers with.

``generateAssistantResponse`` streams ``application/vnd.amazon.eventstream``:
a sequence of self-delimiting frames ::

    total length   u32 BE   (whole frame, prelude and trailing CRC included)
    headers length u32 BE
    prelude CRC    u32 BE   CRC32 of the 8 bytes above
    headers        ``headers length`` bytes
    payload        the rest
    message CRC    u32 BE   CRC32 of everything before it

A header is ``name length (u8) | name (UTF-8) | type (u8) | value`` where the
value depends on the type: 0 true, 1 false (no value bytes), 2 byte (i8),
3 short (i16), 4 int (i32), 5 long (i64), 6 bytes (u16 length + data),
7 string (u16 length + UTF-8), 8 timestamp (i64 milliseconds since the epoch),
9 uuid (16 bytes).  Integers are big-endian and signed.

:class:`EventStreamDecoder` is incremental: feed it network chunks split at
any byte offset and it hands back each complete :class:`Message`.  Both CRCs
are checked and lengths are bounded, so corrupt input raises
:class:`EventStreamError` instead of hanging or buffering without end.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PRELUDE_LEN = 12
"""Total length, headers length and prelude CRC."""
MIN_FRAME_LEN = 16
"""Prelude plus message CRC: a frame with no headers and no payload."""
MAX_FRAME_LEN = 16 * 1024 * 1024
"""Upper bound on one frame; AWS documents 16 MiB (payload limit is lower)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# header value types
BOOL_TRUE = 0
BOOL_FALSE = 1
BYTE = 2
SHORT = 3
INTEGER = 4
LONG = 5
BYTE_ARRAY = 6
STRING = 7
TIMESTAMP = 8
UUID = 9

_FIXED = {BYTE: ">b", SHORT: ">h", INTEGER: ">i", LONG: ">q"}


class EventStreamError(ValueError):
    """The byte stream is not valid AWS event-stream framing."""


@dataclass
class Message:
    """One decoded frame: its headers (name -> typed value) and raw payload."""

    headers: dict[str, object] = field(default_factory=dict)
    payload: bytes = b""

    def _header_str(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    @property
    def message_type(self) -> str | None:
        """``:message-type``: ``event``, ``exception`` or ``error``."""
        return self._header_str(":message-type")

    @property
    def event_type(self) -> str | None:
        """``:event-type``, e.g. ``assistantResponseEvent``."""
        return self._header_str(":event-type")

    @property
    def exception_type(self) -> str | None:
        """``:exception-type`` (exceptions) or ``:error-code`` (errors)."""
        return self._header_str(":exception-type") or self._header_str(":error-code")

    @property
    def content_type(self) -> str | None:
        return self._header_str(":content-type")

    @property
    def is_error(self) -> bool:
        return self.message_type in ("exception", "error")

    def json(self) -> Any:
        """The payload parsed as JSON (an empty payload gives ``{}``).

        Raises :class:`ValueError` (``json.JSONDecodeError``) on invalid JSON.
        """
        if not self.payload.strip():
            return {}
        return json.loads(self.payload.decode("utf-8"))


def _parse_headers(data: bytes) -> dict[str, object]:
    headers: dict[str, object] = {}
    pos = 0
    end = len(data)

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > end:
            raise EventStreamError(
                f"event-stream header {what} runs past the header block "
                f"(needs {n} bytes at offset {pos}, block is {end} bytes)")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    while pos < end:
        name_len = take(1, "name length")[0]
        if name_len == 0:
            raise EventStreamError("event-stream header with an empty name")
        raw_name = take(name_len, "name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventStreamError("event-stream header name is not UTF-8") from exc
        kind = take(1, "type")[0]
        value: object
        if kind == BOOL_TRUE:
            value = True
        elif kind == BOOL_FALSE:
            value = False
        elif kind in _FIXED:
            fmt = _FIXED[kind]
            (value,) = struct.unpack(fmt, take(struct.calcsize(fmt), "value"))
        elif kind in (BYTE_ARRAY, STRING):
            (length,) = struct.unpack(">H", take(2, "value length"))
            raw = take(length, "value")
            if kind == BYTE_ARRAY:
                value = bytes(raw)
            else:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise EventStreamError(
                        f"event-stream header {name!r} string value is not UTF-8") from exc
        elif kind == TIMESTAMP:
            (millis,) = struct.unpack(">q", take(8, "value"))
            try:
                value = _EPOCH + timedelta(milliseconds=millis)
            except OverflowError as exc:
                raise EventStreamError(
                    f"event-stream header {name!r} timestamp {millis} is out of range") from exc
        elif kind == UUID:
            value = uuid.UUID(bytes=bytes(take(16, "value")))
        else:
            raise EventStreamError(
                f"event-stream header {name!r} has unknown value type {kind}")
        headers[name] = value
    return headers


def decode_frame(frame: bytes) -> Message:
    """Decode exactly one complete frame (CRCs and lengths checked)."""
    if len(frame) < MIN_FRAME_LEN:
        raise EventStreamError(
            f"event-stream frame is {len(frame)} bytes, "
            f"shorter than the {MIN_FRAME_LEN}-byte minimum")
    total, headers_len, prelude_crc = struct.unpack_from(">III", frame, 0)
    _check_prelude(frame[:PRELUDE_LEN], total, headers_len, prelude_crc)
    if total != len(frame):
        raise EventStreamError(
            f"event-stream frame says it is {total} bytes but {len(frame)} were given")
    (message_crc,) = struct.unpack_from(">I", frame, total - 4)
    actual = zlib.crc32(frame[:total - 4])
    if actual != message_crc:
        raise EventStreamError(
            f"event-stream message CRC mismatch (frame says {message_crc:#010x}, "
            f"computed {actual:#010x}): the stream is corrupt")
    headers = _parse_headers(bytes(frame[PRELUDE_LEN:PRELUDE_LEN + headers_len]))
    payload = bytes(frame[PRELUDE_LEN + headers_len:total - 4])
    return Message(headers=headers, payload=payload)


def _check_prelude(prelude: bytes, total: int, headers_len: int, prelude_crc: int,
                   max_frame: int = MAX_FRAME_LEN) -> None:
    actual = zlib.crc32(prelude[:8])
    if actual != prelude_crc:
        raise EventStreamError(
            f"event-stream prelude CRC mismatch (frame says {prelude_crc:#010x}, "
            f"computed {actual:#010x}): not an event stream, or the stream is corrupt")
    if total < MIN_FRAME_LEN:
        raise EventStreamError(
            f"event-stream frame length {total} is below the {MIN_FRAME_LEN}-byte minimum")
    if total > max_frame:
        raise EventStreamError(
            f"event-stream frame length {total} exceeds the {max_frame}-byte limit")
    if headers_len > total - MIN_FRAME_LEN:
        raise EventStreamError(
            f"event-stream headers length {headers_len} does not fit in a {total}-byte frame")


class EventStreamDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole messages.

    After an :class:`EventStreamError` the decoder is poisoned: every later
    ``feed``/``close`` raises again (there is no way to resynchronise a
    length-prefixed stream safely).
    """

    def __init__(self, *, max_frame: int = MAX_FRAME_LEN) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame
        self._need: int | None = None  # total length of the frame being read, once known
        self._error: EventStreamError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise EventStreamError(f"decoder already failed: {self._error}")
        if data:
            self._buf += data
        out: list[Message] = []
        try:
            while True:
                if self._need is None:
                    if len(self._buf) < PRELUDE_LEN:
                        break
                    total, headers_len, prelude_crc = struct.unpack_from(">III", self._buf, 0)
                    _check_prelude(bytes(self._buf[:PRELUDE_LEN]), total, headers_len,
                                   prelude_crc, self._max_frame)
                    self._need = total
                if len(self._buf) < self._need:
                    break
                frame = bytes(self._buf[:self._need])
                del self._buf[:self._need]
                self._need = None
                out.append(decode_frame(frame))
        except EventStreamError as exc:
            self._error = exc
            raise
        return out

    def close(self) -> None:
        """End of input: raise if a partial frame is left over."""
        if self._error is not None:
            raise EventStreamError(f"decoder already failed: {self._error}")
        if self._buf:
            want = f" of {self._need}" if self._need is not None else ""
            raise EventStreamError(
                f"event stream ended inside a frame ({len(self._buf)}{want} bytes received)")


def decode_all(data: bytes) -> list[Message]:
    """Decode a complete byte string of frames (raises on trailing garbage)."""
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    decoder.close()
    return messages
