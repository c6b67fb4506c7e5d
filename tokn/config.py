"""tokn's TOML configuration: load, validate, edit, save.

Two views of one file:

* the *document* (``tomlkit``), which keeps comments and key order and is what
  ``tokn config set`` edits and writes back;
* the validated :class:`Config`, a plain dataclass tree the rest of tokn reads.

Validation is pure (:func:`parse_config`); problems raise :class:`ConfigError`
whose message names the file, the key and the fix.  Unknown keys only warn when
the file is read (a file written by a newer tokn still loads) but are refused
by :func:`set_key`.  The known keys, their docs and value checks are the table
in :mod:`tokn.config_keys`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Item

from tokn import config_keys, paths
from tokn.config_keys import LOG_FORMATS, LOG_LEVELS, ROUTE_MODES, STRATEGIES
from tokn.rules import Rule, parse_rules

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "ROUTE_MODES", "STRATEGIES"]  # re-exported
SECRET_KEY_RE = re.compile(
    r"(token|api_key|apikey|secret|password|authorization|cookie|(^|_)key$)", re.I)
# the password of a URL's userinfo: scheme://user:PASSWORD@host
_URL_PASSWORD_RE = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:\s]*:)([^/@\s]+)(@)", re.I)


class ConfigError(Exception):
    """The config file cannot be used as it is; the message says how to fix it."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4141
    route_mode: str = "route"
    api_key: str = ""
    # Without an API key the listener answers only to loopback Host names and
    # these; browsers' Origins allowed to call it (CORS), none by default.
    allowed_hosts: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    # Both front doors: request body cap, client-side deadlines, connection caps
    # for peers beyond loopback.
    max_body_mb: float = 32.0
    header_timeout_secs: float = 20.0
    body_timeout_secs: float = 60.0
    max_connections: int = 1000
    max_client_connections: int = 100
    # on SIGTERM/SIGINT: seconds in-flight requests may take to finish
    drain_secs: float = 30.0
    # the longest server-sent-event line tokn accepts from an upstream
    max_sse_line_mb: float = 16.0
    # idle seconds before the listener closes a keep-alive connection
    keep_alive_secs: float = 5.0


@dataclass
class TimeoutsConfig:
    """How long tokn waits on an upstream (``[timeouts]``, per account
    ``[accounts.timeouts]``)."""

    connect_secs: float = 15.0
    # to the response headers of a streaming request (also bounds a model
    # listing or token exchange)
    first_byte_secs: float = 300.0
    # a whole non-stream answer, headers and body
    response_secs: float = 600.0
    # the longest gap between two chunks of a stream
    stream_idle_secs: float = 120.0


@dataclass
class ProxyModeConfig:
    host: str = "127.0.0.1"
    port: int = 4142
    route_mode: str = "route"
    intercept_hosts: list[str] = field(default_factory=list)
    passthrough_hosts: list[str] = field(default_factory=list)
    provider_modes: dict[str, str] = field(default_factory=dict)
    upstream_ca_bundle: str = ""
    # host -> "ip:port" to reach instead (tests, split-horizon networks); the
    # TLS name checked stays the original host.
    upstream_overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class PoolConfig:
    strategy: str = "round_robin"
    failure_cooldown_secs: float = 30.0
    max_cooldown_secs: float = 900.0
    sticky_sessions: bool = False
    default_provider: str = ""


@dataclass
class UsageConfig:
    enabled: bool = True
    record_bodies: bool = False
    body_cap_bytes: int = 65536
    url: str = ""  # postgresql://...: rows go to PostgreSQL (shared by replicas), not SQLite
    buffer_rows: int = 100000  # rows held while PostgreSQL is unreachable


@dataclass
class StateConfig:
    url: str = ""  # redis://...: pool health, sticky sessions, tokens shared by replicas
    timeout_secs: float = 1.0  # longest wait for Redis before local state is used


@dataclass
class OutboundProxyConfig:
    url: str = ""
    system: bool = True
    no_proxy: list[str] = field(default_factory=list)


@dataclass
class LoggingConfig:
    level: str = "info"
    format: str = "text"
    file: str = ""


@dataclass
class CAConfig:
    name_constraints: bool = True


