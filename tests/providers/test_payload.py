"""A big JSON request body encoded a slice at a time is the standard encoder's
text, byte for byte, whatever it holds."""

from __future__ import annotations

import asyncio
import json

import pytest

from tokn.providers import payload
from tokn.providers.payload import SLICE, Payload, json_pieces


def wire(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def sent(p: Payload) -> bytes:
    async def read() -> bytes:
        content = p.content()
        if isinstance(content, bytes):
            return content
        return b"".join([piece async for piece in content])
    return asyncio.run(read())


BIG = SLICE + 1234

VALUES = {
    "ascii": {"model": "m", "messages": [{"role": "user", "content": "x" * BIG}]},
    # every escape: quotes, backslashes, control characters, across slice boundaries
    "escapes": {"content": ('"\\\n\t\x00\x1f' * (BIG // 7 + 3))},
    "unicode": {"content": "é\U0001f600" * (BIG // 2 + 5), "name": "ünï"},
    "boundary escape": {"content": "a" * (SLICE - 1) + '"' + "b" * SLICE},
    "nested lists": {"messages": [[1, 2.5, None, True, False, {"k": ["y" * BIG]}], []],
                     "empty": {}, "n": -3},
    "many mid strings": {"parts": ["z" * (SLICE // 3)] * 7},
    "non-string keys": {"big": "q" * BIG, 7: "seven", 2.5: "f", True: "t", None: "n"},
    "top-level list": ["w" * BIG, {"a": 1}],
    "top-level string": "v" * (2 * SLICE + 5),
}


@pytest.mark.parametrize("name", list(VALUES))
def test_pieces_join_to_the_standard_encoding(name):
    value = VALUES[name]
    pieces = list(json_pieces(value))
    assert "".join(pieces).encode() == wire(value)
    # no piece much bigger than a slice (an escaped slice may grow 6-fold)
    assert max(len(p) for p in pieces) <= 6 * SLICE + 16


@pytest.mark.parametrize("name", list(VALUES))
def test_a_big_payload_streams_the_exact_bytes_with_their_length(name):
    value = VALUES[name]
    p = Payload.of(json=value)
    assert p.streamed
    assert p.size == len(wire(value))
    assert sent(p) == wire(value)
    assert sent(p) == wire(value)  # a retry sends it again, whole


def test_a_small_payload_is_encoded_once_whole():
    value = {"model": "m", "messages": [{"role": "user", "content": "hi é"}]}
    p = Payload.of(json=value)
    assert not p.streamed and p.whole == wire(value)


def test_a_long_string_is_never_escaped_whole(monkeypatch):
    # the encoder only ever sees a slice of the long string
    seen: list[int] = []
    real = payload._ENCODER

    class Spy:
        def encode(self, value: object) -> str:
            if isinstance(value, str):
                seen.append(len(value))
            return real.encode(value)

    monkeypatch.setattr(payload, "_ENCODER", Spy())
    value = {"content": "x" * (5 * SLICE)}
    assert "".join(json_pieces(value)).encode() == wire(value)
    assert seen and max(seen) <= SLICE


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_in_a_big_body_is_refused_before_anything_is_sent(bad):
    with pytest.raises(ValueError):
        Payload.of(json={"content": "x" * BIG, "t": bad})


def test_a_lone_surrogate_in_a_big_body_is_refused_before_anything_is_sent():
    with pytest.raises(UnicodeEncodeError):
        Payload.of(json={"content": "x" * BIG + "\ud800"})
