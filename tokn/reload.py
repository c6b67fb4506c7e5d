"""What a changed ``config.toml`` means for a running tokn (pure).

:func:`plan` compares the config in force with a newly read one and says what
changed and what of it a running tokn cannot take up without a restart
(:class:`Plan`); :mod:`tokn.live` does the I/O (reads the file, swaps the
running state, reports the :class:`Outcome`).  The comparison is generic:
every top-level field of :class:`~tokn.config.Config` is compared key by key
(a dataclass section) or whole (anything else), so a section added later is
applied live without this module knowing it.  Only the keys a running tokn
read once at start are listed here (:data:`RESTART_KEYS`), plus those whose
change needs another step (:data:`CA_KEYS`).
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from tokn.config import AccountConfig, Config

# read once at start: a change needs `tokn restart`
RESTART_KEYS = frozenset({
    # where the front doors listen, who may call them, the listener's own limits
    "server.host", "server.port", "server.api_key", "server.allowed_hosts",
    "server.cors_origins", "server.max_body_mb", "server.header_timeout_secs",
    "server.body_timeout_secs", "server.max_connections", "server.max_client_connections",
    "server.keep_alive_secs",
    "proxy_mode.host", "proxy_mode.port", "proxy_mode.upstream_ca_bundle",
    # the outbound HTTP client
    "proxy.url", "proxy.system", "proxy.no_proxy",
    "usage.enabled", "logging.file",
    # shared state and usage of replicas: connections made once at start
    "state.url", "state.timeout_secs", "usage.url", "usage.buffer_rows",
})
# applied, but the CA may need regenerating for the proxy to intercept them
CA_KEYS = frozenset({"proxy_mode.intercept_hosts", "proxy_mode.passthrough_hosts",
                     "ca.name_constraints"})
NOT_COMPARED = frozenset({"path", "warnings", "accounts"})


@dataclass(frozen=True)
class Plan:
    """What changed between two configs: ``keys`` (``section.key``, or a whole
    top-level field's name), accounts ``added`` / ``removed`` / ``changed``
    (enabled or disabled counts as changed); ``restart``: the changed keys only
    a restart applies."""

    keys: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.keys or self.added or self.removed or self.changed)

    @property
    def ca_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.keys if k in CA_KEYS)

    def summary(self) -> str:
        """One line for people: what changed (and what waits for a restart)."""
        if self.empty:
            return "no changes"
        parts = []
        for word, ids in (("added", self.added), ("removed", self.removed),
                          ("changed", self.changed)):
            if ids:
                parts.append(f"account(s) {word}: {', '.join(ids)}")
        live = [k for k in self.keys if k not in self.restart]
        if live:
            parts.append("applied: " + ", ".join(live))
        if self.restart:
            parts.append("needs `tokn restart`: " + ", ".join(self.restart))
        return "; ".join(parts)


def _value(obj: Any) -> Any:
    return {f.name: getattr(obj, f.name) for f in fields(obj)} if is_dataclass(obj) else obj


def changed_keys(old: Config, new: Config) -> list[str]:
    """``section.key`` of every setting that differs (accounts aside)."""
    out: list[str] = []
    for f in fields(new):
        if f.name in NOT_COMPARED:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if is_dataclass(before) and is_dataclass(after) and type(before) is type(after):
            a, b = _value(before), _value(after)
            names = [*a, *(k for k in b if k not in a)]  # in the section's order
            out.extend(f"{f.name}.{k}" for k in names if a.get(k) != b.get(k))
        elif _value(before) != _value(after):
            out.append(f.name)
    return out


def _by_id(accounts: list[AccountConfig]) -> dict[str, AccountConfig]:
    return {a.id: a for a in accounts}


def plan(old: Config, new: Config) -> Plan:
    """What applying ``new`` over ``old`` changes (see :class:`Plan`)."""
    keys = changed_keys(old, new)
    before, after = _by_id(old.accounts), _by_id(new.accounts)
    return Plan(
        keys=tuple(keys),
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        changed=tuple(i for i in after if i in before and before[i] != after[i]),
        restart=tuple(k for k in keys if k in RESTART_KEYS),
    )


def digest(text: bytes) -> str:
    """The config file's identity: what ``tokn config set`` & co compare with
    the status file to see whether the running tokn took up their change."""
    return hashlib.sha256(text).hexdigest()[:16]


@dataclass(frozen=True)
class Outcome:
    """What a reload did: ``applied`` whether the running config is now the
    file's (also when nothing changed); ``message`` for people (what changed,
    or why nothing did); ``digest`` of the file read ("" when unreadable);
    ``restart``: the changed keys that wait for a restart."""

    applied: bool
    message: str
    digest: str = ""
    restart: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)


def in_force(old: Config, new: Config, restart: tuple[str, ...]) -> Config:
    """``new`` as a running tokn can take it up: the ``restart`` keys keep their
    running values (so the config in force says what really runs, and the next
    reload still reports them)."""
    out = copy.deepcopy(new)
    for key in restart:
        section, _, name = key.partition(".")
        if name:
            running = getattr(getattr(old, section), name)
            setattr(getattr(out, section), name, copy.deepcopy(running))
        else:
            setattr(out, section, copy.deepcopy(getattr(old, section)))
    return out