@dataclass
class ModelsConfig:
    aliases: dict[str, str] = field(default_factory=dict)
    # an unserved model: "nearest" served one of its family and tier, or "strict"
    fallback: str = "nearest"


@dataclass
class AccountConfig:
    """One ``[[accounts]]`` entry.  Provider-specific credential fields live in
    ``fields`` (``github_token``, ``api_key``, ``refresh_token`` ...)."""

    id: str
    provider: str
    base_url: str = ""
    refresh_url: str = ""
    enabled: bool = True
    models: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    # [timeouts] with this account's [accounts.timeouts] overrides applied
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    proxy_mode: ProxyModeConfig = field(default_factory=ProxyModeConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    state: StateConfig = field(default_factory=StateConfig)
    proxy: OutboundProxyConfig = field(default_factory=OutboundProxyConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ca: CAConfig = field(default_factory=CAConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    accounts: list[AccountConfig] = field(default_factory=list)
    # [[rules]]: request shaping (tokn.rules)
    rules: list[Rule] = field(default_factory=list)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def account(self, account_id: str) -> AccountConfig | None:
        return next((a for a in self.accounts if a.id == account_id), None)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "proxy_mode": ProxyModeConfig,
    "pool": PoolConfig,
    "usage": UsageConfig,
    "state": StateConfig,
    "proxy": OutboundProxyConfig,
    "logging": LoggingConfig,
    "ca": CAConfig,
    "models": ModelsConfig,
    "timeouts": TimeoutsConfig,
}
_ACCOUNT_KNOWN = {"id", "provider", "base_url", "refresh_url", "enabled", "models", "settings",
                  "timeouts"}


def plain(value: Any) -> Any:
    """tomlkit items -> plain Python values."""
    return value.unwrap() if isinstance(value, Item | Container) else value


def _type_name(tp: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(tp, tp.__name__)


def _check_type(where: str, key: str, value: Any, default: Any, src: str) -> Any:
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise ConfigError(
            f"{src}: {where}{key} must be {_type_name(expected)}, got {value!r}; "
            f"fix it with `tokn config set {where}{key} VALUE` or edit the file."
        )
    if expected is list and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{src}: {where}{key} must be an array of strings, got {value!r}.")
    return value


def _parse_section(name: str, raw: Any, src: str, warnings: list[str]) -> Any:
    cls = SECTIONS[name]
    obj = cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: [{name}] must be a table, got {raw!r}.")
    for key, value in raw.items():
        if not hasattr(obj, key):
            close = config_keys.suggest(f"{name}.{key}", known_keys())
            warnings.append(f"{src}: unknown key {name}.{key} (ignored"
                            + (f"; did you mean {close}?)" if close else ")"))
            continue
        value = _check_type(f"{name}.", key, plain(value), getattr(obj, key), src)
        _check_value(f"{name}.{key}", value, src)
        setattr(obj, key, value)
    return obj


def _check_value(key: str, value: Any, src: str, shown: str = "") -> None:
    """The key's row check (:mod:`tokn.config_keys`) as a ConfigError naming the fix."""
    try:
        config_keys.check(key, value)
    except config_keys.Invalid as exc:
        name = (shown or key) + exc.key[len(key):]
        raise ConfigError(f"{src}: {name} = {literal(exc.value)} is not valid; {exc.reason}; "
                          "fix it with `tokn config set` or `tokn config edit`.") from None


def literal(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)

def _account_timeouts(account_id: str, raw: Any, base: TimeoutsConfig,
                      src: str) -> TimeoutsConfig:
    """``[timeouts]`` with an account's ``[accounts.timeouts]`` table applied."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: accounts.{account_id}.timeouts must be a table, "
                          f"got {raw!r}.")
    out = TimeoutsConfig(**vars(base))
    for key, value in raw.items():
        if key not in TimeoutsConfig.__dataclass_fields__:
            raise ConfigError(f"{src}: accounts.{account_id}.timeouts.{key} is not a timeout; "
                              f"use one of: {', '.join(TimeoutsConfig.__dataclass_fields__)}.")
        value = _check_type(f"accounts.{account_id}.timeouts.", key, plain(value), 0.0, src)
        if value <= 0:
            raise ConfigError(f"{src}: accounts.{account_id}.timeouts.{key} must be above 0, "
                              f"got {value!r}.")
        setattr(out, key, value)
    return out


def _parse_account(i: int, raw: Any, src: str, seen: set[str]) -> AccountConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: accounts[{i}] must be a table.")
    account_id = raw.get("id")
    provider = raw.get("provider")
    if not isinstance(account_id, str) or not account_id:
        raise ConfigError(f"{src}: accounts[{i}] has no `id`; add `id = \"NAME\"` to it.")
    if not isinstance(provider, str) or not provider:
        raise ConfigError(
            f"{src}: account {account_id!r} has no `provider`; add e.g. "
            f"`provider = \"github-copilot\"`."
        )
    if account_id in seen:
        raise ConfigError(f"{src}: two accounts are called {account_id!r}; ids must be unique.")
    seen.add(account_id)
    _check_value("accounts.id", account_id, src, f"accounts[{i}].id")
    acc = AccountConfig(id=account_id, provider=provider)
    for key in ("base_url", "refresh_url", "enabled", "models", "settings"):
        if key in raw:
            value = _check_type(f"accounts.{account_id}.", key, plain(raw[key]),
                                getattr(acc, key), src)
            _check_value(f"accounts.{key}", value, src, f"accounts.{account_id}.{key}")
            setattr(acc, key, value)
    acc.fields = {k: plain(v) for k, v in raw.items() if k not in _ACCOUNT_KNOWN}
    return acc


def parse_config(data: dict[str, Any], src: str = "config.toml") -> Config:
    """Validate a parsed TOML mapping into a :class:`Config` (pure)."""
    cfg = Config()
    for key, value in data.items():
        if key in SECTIONS:
            setattr(cfg, key, _parse_section(key, value, src, cfg.warnings))
        elif key == "accounts":
            value = plain(value)
            if not isinstance(value, list):
                raise ConfigError(f"{src}: `accounts` must be an array of tables ([[accounts]]).")
            seen: set[str] = set()
            cfg.accounts = [_parse_account(i, a, src, seen) for i, a in enumerate(value)]
        elif key == "rules":
            try:
                cfg.rules = parse_rules(plain(value))
            except ValueError as exc:
                raise ConfigError(f"{src}: {exc}; fix it with `tokn config edit`.") from None
        else:
            cfg.warnings.append(f"{src}: unknown section or key {key!r} (ignored)")
    accounts = plain(data.get("accounts"))
    for acc, raw in zip(cfg.accounts, accounts or ()):
        acc.timeouts = _account_timeouts(acc.id, plain(raw.get("timeouts", {})), cfg.timeouts,
                                         src)
    return cfg


def load_document(path: Path | None = None) -> tomlkit.TOMLDocument:
    """The config file as an editable tomlkit document (empty when absent)."""
    path = path or paths.config_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return tomlkit.document()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
            f"save it as UTF-8 or fix it with `tokn config edit`.") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc}); fix it with `tokn config edit`.") from exc


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config file; defaults when it does not exist."""
    path = path or paths.config_file()
    cfg = parse_config(load_document(path).unwrap(), str(path))
    cfg.path = path
    return cfg


def save_document(doc: tomlkit.TOMLDocument, path: Path | None = None) -> Path:
    """Validate then write atomically with mode 0600 (directory 0700).

    Writers that read the file first use :func:`editing` instead, which holds
    the cross-process lock from the read to the write.
    """
    path = path or paths.config_file()
    text = tomlkit.dumps(doc)
    parse_config(tomlkit.parse(text).unwrap(), str(path))
    paths.write_private(path, text)
    return path


def save_text(text: str, path: Path | None = None) -> Path:
    """Save a whole file's ``text`` (``tokn config edit``): nothing is written unless
    it is valid TOML and a valid config."""
    path = path or paths.config_file()
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    try:
        with paths.locked(path):
            return save_document(doc, path)
    except TimeoutError as exc:
        raise ConfigError(str(exc)) from None


@contextlib.contextmanager
def editing(path: Path | None = None) -> Iterator[tomlkit.TOMLDocument]:
    """Read-modify-write of the config file under its cross-process lock.

    The document is read inside the lock, so a change made meanwhile by another
    process (``tokn config set``, the server saving a rotated refresh token) is
    kept: edits merge instead of overwriting.  It is validated and saved when
    the block ends without an exception (and only when something changed).
    """
    path = path or paths.config_file()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(paths.locked(path))
        except TimeoutError as exc:
            raise ConfigError(str(exc)) from None
        doc = load_document(path)
        before = tomlkit.dumps(doc)
        yield doc
        if tomlkit.dumps(doc) != before:
            save_document(doc, path)


# --- the schema's keys ---------------------------------------------------------

def account_defaults() -> dict[str, Any]:
    """Defaults of the keys every account has (``enabled``, ``models``...)."""
    sample = AccountConfig(id="", provider="")
    out = {k: getattr(sample, k) for k in ("base_url", "refresh_url", "enabled", "models",
                                           "settings")}
    return {**out, "timeouts": {}}  # overrides of [timeouts]; none by default


def known_keys() -> list[str]:
    """Every ``section.key`` of the dataclasses (what ``set`` accepts without --force)."""
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls)]


def mask(value: str) -> str:
    """``ghu_abcdef123456`` -> ``ghu_…3456``; short secrets become ``****``."""
    if not value:
        return ""
    if len(value) <= 8:
        return "****"
    return f"{value[:4]}…{value[-4:]}"


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_RE.search(key.split(".")[-1]))


