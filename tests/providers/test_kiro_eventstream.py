"""AWS event-stream decoding (Kiro's response framing)."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.kiro_frames import (
    BYTE,
    INTEGER,
    SHORT,
    Typed,
    encode_frame,
    error_frame,
    event_frame,
    exception_frame,
)
from tokn.providers.kiro.eventstream import (
    MAX_FRAME_LEN,
    EventStreamDecoder,
    EventStreamError,
    Message,
    decode_all,
    decode_frame,
)


def _frame(total: int, headers_len: int, rest: bytes = b"", *,
           good_prelude_crc: bool = True) -> bytes:
    prelude = struct.pack(">II", total, headers_len)
    crc = zlib.crc32(prelude) if good_prelude_crc else zlib.crc32(prelude) ^ 1
    return prelude + struct.pack(">I", crc) + rest


# --- known vectors ----------------------------------------------------------

def test_empty_frame_known_bytes():
    # total 16, headers 0: prelude CRC 0x05c248eb, message CRC 0x7d98c8ff (AWS test vector).
    raw = bytes.fromhex("00000010000000000" "5c248eb7d98c8ff")
    assert encode_frame({}, b"") == raw
    assert decode_frame(raw) == Message(headers={}, payload=b"")


def test_event_frame_round_trip():
    raw = event_frame("assistantResponseEvent", {"content": "héllo"})
    (msg,) = decode_all(raw)
    assert msg.message_type == "event"
    assert msg.event_type == "assistantResponseEvent"
    assert msg.content_type == "application/json"
    assert msg.exception_type is None
    assert not msg.is_error
    assert msg.json() == {"content": "héllo"}


def test_exception_and_error_frames():
    (exc,) = decode_all(exception_frame("ThrottlingException", "slow down"))
    assert exc.message_type == "exception"
    assert exc.exception_type == "ThrottlingException"
    assert exc.is_error
    assert exc.json() == {"message": "slow down"}
    (err,) = decode_all(error_frame("InternalError", "boom"))
    assert err.message_type == "error"
    assert err.exception_type == "InternalError"
    assert err.headers[":error-message"] == "boom"
    assert err.json() == {}


def test_all_header_types():
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    headers = {
        "t": True,
        "f": False,
        "b": Typed(BYTE, -7),
        "s": Typed(SHORT, -300),
        "i": Typed(INTEGER, 70000),
        "l": 2**40,
        "bytes": b"\x00\xffraw",
        "str": "ünïcode",
        "ts": when,
        "id": ident,
    }
    raw = encode_frame(headers, b"payload")
    msg = decode_frame(raw)
    assert msg.payload == b"payload"
    assert msg.headers == {
        "t": True, "f": False, "b": -7, "s": -300, "i": 70000, "l": 2**40,
        "bytes": b"\x00\xffraw", "str": "ünïcode", "ts": when, "id": ident,
    }
    # byte-level check of one header encoding: name len, name, type 7, u16 len, value
    assert encode_frame({"k": "v"}, b"")[12:12 + 6] == b"\x01k\x07\x00\x01v"


def test_unknown_header_type_rejected():
    raw = encode_frame({"x": Typed(10, b"")}, b"")
    with pytest.raises(EventStreamError, match="unknown value type 10"):
        decode_frame(raw)


def test_header_overrunning_block_rejected():
    # a string header claiming 200 bytes inside a tiny header block
    headers = b"\x01k\x07\x00\xc8ab"
    total = 12 + len(headers) + 4
    body = _frame(total, len(headers), headers)
    raw = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(EventStreamError, match="runs past the header block"):
        decode_frame(raw)


def test_empty_header_name_rejected():
    headers = b"\x00\x00"
    body = _frame(12 + 2 + 4, 2, headers)
    raw = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(EventStreamError, match="empty name"):
        decode_frame(raw)


# --- corruption -------------------------------------------------------------

def test_prelude_crc_mismatch():
    raw = bytearray(event_frame("assistantResponseEvent", {"content": "x"}))
    raw[8] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(raw))


def test_prelude_crc_checked_before_waiting_for_body():
    # a corrupted length must not make the decoder wait for gigabytes
    raw = bytearray(event_frame("assistantResponseEvent", {"content": "x"}))
    raw[0] = 0x7F
    dec = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="prelude CRC"):
        dec.feed(bytes(raw[:12]))


def test_message_crc_mismatch():
    raw = bytearray(event_frame("assistantResponseEvent", {"content": "x"}))
    raw[-6] ^= 0x01  # flip a payload bit
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(raw))
    raw = bytearray(event_frame("assistantResponseEvent", {"content": "x"}))
    raw[-1] ^= 0x01  # flip the CRC itself
    with pytest.raises(EventStreamError, match="message CRC"):
        decode_all(bytes(raw))


@pytest.mark.parametrize("total, headers_len, match", [
    (0, 0, "below"),
    (15, 0, "below"),
    (MAX_FRAME_LEN + 1, 0, "exceeds"),
    (0xFFFFFFFF, 0, "exceeds"),
    (32, 17, "does not fit"),
])
def test_garbage_lengths(total, headers_len, match):
    with pytest.raises(EventStreamError, match=match):
        EventStreamDecoder().feed(_frame(total, headers_len) + b"\x00" * 64)


def test_not_an_event_stream():
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(b'{"message": "Improperly formed request."}')


def test_decoder_poisoned_after_error():
    dec = EventStreamDecoder()
    with pytest.raises(EventStreamError):
        dec.feed(b"\x00" * 12)
    with pytest.raises(EventStreamError, match="already failed"):
        dec.feed(event_frame("x", {}))
    with pytest.raises(EventStreamError, match="already failed"):
        dec.close()


def test_close_with_partial_frame():
    raw = event_frame("assistantResponseEvent", {"content": "x"})
    dec = EventStreamDecoder()
    assert dec.feed(raw[:-3]) == []
    assert dec.buffered == len(raw) - 3
    with pytest.raises(EventStreamError, match="ended inside a frame"):
        dec.close()
    dec2 = EventStreamDecoder()
    dec2.feed(raw[:5])
    with pytest.raises(EventStreamError, match="ended inside a frame"):
        dec2.close()


def test_close_clean():
    dec = EventStreamDecoder()
    dec.feed(event_frame("a", {}))
    dec.close()
    EventStreamDecoder().close()


def test_json_helper_errors_on_bad_json():
    msg = decode_frame(encode_frame({":message-type": "event"}, b"{not json"))
    with pytest.raises(ValueError):
        msg.json()


# --- incremental ------------------------------------------------------------

def _stream() -> bytes:
    return b"".join([
        event_frame("assistantResponseEvent", {"content": "Hello"}),
        event_frame("toolUseEvent", {"name": "f", "toolUseId": "t1", "input": '{"a":'}),
        encode_frame({"n": Typed(SHORT, 5), "u": uuid.UUID(int=7)}, b""),
        event_frame("toolUseEvent", {"name": "f", "toolUseId": "t1", "input": "1}", "stop": True}),
        event_frame("meteringEvent", {"unit": "credit", "usage": 0.25}),
        exception_frame("ContentLengthExceededException", "too long"),
    ])


def test_split_at_every_offset():
    data = _stream()
    expected = decode_all(data)
    assert len(expected) == 6
    for cut in range(len(data) + 1):
        dec = EventStreamDecoder()
        got = dec.feed(data[:cut]) + dec.feed(data[cut:])
        dec.close()
        assert got == expected, cut


def test_byte_at_a_time_and_two_cuts():
    data = _stream()
    expected = decode_all(data)
    dec = EventStreamDecoder()
    got: list[Message] = []
    for i in range(len(data)):
        got += dec.feed(data[i:i + 1])
    dec.close()
    assert got == expected
    step = 7
    for a in range(0, len(data), step):
        for b in range(a, len(data), step * 3):
            dec = EventStreamDecoder()
            got = dec.feed(data[:a]) + dec.feed(data[a:b]) + dec.feed(data[b:])
            assert got == expected


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_random_chunking(cuts):
    data = _stream()
    expected = decode_all(data)
    points = sorted({min(c, len(data)) for c in cuts})
    dec = EventStreamDecoder()
    got: list[Message] = []
    prev = 0
    for p in [*points, len(data)]:
        got += dec.feed(data[prev:p])
        prev = p
    dec.close()
    assert got == expected


# --- fuzz -------------------------------------------------------------------

def _decode_or_error(data: bytes, chunk: int) -> None:
    start = time.monotonic()
    dec = EventStreamDecoder()
    try:
        for i in range(0, len(data), chunk):
            for msg in dec.feed(data[i:i + chunk]):
                assert isinstance(msg, Message)
        dec.close()
    except EventStreamError:
        pass
    assert time.monotonic() - start < 1.0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_fuzz_random_bytes(data, chunk):
    _decode_or_error(data, chunk)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=10_000),
       st.integers(min_value=1, max_value=64))
def test_fuzz_mutated_valid_stream(noise, where, chunk):
    """Corrupting bytes of a valid stream yields messages or EventStreamError only."""
    data = bytearray(_stream())
    pos = where % len(data)
    window = data[pos:pos + len(noise)]
    data[pos:pos + len(noise)] = bytes(a ^ b for a, b in zip(window, noise, strict=False))
    _decode_or_error(bytes(data), chunk)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=300))
def test_fuzz_valid_prelude_random_body(body, headers_len):
    """Frames with valid CRCs but random header bytes: decode or raise cleanly."""
    headers_len = min(headers_len, len(body))
    total = 12 + len(body) + 4
    framed = _frame(total, headers_len, body)
    framed += struct.pack(">I", zlib.crc32(framed))
    _decode_or_error(framed, 13)
