"""Model resolution: which served model a requested id means, and why (pure).

Agents ask for their own default models (Claude Code an Opus id with a
variant suffix such as ``claude-opus-4-8[1m]``, Codex its newest GPT id), which
an account may not serve.  The pool first matches an id the accounts serve
(verbatim, an exact alias, loosely: case, dates, ``[1m]``, dots/dashes: see
:func:`tokn.convert.models.normalize_model`); when none does, :func:`resolve`
decides, in this order:

1. a glob alias of ``[models.aliases]`` (``"claude-opus-*" = "claude-sonnet-4.5"``),
   the most specific pattern first (most literal characters, then file order);
   its target is matched loosely against the served ids;
2. with ``[models] fallback = "nearest"`` (the default), the nearest served
   model of the same family and tier, newest first: an unserved Opus -> the
   newest served Opus, else the best served Claude (Opus, then Sonnet, then
   Haiku; newest first); an unserved GPT/Codex model -> the newest served
   model of its tier (codex, mini...), else the best served GPT (full models
   before mini before nano, newest first), preferring models served natively
   in the caller's API;
3. otherwise nothing (``fallback = "strict"``, or no served model of the family).

Everything here is a function of its arguments: the same request and model
lists always resolve the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tokn.convert.models import model_key, normalize_model
from tokn.rules import glob_match

_VARIANT = re.compile(r"\[[^\]]*\]$")  # Claude Code's "[1m]" (1M-context variant)
_DATE = re.compile(r"^\d{4,}$")  # 20250514, 0125: a date, not a version
_NUM_WORD = re.compile(r"^(\d+)([a-z]+)$")  # gpt-4o: version 4, "o"
_FAMILIES = ("claude", "gpt", "gemini", "glm", "grok", "deepseek", "qwen", "kimi")
_CLAUDE_TIERS = ("opus", "sonnet", "haiku")  # best first
# GPT qualifiers; a model without one is a full model
_GPT_SMALL = {"mini": 1, "nano": 0}


@dataclass(frozen=True)
class Served:
    """A model id some account serves, and the formats it is served in natively."""

    id: str
    formats: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Resolution:
    """What ``requested`` resolved to: ``model`` (a served id, or ``None``),
    ``how`` (``served``, ``alias``, ``glob``, ``nearest``, ``none``) and ``why``
    in words."""

    requested: str
    model: str | None
    how: str
    why: str


@dataclass(frozen=True)
class Shape:
    """A model id read as family, tier and version (``claude-opus-4.5`` ->
    ``claude``, ``opus``, ``(4, 5)``)."""

    family: str
    tier: str
    version: tuple[int, ...]


def strip_variant(model: str) -> str:
    """``claude-opus-4-8[1m]`` -> ``claude-opus-4-8``."""
    return _VARIANT.sub("", model.strip())


def shape(model: str) -> Shape | None:
    """The family/tier/version of a chat model id, ``None`` when it is none of
    the known families (or an embedding model)."""
    key = model_key(strip_variant(model))
    words: list[str] = []
    for word in key.split("-"):
        split = _NUM_WORD.match(word)
        if split and split[2] in ("b", "k", "m"):  # a size (gpt-oss-120b), not a version
            words.append("size")
            continue
        words.extend(split.groups() if split else [word] if word else [])
    if not words or "embedding" in key:
        return None
    head = words[0]
    if head == "codex":  # codex-mini-latest
        head, words = "gpt", ["gpt", *words]
    family = next((f for f in _FAMILIES if head == f or head.startswith(f) and
                   head[len(f):].isdigit()), None)
    if family is None:
        return None
    if head != family:  # "gpt4" -> gpt, version 4
        words = [family, head[len(family):], *words[1:]]
    numbers = [w for w in words[1:] if w.isdigit() and not _DATE.match(w)]
    if family == "claude" and len(numbers) == 1 and len(numbers[0]) == 2:
        numbers = list(numbers[0])  # Copilot's "claude-opus-41" is Opus 4.1
    version = tuple(int(w) for w in numbers)
    names = [w for w in words[1:] if not w.isdigit()]
    if family == "claude":
        tier = next((w for w in names if w in _CLAUDE_TIERS), "")
    else:
        tier = "-".join(names)
    return Shape(family, tier, version)


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def exact_alias(requested: str, aliases: Mapping[str, str]) -> str | None:
    """The target of the exact (not glob) alias named ``requested``, or of its
    name without a variant suffix (``claude-opus-4-8[1m]`` -> ``claude-opus-4-8``)."""
    for name in (requested, strip_variant(requested)):
        if name in aliases and not is_glob(name):
            return aliases[name]
    return None


def glob_alias(requested: str, aliases: Mapping[str, str]) -> tuple[str, str] | None:
    """The glob alias ``(pattern, target)`` for ``requested`` (tried with and
    without its variant suffix): the most specific pattern (most literal
    characters), then the first in the file."""
    bare = strip_variant(requested)
    hits = [(p, t) for p, t in aliases.items()
            if is_glob(p) and (glob_match(p, requested) or glob_match(p, bare))]
    if not hits:
        return None
    return max(hits, key=lambda hit: len(hit[0].replace("*", "").replace("?", "")))


def _rank(family: str, s: Shape, wanted_tier: str) -> tuple:
    """Sort key, larger is better, among served models of one family."""
    if family == "claude":
        tier_rank = len(_CLAUDE_TIERS) - _CLAUDE_TIERS.index(s.tier) \
            if s.tier in _CLAUDE_TIERS else 0
    else:
        tier_rank = min((_GPT_SMALL.get(w, 2) for w in s.tier.split("-") if w), default=2)
    return (s.tier == wanted_tier, tier_rank, s.version, not s.tier)


def nearest(requested: str, served: Sequence[Served], fmt: str | None = None) -> Served | None:
    """The served model nearest ``requested`` (see the module doc), or ``None``."""
    want = shape(requested)
    if want is None:
        return None
    same = [(m, s) for m in served if (s := shape(m.id)) is not None and s.family == want.family]
    if not same:
        return None

    def key(item: tuple[Served, Shape]) -> tuple:
        model, s = item
        native = fmt is None or fmt in model.formats or not model.formats
        # its own tier first, then served natively in the caller's API, then the
        # best tier, the newest version; ties: the shorter, then the smaller id
        same_tier, *rank = _rank(want.family, s, want.tier)
        return (same_tier, native, *rank, -len(model.id), _neg(model.id))

    return max(same, key=key)[0]


def _neg(text: str) -> tuple[int, ...]:
    """A key that orders strings in reverse (so ``max`` picks the smallest)."""
    return tuple(-ord(c) for c in text)


def resolve(requested: str, served: Sequence[Served], aliases: Mapping[str, str],
            fallback: str = "nearest", fmt: str | None = None) -> Resolution:
    """What ``requested`` means among ``served`` (every model in reach).

    A served id (verbatim, an exact alias of it, a loose match) resolves to
    itself; otherwise a glob alias, then (``fallback = "nearest"``) the
    nearest model of the family; else ``model`` is ``None``.
    """
    ids = list(dict.fromkeys(m.id for m in served))
    alias = exact_alias(requested, aliases)
    direct = normalize_model(requested, ids, {requested: alias} if alias else None) \
        if ids else None
    if direct is not None:
        if requested not in ids and alias is not None \
                and normalize_model(alias, ids) == direct:
            return Resolution(requested, direct, "alias", f"alias {requested} = {alias}")
        why = "served as is" if direct == requested else f"served as {direct}"
        return Resolution(requested, direct, "served", why)
    target, why = requested, ""
    hit = glob_alias(requested, aliases)
    if hit is not None:
        pattern, target = hit
        found = normalize_model(target, ids) if ids else None
        why = f'glob alias "{pattern}" = {target}'
        if found is not None:
            return Resolution(requested, found, "glob", why)
        why += ", which no account serves"
    if fallback == "nearest":
        near = nearest(target, served, fmt)
        if near is not None:
            s = shape(target)
            what = f"{s.family} {s.tier}".strip() if s else ""
            text = f"nearest served {what} model (fallback = \"nearest\")"
            return Resolution(requested, near.id, "nearest", f"{why}; {text}" if why else
                              f"not served; {text}")
        reason = "no served model of its family" if shape(target) else \
            "not served, and not of a known model family"
    else:
        reason = 'not served (fallback = "strict")'
    return Resolution(requested, None, "none", f"{why}; {reason}" if why else reason)


def served_models(pairs: Iterable[tuple[str, frozenset[str]]]) -> list[Served]:
    """``(id, formats)`` pairs as :class:`Served`, one per id (formats merged)."""
    merged: dict[str, frozenset[str]] = {}
    for model_id, formats in pairs:
        merged[model_id] = merged.get(model_id, frozenset()) | formats
    return [Served(k, v) for k, v in merged.items()]