def masked(data: Any, key: str = "") -> Any:
    """A copy of ``data`` with every secret-looking string value masked (by its
    key's name, and the password of any ``scheme://user:password@`` URL)."""
    if isinstance(data, dict):
        return {k: masked(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v, key) for v in data]
    if isinstance(data, str) and key and is_secret_key(key):
        return mask(data)
    if isinstance(data, str) and "@" in data:  # a proxy URL with a password
        return _URL_PASSWORD_RE.sub(lambda m: m[1] + mask(m[2]) + m[3], data)
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``; arrays of tables keep their index."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                label = item.get("id", i)
                out.extend(flatten(item, f"{name}[{label}]."))
        else:
            out.append((name, value))
    return out


# --- accounts -----------------------------------------------------------------------

def account_table(doc: tomlkit.TOMLDocument, account_id: str) -> Any:
    for table in doc.get("accounts", []):
        if table.get("id") == account_id:
            return table
    raise ConfigError(f"no account with id {account_id!r}; see `tokn account list`.")


def account_tables(doc: tomlkit.TOMLDocument) -> list[dict[str, Any]]:
    """Every ``[[accounts]]`` table as a plain dict."""
    return [dict(plain(t)) for t in doc.get("accounts", [])]


def allocate_id(doc: tomlkit.TOMLDocument, prefix: str, *,
                same: Callable[[dict[str, Any]], bool], hint: str = "") -> str:
    """The id for an account about to be added: the id of the existing account
    ``same`` recognises (signing in again updates it), else ``prefix``, else
    ``prefix-HINT`` (a login name), else the first free ``prefix-N``."""
    tables = account_tables(doc)
    for table in tables:
        if same(table):
            return str(table["id"])
    taken = {t.get("id") for t in tables}
    if prefix not in taken:
        return prefix
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", hint).strip("-")
    if safe and f"{prefix}-{safe}" not in taken:
        return f"{prefix}-{safe}"
    n = 2
    while f"{prefix}-{n}" in taken:
        n += 1
    return f"{prefix}-{n}"


def save_account(values: dict[str, Any], path: Path | None = None) -> Path:
    """Add the account ``values`` (with its ``id``), or update the one with that
    id, in the config file under its lock; empty values are left out."""
    with editing(path) as doc:
        add_account(doc, {k: v for k, v in values.items() if v not in (None, "")})
    return path or paths.config_file()


def add_account(doc: tomlkit.TOMLDocument, values: dict[str, Any]) -> None:
    """Append an ``[[accounts]]`` table, or update the one with the same id."""
    if "accounts" not in doc:
        doc["accounts"] = tomlkit.aot()
    for table in doc["accounts"]:
        if table.get("id") == values["id"]:
            for k, v in values.items():
                table[k] = v
            return
    table = tomlkit.table()
    for k, v in values.items():
        table[k] = v
    doc["accounts"].append(table)


def remove_account(doc: tomlkit.TOMLDocument, account_id: str) -> bool:
    accounts = doc.get("accounts")
    if accounts is None:
        return False
    for i, table in enumerate(accounts):
        if table.get("id") == account_id:
            del accounts[i]
            return True
    return False
