"""Model-name matching: map what a client asked for onto what an account offers."""

from __future__ import annotations

import difflib
import re

_DATE = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")
_BRACKET = re.compile(r"\[[^\]]*\]$")  # e.g. Claude Code's "claude-sonnet-4-5[1m]"


def model_key(name: str) -> str:
    """A loose key: lowercase, no ``[...]``/``-latest``/date suffix, dots as dashes.

    ``claude-opus-4-1-20250805`` and ``claude-opus-4.1`` share the key ``claude-opus-4-1``.
    """
    key = _BRACKET.sub("", name.strip().lower())
    key = key.removesuffix("-latest")
    key = _DATE.sub("", key)
    return key.replace(".", "-")


def normalize_model(
    requested: str, available: list[str], aliases: dict[str, str] | None = None
) -> str | None:
    """The id in ``available`` that ``requested`` means, or None.

    Order: exact match; alias (``aliases[requested]``, itself matched loosely);
    then loose matching: case, dated Anthropic ids (``claude-sonnet-4-20250514``
    -> ``claude-sonnet-4``), ``-latest``, dot/dash (``claude-sonnet-4-5`` <->
    ``claude-sonnet-4.5``), and a trailing ``-0`` (``claude-sonnet-4-0``).
    Among several loose matches the undated one, then the shortest, wins.
    """
    if requested in available:
        return requested
    if aliases and requested in aliases and aliases[requested] != requested:
        found = normalize_model(aliases[requested], available, None)
        if found:
            return found
    key = model_key(requested)
    keys = [key] + ([key[:-2]] if key.endswith("-0") else [])
    for k in keys:
        matches = [m for m in available if model_key(m) == k]
        if matches:
            return min(matches, key=lambda m: (bool(_DATE.search(m)), len(m), m))
    return None


def close_matches(requested: str, available: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` available ids that look like ``requested``, best first (for error messages)."""
    by_key: dict[str, str] = {}
    for m in available:
        by_key.setdefault(model_key(m), m)
    keys = difflib.get_close_matches(model_key(requested), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in keys]
