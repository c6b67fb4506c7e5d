"""Request shaping: ``[[rules]]`` that change a request for the accounts and
models they match (pure).

A rule matches by ``model`` (a glob on the id the client asked for or the one
serving it), ``account`` (a glob on the account id) and ``provider`` (a
provider id); an empty criterion matches everything.  Matching rules apply in
file order:

* ``system`` replaces the system prompt, ``system_prepend`` / ``system_append``
  add text before / after it (chat: system messages; Messages: ``system``;
  Responses: ``instructions``);
* ``defaults`` sets parameters the client did not set, ``override`` sets them
  whatever the client sent.  ``max_tokens``, ``reasoning_effort``,
  ``temperature`` and ``top_p`` are named as in chat and land where the
  caller's format keeps them (``max_output_tokens``, ``reasoning.effort``,
  ``output_config.effort``...); any other key is a field of the caller's
  format (``a.b`` a nested one).  These apply to the request as the client
  sent it, before any conversion;
* ``strip`` removes fields (``a.b`` nested) from the body as it goes upstream,
  after conversion: the fields an upstream rejects.

:func:`parse_rules` validates the config's tables with one-line errors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# chat's parameter name -> its path in each format
PARAMS: dict[str, dict[str, str]] = {
    "max_tokens": {"chat": "max_tokens", "responses": "max_output_tokens",
                   "messages": "max_tokens", "gemini": "generationConfig.maxOutputTokens"},
    "reasoning_effort": {"chat": "reasoning_effort", "responses": "reasoning.effort",
                         "messages": "output_config.effort",
                         "gemini": "generationConfig.thinkingConfig.thinkingLevel"},
    "temperature": {"chat": "temperature", "responses": "temperature",
                    "messages": "temperature", "gemini": "generationConfig.temperature"},
    "top_p": {"chat": "top_p", "responses": "top_p", "messages": "top_p",
              "gemini": "generationConfig.topP"},
}
# other spellings a client may have set the parameter with
ALSO_SET: dict[tuple[str, str], tuple[str, ...]] = {
    ("chat", "max_tokens"): ("max_completion_tokens",),
}
RESERVED = ("model", "stream")  # what a rule may not change
TEXT_KEYS = ("model", "account", "provider", "system", "system_append", "system_prepend")
KNOWN = (*TEXT_KEYS, "defaults", "override", "strip")


def glob_match(pattern: str, text: str) -> bool:
    """``*`` (any run) and ``?`` (one character) match, case-insensitively;
    every other character, ``[`` included, stands for itself."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL) is not None


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` table."""

    model: str = ""
    account: str = ""
    provider: str = ""
    system: str | None = None
    system_append: str | None = None
    system_prepend: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    override: dict[str, Any] = field(default_factory=dict)
    strip: tuple[str, ...] = ()

    def matches(self, models: Iterable[str], account: str, provider: str) -> bool:
        return (not self.model or any(glob_match(self.model, m) for m in models if m)) \
            and (not self.account or glob_match(self.account, account)) \
            and (not self.provider or self.provider == provider)


def parse_rules(raw: Any) -> list[Rule]:
    """The ``rules`` array of tables as :class:`Rule` s; ``ValueError`` with a
    one-line message naming the rule and key when one is not valid."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ValueError("`rules` must be an array of tables ([[rules]])")
    return [_parse_rule(i, r) for i, r in enumerate(raw)]


def _parse_rule(i: int, raw: dict[str, Any]) -> Rule:
    where = f"rules[{i}]"
    for key in raw:
        if key not in KNOWN:
            raise ValueError(f"{where}.{key} is not a rule key; use one of: {', '.join(KNOWN)}")
    values: dict[str, Any] = {}
    for key in TEXT_KEYS:
        if key in raw:
            if not isinstance(raw[key], str):
                raise ValueError(f"{where}.{key} must be a string, got {raw[key]!r}")
            values[key] = raw[key]
    for key in ("defaults", "override"):
        table = raw.get(key, {})
        if not isinstance(table, dict):
            raise ValueError(f"{where}.{key} must be a table, e.g. {{ max_tokens = 4096 }}")
        bad = [k for k in table if k.split(".")[0] in RESERVED or not k]
        if bad:
            raise ValueError(f"{where}.{key}.{bad[0]}: a rule cannot set "
                             f"{' or '.join(RESERVED)}")
        values[key] = dict(table)
    strip = raw.get("strip", [])
    if not isinstance(strip, list) or not all(isinstance(s, str) and s for s in strip):
        raise ValueError(f"{where}.strip must be an array of field names, e.g. "
                         '["service_tier", "metadata"]')
    if any(s.split(".")[0] in RESERVED for s in strip):
        raise ValueError(f"{where}.strip: a rule cannot strip {' or '.join(RESERVED)}")
    values["strip"] = tuple(strip)
    return Rule(**values)


def matching(rules: Sequence[Rule], models: Iterable[str], account: str,
             provider: str) -> list[Rule]:
    """The rules that apply to a request for ``models`` (the requested and the
    served id) on ``account`` of ``provider``, in file order."""
    models = tuple(models)
    return [r for r in rules if r.matches(models, account, provider)]


# --- applying ----------------------------------------------------------------------

def _path(fmt: str, name: str) -> str:
    return PARAMS[name].get(fmt, name) if name in PARAMS else name


def _get(body: dict[str, Any], path: str) -> Any:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# _set and _delete change ``body`` (a copy) and copy each nested table on the
# way: the client's body, shared below the top level, is never changed.

def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = body
    for part in parents:
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[last] = copy.deepcopy(value)


def _delete(body: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = body
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        node[part] = child = dict(child)
        node = child
    node.pop(last, None)


def _is_set(fmt: str, body: dict[str, Any], name: str) -> bool:
    paths = (_path(fmt, name), *ALSO_SET.get((fmt, name), ()))
    return any(_get(body, p) is not None for p in paths)


_SYSTEM_ROLES = ("system", "developer")


def _system_chat(messages: list[Any], rule: Rule) -> list[Any]:
    messages = list(messages)
    if rule.system is not None:
        messages = [m for m in messages
                    if not (isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES)]
        messages.insert(0, {"role": "system", "content": rule.system})
    if rule.system_prepend is not None:
        messages.insert(0, {"role": "system", "content": rule.system_prepend})
    if rule.system_append is not None:
        lead = 0
        while lead < len(messages) and isinstance(messages[lead], dict) \
                and messages[lead].get("role") in _SYSTEM_ROLES:
            lead += 1
        messages.insert(lead, {"role": "system", "content": rule.system_append})
    return messages


def _joined(before: str | None, text: str | None, after: str | None) -> str:
    return "\n\n".join(t for t in (before, text, after) if t)


def _system_messages(system: Any, rule: Rule) -> Any:
    if rule.system is not None:
        system = rule.system
    if rule.system_prepend is None and rule.system_append is None:
        return system
    if isinstance(system, list):  # blocks (cache_control markers kept where they are)
        blocks = list(system)
        if rule.system_prepend is not None:
            blocks.insert(0, {"type": "text", "text": rule.system_prepend})
        if rule.system_append is not None:
            blocks.append({"type": "text", "text": rule.system_append})
        return blocks
    return _joined(rule.system_prepend, system if isinstance(system, str) else None,
                   rule.system_append)


def _system_responses(body: dict[str, Any], rule: Rule) -> None:
    if rule.system is not None:
        body["instructions"] = rule.system
        items = body.get("input")
        if isinstance(items, list):
            body["input"] = [i for i in items if not (
                isinstance(i, dict) and i.get("type", "message") == "message"
                and i.get("role") in _SYSTEM_ROLES)]
    if rule.system_prepend is not None or rule.system_append is not None:
        current = body.get("instructions")
        body["instructions"] = _joined(rule.system_prepend,
                                       current if isinstance(current, str) else None,
                                       rule.system_append)


def _system_gemini(body: dict[str, Any], rule: Rule) -> None:
    key = "system_instruction" if "system_instruction" in body else "systemInstruction"
    current = body.get(key)
    parts = list(current.get("parts") or []) if isinstance(current, dict) else []
    if rule.system is not None:
        parts = [{"text": rule.system}]
    if rule.system_prepend is not None:
        parts.insert(0, {"text": rule.system_prepend})
    if rule.system_append is not None:
        parts.append({"text": rule.system_append})
    if parts:
        body[key] = {**(current if isinstance(current, dict) else {}), "parts": parts}


def shape(fmt: str, body: dict[str, Any], rules: Sequence[Rule]) -> dict[str, Any]:
    """``body`` (in format ``fmt``, as the client sent it) with the rules'
    system prompt and parameters applied; a new dict, ``body`` is not changed."""
    if not rules:
        return body
    out = dict(body)  # copied where changed (the system prompt helpers make new lists)
    for rule in rules:
        if fmt == "chat" and isinstance(out.get("messages"), list):
            out["messages"] = _system_chat(out["messages"], rule)
        elif fmt == "messages":
            system = _system_messages(out.get("system"), rule)
            if system not in (None, ""):
                out["system"] = system
        elif fmt == "responses":
            _system_responses(out, rule)
        elif fmt == "gemini":
            _system_gemini(out, rule)
        for name, value in rule.defaults.items():
            if not _is_set(fmt, body, name):
                _set(out, _path(fmt, name), value)
        for name, value in rule.override.items():
            for other in ALSO_SET.get((fmt, name), ()):
                _delete(out, other)
            _set(out, _path(fmt, name), value)
    return out


def strip(body: dict[str, Any], rules: Sequence[Rule]) -> dict[str, Any]:
    """``body`` as it goes upstream without the fields the rules strip."""
    names = [name for rule in rules for name in rule.strip]
    if not names:
        return body
    out = dict(body)
    for name in names:
        _delete(out, name)
    return out
