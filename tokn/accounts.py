"""Account operations shared by the CLI (``tokn account ...``) and the dashboard:
health as shown to people, enabling, disabling and removing an account in the
config file (under its cross-process lock, :func:`tokn.config.editing`)."""

from __future__ import annotations

import time
from typing import Any

from tokn import config, state
from tokn.providers import provider_class

HEALTH_STATE = "health"
# State files that hold per-account entries removing an account drops.
ACCOUNT_STATE_FILES = ("copilot-tokens", "health", "account-info")


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
    health and facts; returns its provider id (``None``: no such account)."""
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
