"""Gemini golden streams: ``golden/gemini/<src>_to_<dst>__<case>.in.sse`` converted must
equal ``.out.sse`` byte for byte, however the input is split (ids and clock fixed).

Formats: ``gemini`` (``streamGenerateContent?alt=sse``), ``codeassist`` (the
same in Code Assist's envelope), ``chat``, ``messages``, ``responses``. The
stages are composed through chat, as :class:`tokn.convert.StreamConverter`
composes the registered formats (Gemini joins that registry in part 2 of
issue 18; until then this file composes them itself). Inputs are shaped
after what Google sends (see ``tokn/convert/gemini/stream.py``).

Regenerate after an intended change with ``TOKN_REGEN_GOLDEN=1`` and review the diff.
"""

import itertools
import json
import os
from pathlib import Path

import pytest

from tokn.convert.anthropic.stream import ChatToMessagesStream, MessagesToChatStream
from tokn.convert.gemini import ChatToCodeAssistStream, ChatToGeminiStream, GeminiToChatStream
from tokn.convert.responses.stream import ChatToResponsesStream, ResponsesToChatStream
from tokn.sse import SSEParser, encode_event

GOLDEN = Path(__file__).parent / "golden" / "gemini"
CASES = sorted(GOLDEN.glob("*.in.sse"))
TO_CHAT = {"gemini": GeminiToChatStream, "codeassist": GeminiToChatStream,
           "messages": MessagesToChatStream, "responses": ResponsesToChatStream}
FROM_CHAT = {"gemini": ChatToGeminiStream, "codeassist": ChatToCodeAssistStream,
             "messages": ChatToMessagesStream, "responses": ChatToResponsesStream}
NAMED_EVENTS = {"messages", "responses"}


def convert(raw: bytes, src: str, dst: str, step: int) -> bytes:
    counters: dict[str, itertools.count] = {}  # per prefix: stages run interleaved

    def ids(prefix: str) -> str:
        return f"{prefix}{next(counters.setdefault(prefix, itertools.count())):04d}"

    kw = {"ids": ids, "clock": lambda: 1700000000}
    stages = ([TO_CHAT[src](**kw)] if src != "chat" else []) + (
        [FROM_CHAT[dst](**kw)] if dst != "chat" else [])
    parser = SSEParser()

    def run(frames, closing):
        for stage in stages:
            out = []
            for event, data in frames:
                out += stage.feed(event, data)
            if closing:
                out += stage.close()
            frames = out
        return b"".join(encode_event(d, e if dst in NAMED_EVENTS else None) for e, d in frames)

    def parse(events):
        return [(e.event, e.data if e.data == "[DONE]" else json.loads(e.data)) for e in events]

    out = b"".join(run(parse(parser.feed(raw[i:i + step])), False)
                   for i in range(0, len(raw), step))
    return out + run(parse(parser.close()), True)


def _directions():
    return {p.name.split("__")[0] for p in CASES}


def test_golden_cases_cover_both_directions_and_compositions():
    assert {"gemini_to_chat", "chat_to_gemini", "chat_to_codeassist", "gemini_to_messages",
            "gemini_to_responses", "messages_to_gemini", "responses_to_gemini"} <= _directions()


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name.removesuffix(".in.sse"))
def test_golden(path):
    src, dst = path.name.split("__")[0].split("_to_")
    expected_path = path.with_name(path.name.replace(".in.sse", ".out.sse"))
    raw = path.read_bytes()
    whole = convert(raw, src, dst, 1 << 30)
    if os.environ.get("TOKN_REGEN_GOLDEN"):
        expected_path.write_bytes(whole)
    expected = expected_path.read_bytes()
    assert whole == expected
    for step in (1, 17, 256):
        assert convert(raw, src, dst, step) == expected
