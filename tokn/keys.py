"""Team mode: a key per person, stored hashed.

``tokn keys create NAME`` makes a key (``tokn_`` + 256 random bits), prints it
once and stores only its SHA-256 in ``keys.json`` beside the config (0600,
written atomically under a lock).  The running tokn reads that file through a
:class:`KeyRing`, which notices a change (its mtime, size or inode) within
:data:`RECHECK_SECS`, so a revoked or rotated key stops working at once.

A key's record holds its limits (requests per minute, tokens per day, model
globs) and an expiry; a revoked key's record stays (marked ``revoked``) so
the log can say whose key was refused.  ``[server].api_key`` stays the admin
key: it can do everything, a person's key only call the model APIs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tokn import paths
from tokn.errors import ToknError
from tokn.identity import ADMIN, ANONYMOUS, RESERVED, Identity, key_matches

log = logging.getLogger("tokn")

PREFIX = "tokn_"
RECHECK_SECS = 0.2  # how stale the running tokn's view of the file may be
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
# Basic proxy usernames that name something else (tokn.lan_env.PROXY_USER, route modes)
NOT_NAMES = RESERVED | {"tokn", "route", "switch", "passthrough"}


def default_path() -> Path:
    return paths.config_dir() / "keys.json"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ToknError(f"key name {name!r}: use 1-40 lowercase letters, digits, '.', '_' or "
                        "'-', starting with a letter or digit.", status=400)
    if name in NOT_NAMES:
        raise ToknError(f"key name {name!r} is reserved ({', '.join(sorted(NOT_NAMES))}); "
                        "choose another.", status=400)
    return name


@dataclass(frozen=True)
class KeyRecord:
    """One person's key as stored: never the key, only its SHA-256."""

    name: str
    digest: str
    created: float
    rpm: int | None = None
    tokens_per_day: int | None = None
    models: tuple[str, ...] = ()
    expires: float | None = None  # epoch seconds
    revoked: float | None = None  # epoch seconds

    def state(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"

    def identity(self) -> Identity:
        return Identity(self.name, admin=False, rpm=self.rpm,
                        tokens_per_day=self.tokens_per_day, models=self.models,
                        digest=self.digest)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = list(self.models)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        return cls(name=str(data["name"]), digest=str(data["digest"]),
                   created=float(data["created"]), rpm=data.get("rpm"),
                   tokens_per_day=data.get("tokens_per_day"),
                   models=tuple(data.get("models") or ()), expires=data.get("expires"),
                   revoked=data.get("revoked"))


def read(path: Path) -> list[KeyRecord]:
    """The records in ``path`` (none when it does not exist)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ToknError(f"cannot read the keys file {path}: {exc}; fix or remove it.",
                        status=500) from None
    try:
        return [KeyRecord.from_json(item) for item in data.get("keys", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ToknError(f"the keys file {path} is malformed ({exc}); fix or remove it.",
                        status=500) from None


def write(path: Path, records: list[KeyRecord]) -> None:
    paths.write_private(path, json.dumps(
        {"version": 1, "keys": [r.to_json() for r in records]}, indent=2) + "\n")


@contextmanager
def editing(path: Path | None = None) -> Iterator[list[KeyRecord]]:
    """Read-modify-write the keys file under its cross-process lock."""
    path = path or default_path()
    with paths.locked(path):
        records = read(path)
        yield records
        write(path, records)


def _find(records: list[KeyRecord], name: str) -> int:
    for i, rec in enumerate(records):
        if rec.name == name:
            return i
    known = ", ".join(r.name for r in records) or "none yet"
    raise ToknError(f"no key named {name!r} (keys: {known}); `tokn keys list` shows them.",
                    status=404)


def create(name: str, *, rpm: int | None = None, tokens_per_day: int | None = None,
           models: tuple[str, ...] = (), expires: float | None = None,
           path: Path | None = None) -> str:
    """A new key for ``name`` (returned: the only time it exists in clear)."""
    check_name(name)
    key = new_key()
    with editing(path) as records:
        if any(r.name == name for r in records):
            raise ToknError(f"a key named {name!r} exists already; `tokn keys rotate {name}` "
                            "gives it a new key, `tokn keys revoke` ends it.", status=409)
        records.append(KeyRecord(name, digest(key), time.time(), rpm, tokens_per_day,
                                 models, expires))
    return key


def revoke(name: str, path: Path | None = None) -> KeyRecord:
    with editing(path) as records:
        i = _find(records, name)
        if records[i].revoked is None:
            records[i] = replace(records[i], revoked=time.time())
        return records[i]


def rotate(name: str, path: Path | None = None) -> str:
    """A new key for ``name`` (limits kept; the old key stops working)."""
    key = new_key()
    with editing(path) as records:
        i = _find(records, name)
        records[i] = replace(records[i], digest=digest(key), revoked=None)
    return key


class KeyRing:
    """The running tokn's view of the keys file, re-read when it changes."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._records: tuple[KeyRecord, ...] = ()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")

    def records(self) -> tuple[KeyRecord, ...]:
        """The current records (the file looked at at most every RECHECK_SECS)."""
        if self.path is None:
            return ()
        now = time.monotonic()
        if now - self._checked < RECHECK_SECS:
            return self._records
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
                stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                try:
                    self._records = tuple(read(self.path)) if stamp else ()
                    self._stamp = stamp
                except ToknError as exc:  # keep the last good view; say why
                    log.error("%s", exc)
        return self._records

    def _match(self, presented: str) -> KeyRecord | None:
        """The record whose digest is the presented key's (every record is
        compared, in constant time)."""
        wanted = digest(presented).encode()
        found = None
        for rec in self.records():
            if hmac.compare_digest(rec.digest.encode(), wanted):
                found = rec
        return found

    def person(self, presented: str | None) -> Identity | None:
        """The person whose active key ``presented`` is."""
        if not presented or not presented.startswith(PREFIX):
            return None
        rec = self._match(presented)
        if rec is None or rec.state(self.clock()) != "active":
            return None
        return rec.identity()

    def identify(self, api_key: str, presented: str | None) -> Identity | None:
        """Who presents ``presented``: the admin key, a person's active key, or
        (no admin key set) anonymous; ``None`` when refused."""
        if api_key and key_matches(api_key, presented):
            return ADMIN
        person = self.person(presented)
        if person is not None:
            return person
        return None if api_key else ANONYMOUS

    def by_name(self, name: str) -> Identity | None:
        """The active key named ``name`` as an identity (the proxy's hop names it)."""
        for rec in self.records():
            if rec.name == name and rec.state(self.clock()) == "active":
                return rec.identity()
        return None

    def current(self, identity: Identity) -> Identity | None:
        """``identity`` as it stands now (limits re-read), or ``None`` when its
        key was revoked, rotated or has expired since it was admitted."""
        if identity.admin:
            return identity
        now = self.by_name(identity.name)
        if now is None or not hmac.compare_digest(now.digest, identity.digest):
            return None
        return now

    def describe(self, presented: str | None) -> str | None:
        """For the log: whose key ``presented`` is and its state (``key 'bob'
        (revoked)``), or ``None`` when it is no person's; never the key."""
        rec = self._match(presented) if presented and presented.startswith(PREFIX) else None
        if rec is None:
            return None
        return f"key {rec.name!r} ({rec.state(self.clock())})"

