import pytest

from tokn.convert.models import close_matches, normalize_model

COPILOT = [
    "claude-sonnet-4",
    "claude-opus-4.1",
    "claude-sonnet-4.5",
    "claude-3.5-sonnet",
    "gpt-4o",
    "gpt-5",
]
ANTHROPIC = ["claude-opus-4-1-20250805", "claude-sonnet-4-20250514", "claude-opus-4-1"]


@pytest.mark.parametrize(
    "requested,available,expected",
    [
        ("gpt-4o", COPILOT, "gpt-4o"),
        ("claude-sonnet-4-20250514", COPILOT, "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", COPILOT, "claude-opus-4.1"),
        ("claude-opus-4-1-20250805", ANTHROPIC, "claude-opus-4-1-20250805"),
        ("claude-opus-4.1", ANTHROPIC, "claude-opus-4-1"),
        ("claude-sonnet-4-5", COPILOT, "claude-sonnet-4.5"),
        ("claude-sonnet-4.5", ["claude-sonnet-4-5"], "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-latest", COPILOT, "claude-3.5-sonnet"),
        ("claude-sonnet-4-0", COPILOT, "claude-sonnet-4"),
        ("Claude-Sonnet-4.5", COPILOT, "claude-sonnet-4.5"),
        ("claude-sonnet-4-5[1m]", COPILOT, "claude-sonnet-4.5"),
        ("claude-opus-4", COPILOT, None),  # no silent downgrade/upgrade
        ("claude-sonnet-4-1", COPILOT, None),
        ("llama-3", COPILOT, None),
    ],
)
def test_normalize_model(requested, available, expected):
    assert normalize_model(requested, available) == expected


def test_aliases_first_and_matched_loosely():
    assert normalize_model("fast", COPILOT, {"fast": "gpt-4o"}) == "gpt-4o"
    assert (
        normalize_model("smart", COPILOT, {"smart": "claude-sonnet-4-5-20250929"})
        == "claude-sonnet-4.5"
    )
    assert normalize_model("nope", COPILOT, {"nope": "missing-model"}) is None
    # an exact available id beats an alias of the same name
    assert normalize_model("gpt-4o", COPILOT, {"gpt-4o": "gpt-5"}) == "gpt-4o"


def test_close_matches():
    got = close_matches("claude-sonet-4.5", COPILOT)
    assert got[0] == "claude-sonnet-4.5"
    assert "gpt-4o" not in got
    assert close_matches("zzzz", COPILOT) == []
    assert len(close_matches("claude", COPILOT * 3, n=2)) <= 2
