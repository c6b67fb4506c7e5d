"""Account operations shared by the CLI (``tokn login|import|account ...``) and
the dashboard: adding an account from a provider's sign-in or import (one id
allocator, one verification, one locked save), health as shown to people,
enabling, disabling and removing an account in the config file (under its
cross-process lock, :func:`tokn.config.editing`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tokn import config, state
from tokn.errors import ToknError
from tokn.providers import Provider, provider_class
from tokn.providers.setup import Credentials, Verified

HEALTH_STATE = "health"
# Per-account state files of every provider (a provider's own: its forget()).
ACCOUNT_STATE_FILES = (HEALTH_STATE, "account-info")


@dataclass
class Added:
    """An account saved by :func:`add`: its id, its table as saved, what
    verifying it said (``None``: not verified) and the config file."""

    account_id: str
    values: dict[str, Any]
    verified: Verified | None
    path: Path


def account_config(values: dict[str, Any]) -> config.AccountConfig:
    """An account table (as :func:`add` builds it) as the config's account."""
    known = {"id", "provider", "base_url", "refresh_url"}
    return config.AccountConfig(
        id=values["id"], provider=values["provider"], base_url=values.get("base_url") or "",
        refresh_url=values.get("refresh_url") or "",
        fields={k: v for k, v in values.items() if k not in known and v not in (None, "")})


def check_base_url(cls: type[Provider], base_url: str | None) -> None:
    """A provider without a default base URL needs one (``--base-url``)."""
    if not (base_url or cls.default_base_url):
        raise ToknError(f"provider {cls.id!r} needs --base-url (it has no default).",
                        status=400, code="missing_base_url")


async def add(cls: type[Provider], creds: Credentials, *, account_id: str | None = None,
              base_url: str | None = None, refresh_url: str | None = None,
              client: httpx.AsyncClient | None = None, path: Path | None = None) -> Added:
    """Save what a provider's sign-in or import found as an account.

    The id: ``account_id``, else the existing account holding the same
    credential (``same_account``: signing in again updates it), else the
    provider's prefix (``copilot``, ``kiro``...), ``PREFIX-LOGIN`` or
    ``PREFIX-N``.  Tokens cached for the id's earlier credentials are dropped.
    With ``client`` the credential is verified upstream first (``verify``); a
    refused one is not saved.
    """
    check_base_url(cls, base_url)
    values: dict[str, Any] = {"provider": cls.id, "base_url": base_url,
                              "refresh_url": refresh_url, **creds.fields}
    if not account_id:
        account_id = config.allocate_id(
            config.load_document(path), cls.account_id_prefix or cls.id,
            same=lambda table: cls.same_account(table, values), hint=cls.id_hint(values))
    values = {"id": account_id, **values}
    cls.forget_tokens(account_id)
    verified = None
    if client is not None:
        try:
            verified = await cls(account_config(values), client).verify()
        except ToknError as exc:
            if creds.hint and exc.status in (401, 403):
                raise ToknError(f"{exc.message} ({creds.hint})", status=exc.status,
                                code=exc.code) from None
            raise
        values.update({k: v for k, v in verified.fields.items() if not values.get(k)})
    values = {k: v for k, v in values.items() if v not in (None, "")}
    where = config.save_account(values, path)
    return Added(account_id, values, verified, where)


def local_time(epoch: float) -> str:
    """Epoch seconds as a local time: HH:MM:SS today, else the date too."""
    local = time.localtime(epoch)
    if time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def health_of(record: Any, *, enabled: bool = True, now: float | None = None) -> dict[str, Any]:
    """A pool health record -> ``{"status", "text", ...}`` (pure)."""
    now = time.time() if now is None else now
    rec = record if isinstance(record, dict) else {}
    failures = int(rec.get("failures") or 0)
    last_error = str(rec.get("last_error") or "")
    out: dict[str, Any] = {"failures": failures, "last_error": last_error or None,
                           "last_ok": rec.get("last_ok"), "until": None}
    cooldown = rec.get("cooldown_until")
    exhausted = rec.get("exhausted_until")
    if not enabled:
        out.update(status="disabled", text="disabled")
    elif isinstance(exhausted, (int, float)) and exhausted > now:
        out.update(status="exhausted", until=exhausted,
                   text=f"quota exhausted until {local_time(exhausted)}")
    elif isinstance(cooldown, (int, float)) and cooldown > now:
        out.update(status="cooling_down", until=cooldown,
                   text=f"cooling down until {local_time(cooldown)}")
    elif failures > 0:
        out.update(status="failing",
                   text=f"failing ({failures}x){': ' + last_error if last_error else ''}")
    else:
        out.update(status="ok", text="ok")
    return out


def set_enabled(account_id: str, enabled: bool) -> bool:
    """Write ``enabled`` for the account into the config file; whether it changed.

    :class:`tokn.config.ConfigError` when the file has no such account."""
    with config.editing() as doc:
        table = config.account_table(doc, account_id)
        if bool(table.get("enabled", True)) == enabled:
            return False
        if enabled:
            del table["enabled"]  # the default
        else:
            table["enabled"] = False
    return True


def remove(account_id: str) -> str | None:
    """Remove the account from the config file and drop its cached tokens,
    health and facts (the provider's ``forget``); returns its provider id
    (``None``: no such account)."""
    with config.editing() as doc:
        provider = next((t.get("provider") for t in doc.get("accounts", [])
                         if t.get("id") == account_id), None)
        if provider is None or not config.remove_account(doc, account_id):
            return None
    for name in ACCOUNT_STATE_FILES:
        if account_id in state.read(name):
            state.update(name, account_id, None)
    try:
        cls = provider_class(str(provider))
    except KeyError:
        return str(provider)
    cls.forget(account_id)
    return str(provider)
