"""Golden request / response bodies, one file per case in ``golden/bodies``:
``in`` converted from ``src`` to ``dst`` (for an upstream with ``dialect``;
a response also knows the client's ``request``) must equal ``out``. Ids and
times are deterministic. Each file names the issue item it pins.

Regenerate after an intended change with ``TOKN_REGEN_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from tokn.convert import Dialect, common, convert_request, convert_response, response_hints

BODIES = sorted((Path(__file__).parent / "golden" / "bodies").glob("*.json"))


@pytest.fixture
def deterministic(monkeypatch):
    n = itertools.count()
    monkeypatch.setattr(common, "make_id", lambda prefix: f"{prefix}{next(n):04d}")
    monkeypatch.setattr(common, "now", lambda: 1700000000)


def convert(case: dict) -> dict:
    dialect = Dialect(**case["dialect"])
    if case["kind"] == "request":
        return convert_request(case["src"], case["dst"], case["in"], dialect=dialect)
    hints = response_hints(case["dst"], case.get("request"), case["src"], dialect)
    return convert_response(case["src"], case["dst"], case["in"], hints=hints)


@pytest.mark.parametrize("path", BODIES, ids=lambda p: p.stem)
def test_golden_body(path, deterministic):
    case = json.loads(path.read_text())
    out = convert(case)
    if os.environ.get("TOKN_REGEN_GOLDEN"):
        case["out"] = out
        path.write_text(json.dumps(case, indent=1, ensure_ascii=False) + "\n")
    assert out == case["out"], case["issue"]
