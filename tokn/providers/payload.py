"""A request body as it goes to an upstream: whole when small, a slice at a
time when big, so that a big body is never held a second time whole.

A JSON body is what httpx's ``json=`` sends (compact, UTF-8).  Encoded in one
go, a body whose strings total 50 MB costs 100 MB more at once: the C
encoder's escaped copy of each string and the joined text (then its UTF-8
bytes).  So a JSON value whose strings total more than :data:`SLICE`
characters is encoded twice over as it streams (once to know its length,
once to send it), a slice at a time: a long string is escaped a slice at a
time too, so sending holds the value and about one slice, never an escaped
copy of its biggest string; every other body is encoded once, the fast way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

SLICE = 1 << 20  # characters or bytes of a large request body sent at a time

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def text_over(value: Any, limit: int) -> bool:
    """Whether the strings of JSON ``value`` (keys aside) total more than
    ``limit`` characters; stops counting once they do."""
    if isinstance(value, str):
        return len(value) > limit
    total, stack = 0, [value] if isinstance(value, dict | list) else []
    while stack:
        item = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, str):
                total += len(child)
                if total > limit:
                    return True
            elif isinstance(child, dict | list):
                stack.append(child)
    return False


def _key(key: Any) -> str:
    """A JSON object key as the standard encoder writes it (a string key
    quoted; ``1``, ``True``, ``None``... as their JSON text, quoted)."""
    if isinstance(key, str):
        return _ENCODER.encode(key)
    return _ENCODER.encode({key: None})[1:-6]


def _parts(value: Any) -> Iterator[str]:
    """``value``'s JSON text in parts: a container holding more than
    :data:`SLICE` characters of strings walked, a string longer than that
    escaped a slice at a time (escapes are per character: a slice boundary
    cannot split one), anything else encoded at once."""
    if isinstance(value, str) and len(value) > SLICE:
        yield '"'
        for start in range(0, len(value), SLICE):
            yield _ENCODER.encode(value[start:start + SLICE])[1:-1]
        yield '"'
    elif isinstance(value, dict) and text_over(value, SLICE):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + _key(key) + ":"
            yield from _parts(item)
        yield "}"
    elif isinstance(value, list) and text_over(value, SLICE):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _parts(item)
        yield "]"
    else:
        yield _ENCODER.encode(value)


def json_pieces(value: Any) -> Iterator[str]:
    """``value``'s JSON text (what :data:`_ENCODER` writes) in pieces of about
    :data:`SLICE` characters, never more than about a slice of it at a time."""
    run: list[str] = []
    length = 0
    for part in _parts(value):
        run.append(part)
        length += len(part)
        if length >= SLICE:
            yield "".join(run)
            run, length = [], 0
    if run:
        yield "".join(run)


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@dataclass(frozen=True)
class Payload:
    """A request body: ``whole`` bytes, or a big JSON ``value`` streamed
    (:meth:`stream`, a fresh iterator each time: a retried call sends it
    again) with its length ``size``."""

    whole: bytes | None = None
    value: Any = None
    size: int = 0

    @classmethod
    def of(cls, *, json: Any = None, content: bytes | None = None) -> Payload:
        """``json`` encoded (a :class:`ValueError` for NaN, a
        :class:`UnicodeEncodeError` for a lone surrogate: before anything is
        sent), or ``content`` as it is."""
        if json is None:
            return cls(whole=content, size=len(content or b""))
        if not text_over(json, SLICE):
            whole = _ENCODER.encode(json).encode("utf-8")
            return cls(whole=whole, size=len(whole))
        return cls(value=json, size=sum(utf8_size(piece) for piece in json_pieces(json)))

    @property
    def streamed(self) -> bool:
        return self.size > SLICE

    def content(self) -> bytes | AsyncIterator[bytes] | None:
        """What httpx sends: the bytes, or a fresh stream of slices."""
        return self._slices() if self.streamed else self.whole

    async def _slices(self) -> AsyncIterator[bytes]:
        if self.whole is not None:
            view = memoryview(self.whole)
            for start in range(0, len(view), SLICE):
                yield bytes(view[start:start + SLICE])
            return
        for piece in json_pieces(self.value):
            yield piece.encode("utf-8")
