"""Editing the config file by dotted key (``tokn config get|set|unset``):
``server.port``, ``proxy_mode.provider_modes.anthropic``, or an account's
``base_url`` / ``settings.NAME``.  Values are parsed as the key's type and
checked against its row in :mod:`tokn.config_keys`; a key tokn does not know
is refused with a did-you-mean (``force`` sets it anyway).  Pure functions on a
tomlkit document; reading and writing the file is :mod:`tokn.config`'s.
"""

from __future__ import annotations

import json
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from tokn import config_keys
from tokn.config import (
    SECTIONS,
    ConfigError,
    account_defaults,
    account_table,
    is_secret_key,
    known_keys,
    literal,
    plain,
)


def _split(key: str, account: str | None = None) -> list[str]:
    """``server.port`` -> ``["server", "port"]``; an entry of a table setting keeps
    its dots (``proxy_mode.upstream_overrides.api.openai.com`` names one host)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{key!r} is not a valid key; use dotted names like server.port.")
    section = SECTIONS.get(parts[0])
    if not account and section and len(parts) > 3 and \
            isinstance(getattr(section(), parts[1], None), dict):
        return [*parts[:2], ".".join(parts[2:])]
    return parts


def _root(doc: tomlkit.TOMLDocument, account: str | None) -> Any:
    return account_table(doc, account) if account else doc


def get_key(doc: tomlkit.TOMLDocument, key: str, account: str | None = None) -> Any:
    node: Any = _root(doc, account)
    for part in _split(key, account):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return plain(node)


def default_for(key: str, account: str | None = None) -> Any:
    """The built-in default of a known key (an account's with ``account``), else ``None``."""
    parts = key.split(".")
    if account:
        return account_defaults().get(key)
    if len(parts) == 2 and parts[0] in SECTIONS:
        return getattr(SECTIONS[parts[0]](), parts[1], None)
    return None


def _unknown(key: str, known: list[str], hint: str) -> ConfigError:
    close = config_keys.suggest(key, known)
    guess = f"; did you mean {close}?" if close else ""
    return ConfigError(f"{key} is not a tokn setting{guess} ({hint}; --force sets it anyway).")


def _like(parts: list[str], account: str | None,
          force: bool) -> tuple[Any, str | None, str | None]:
    """For the key ``parts``: the value a new one is parsed like, the row of
    :mod:`tokn.config_keys` that checks it, and the table entry it names
    (``proxy_mode.provider_modes.ENTRY``).  Raises for a key tokn does not
    know, unless ``force``."""
    key = ".".join(parts)
    if account:
        common = account_defaults()
        if parts[0] == "settings":
            return ({}, "accounts.settings", None) if len(parts) == 1 else (None, None, None)
        if len(parts) == 1 and parts[0] in (*common, "id", "provider"):
            return common.get(parts[0], ""), f"accounts.{parts[0]}", None
        # a provider field (api_key, refresh_token, region...), unless it looks
        # like a typo of a common key (enabeld, base_ulr)
        typo = config_keys.close_to(key, list(common), 0.85)
        if (len(parts) > 1 or (typo and not is_secret_key(key))) and not force:
            raise _unknown(key, list(common), "an account has enabled, models, base_url, "
                           "refresh_url, its provider's fields and settings.NAME options")
        return ("" if is_secret_key(key) else None), None, None   # a provider field
    section = SECTIONS.get(parts[0])
    defaults = section() if section else None
    if defaults is not None and len(parts) == 2 and hasattr(defaults, parts[1]):
        return getattr(defaults, parts[1]), key, None
    if defaults is not None and len(parts) == 3 and \
            isinstance(getattr(defaults, parts[1], None), dict):
        return "", ".".join(parts[:2]), parts[2]   # aliases, provider_modes... (strings)
    if parts[0] == "accounts":
        who, what = (parts[1], parts[2:]) if len(parts) > 2 else ("ID", parts[1:])
        raise ConfigError(f"{key}: account keys are set with `tokn config set --account {who} "
                          f"{'.'.join(what) or 'KEY'} VALUE`.")
    if force:
        return None, None, None
    raise _unknown(key, known_keys(), "`tokn config list --defaults` lists every key")


def check_known(key: str, account: str | None = None) -> None:
    """ConfigError (with a did-you-mean) when ``key`` is not a setting tokn knows."""
    _like(_split(key, account), account, force=False)


def _parse_literal(raw: str) -> Any:
    """``raw`` as JSON or a TOML value (``true``, ``[1, 2]``, ``{a = 1}``); KeyError if neither."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return tomlkit.parse(f"v = {raw}").unwrap()["v"]
    except TOMLKitError:
        raise KeyError(raw) from None


def coerce(raw: str, like: Any) -> Any:
    """Parse the command-line string ``raw`` as the type of ``like``.

    ``like`` is None for a new free-form key: then a JSON or TOML literal
    (``42``, ``true``, ``["a"]``) is honoured and anything else stays a string.
    Arrays and tables take JSON (what ``tokn config get`` prints) or TOML.
    """
    if isinstance(like, bool):
        low = raw.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if isinstance(like, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if isinstance(like, str):
        return raw
    if isinstance(like, list):
        try:
            value = _parse_literal(raw)
        except KeyError:
            return [p.strip() for p in raw.split(",") if p.strip()]
        return value if isinstance(value, list) else [value]
    if isinstance(like, dict):
        try:
            value = _parse_literal(raw)
        except KeyError:
            value = None
        if not isinstance(value, dict):
            raise ValueError(f"expected a table like {{a = 1}} or {{\"a\": 1}}, got {raw!r}")
        return value
    try:
        value = _parse_literal(raw)
    except KeyError:
        return raw
    return value if isinstance(value, (bool, int, float, list, dict)) else raw


def set_key(doc: tomlkit.TOMLDocument, key: str, raw: str, *, account: str | None = None,
            add: bool = False, force: bool = False) -> Any:
    """Set ``key`` to ``raw`` (keeping the existing value's type); ``add`` appends
    to an array.  Unknown keys are refused (with a suggestion) unless ``force``;
    the value is checked against its row in :mod:`tokn.config_keys`.  Returns
    the stored value."""
    parts = _split(key, account)
    root: Any = _root(doc, account)
    like, row, entry = _like(parts, account, force)
    node = root
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part} is not a table.")
    last = parts[-1]
    existing = plain(node[last]) if last in node else like
    if add:
        if existing is None:
            existing = []
        if not isinstance(existing, list):
            raise ConfigError(f"{key} is not an array; --add only appends to arrays.")
        try:
            items = coerce(raw, [])
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
        value = list(existing) + [i for i in items if i not in existing]
    else:
        try:
            value = coerce(raw, existing)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
    if row:
        try:
            config_keys.check(row, {entry: value} if entry else value)
        except config_keys.Invalid as exc:
            where = key + exc.key[len(row):] if account else exc.key
            raise ConfigError(f"{where} = {literal(exc.value)} is not valid; "
                              f"{exc.reason}.") from None
    node[last] = value
    return value


def unset_key(doc: tomlkit.TOMLDocument, key: str, account: str | None = None) -> None:
    parts = _split(key, account)
    node: Any = _root(doc, account)
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    if parts[-1] not in node:
        raise KeyError(key)
    del node[parts[-1]]
