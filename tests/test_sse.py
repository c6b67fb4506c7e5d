import json

import pytest

from tokn.sse import SSEEvent, SSEParser, encode_event

STREAM = (
    b": comment line\r\n"
    b"event: message_start\r\n"
    b'data: {"a": 1}\r\n'
    b"\r\n"
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n"
    b"\n"
    b"event: x\rdata:no-space\r\r"
    b"data: caf\xc3\xa9\n\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent(None, "line one\nline two", "7"),
    SSEEvent("x", "no-space", "7"),
    SSEEvent(None, "café", "7"),
]


def test_parses_crlf_comments_multiline_and_ids():
    p = SSEParser()
    assert p.feed(STREAM) + p.close() == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 13])
def test_events_split_anywhere_across_feeds(size):
    p = SSEParser()
    got = []
    for i in range(0, len(STREAM), size):
        got += p.feed(STREAM[i : i + size])
    assert got + p.close() == EXPECTED


def test_every_single_split_point():
    for cut in range(len(STREAM) + 1):
        p = SSEParser()
        got = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:]) + p.close()
        assert got == EXPECTED, cut


def test_close_flushes_unterminated_event():
    p = SSEParser()
    assert p.feed(b"data: [DONE]") == []
    assert p.close() == [SSEEvent(None, "[DONE]")]


def test_event_without_data_is_not_dispatched():
    p = SSEParser()
    assert p.feed(b"event: ping\n\n: keepalive\n\n") == []


def test_encode_event_compact_json_unicode():
    raw = encode_event({"type": "x", "t": "é ü"}, "x")
    assert raw == 'event: x\ndata: {"type":"x","t":"é ü"}\n\n'.encode()
    assert encode_event("[DONE]") == b"data: [DONE]\n\n"
    p = SSEParser()
    (ev,) = p.feed(encode_event("a\nb"))
    assert ev.data == "a\nb"


def test_encode_parse_roundtrip():
    payload = {"nested": {"list": [1, 2, "three"]}, "s": "line\nbreak"}
    (ev,) = SSEParser().feed(encode_event(payload, "evt"))
    assert ev.event == "evt" and json.loads(ev.data) == payload
