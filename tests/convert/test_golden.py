"""Golden streams: ``golden/<src>_to_<dst>__<case>.in.sse`` converted must equal ``.out.sse``
byte for byte, however the input is split. Ids and clock are deterministic.
A ``.request.json`` beside the input holds the client's ``request`` (and the
upstream's ``dialect``) when the conversion depends on it.

Regenerate after an intended change with ``TOKN_REGEN_GOLDEN=1`` and review the diff.
"""

import itertools
import json
import os
from pathlib import Path

import pytest

from tokn.convert import Dialect, response_hints, stream_converter

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.in.sse"))


def _convert(path: Path, step: int) -> bytes:
    src, dst = path.name.split("__")[0].split("_to_")
    n = itertools.count()
    sidecar = path.with_name(path.name.replace(".in.sse", ".request.json"))
    context = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    hints = response_hints(dst, context.get("request"), src,
                           Dialect(**context.get("dialect", {})))
    conv = stream_converter(src, dst, ids=lambda p: f"{p}{next(n):04d}", clock=lambda: 1700000000,
                            hints=hints)
    raw = path.read_bytes()
    return b"".join(conv.feed(raw[i : i + step]) for i in range(0, len(raw), step)) + conv.close()


def test_there_are_golden_cases_for_every_direction():
    directions = {p.name.split("__")[0] for p in CASES}
    assert {
        "chat_to_messages",
        "chat_to_responses",
        "messages_to_chat",
        "responses_to_chat",
        "messages_to_responses",
        "responses_to_messages",
    } <= directions


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name.removesuffix(".in.sse"))
def test_golden(path):
    expected_path = path.with_name(path.name.replace(".in.sse", ".out.sse"))
    whole = _convert(path, 1 << 30)
    if os.environ.get("TOKN_REGEN_GOLDEN"):
        expected_path.write_bytes(whole)
    expected = expected_path.read_bytes()
    assert whole == expected
    for step in (1, 17, 256):
        assert _convert(path, step) == expected
