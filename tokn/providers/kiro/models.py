"""Kiro model ids: public names -> Kiro's, and the models served when Kiro
cannot list them (pure)."""

from __future__ import annotations

import re

# Served when the listing fails (offline, an old deployment): (id, context window).
DEFAULT_MODELS = (
    ("auto", 200_000), ("claude-sonnet-4.5", 200_000), ("claude-sonnet-4", 200_000),
    ("claude-haiku-4.5", 200_000), ("claude-opus-4.5", 200_000),
)
# Prefixes of Kiro's legacy model ids (``CLAUDE_SONNET_4_5_20250929_V1_0``).
LEGACY_PREFIXES = ("CLAUDE_", "ANTHROPIC_")

LEGACY_ID = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)+$")


def normalise_model(name: str) -> str:
    s = name.strip()
    if "/" in s:
        s = s.rsplit("/", 1)[1]
    s = s.lower().replace("_", "-")
    s = re.sub(r"^(?:[a-z]{2}\.)?anthropic\.", "", s)  # bedrock ids
    s = re.sub(r"-v\d+(?:[:.-]\d+)?$", "", s)
    s = re.sub(r"-latest$", "", s)
    s = re.sub(r"-\d{8}$", "", s)
    s = re.sub(r"(?<=\d)-(?=\d)", ".", s)
    return s


def map_model(public: str, available: list[str] | None = None) -> str:
    """Kiro model id for a public model name.

    ``claude-sonnet-4-5`` / ``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4.5``,
    ``claude-sonnet-4-20250514`` -> ``claude-sonnet-4``, ``auto`` kept, legacy
    ids (``CLAUDE_SONNET_4_5_20250929_V1_0``) passed through.  With
    ``available`` (the live model list), an exact, case-insensitive or
    normalised member is preferred.
    """
    name = (public or "").strip()
    if not name or name.lower() == "auto":
        return "auto"
    if available:
        if name in available:
            return name
        lower = {a.lower(): a for a in available}
        if name.lower() in lower:
            return lower[name.lower()]
        wanted = normalise_model(name)
        for candidate in available:
            if normalise_model(candidate) == wanted:
                return candidate
    if LEGACY_ID.match(name):
        return name
    return normalise_model(name)
