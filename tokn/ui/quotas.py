"""Plan and quota per account for the dashboard: each provider's
:meth:`~tokn.providers.base.Provider.describe` (what ``tokn account show``
prints), cached and refreshed in the background so a page never waits on a
slow upstream; and :func:`quota_view`, which reads the three shapes providers
report (Copilot quota snapshots, Kiro credits, Z.ai quota windows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tokn.endings import describe as describe_exc
from tokn.pool import Pool

TTL_SECS = 300.0  # how old a good answer may be before it is asked again
ERROR_TTL_SECS = 60.0
TIMEOUT_SECS = 15.0
COPILOT_NAMES = {"premium_interactions": "premium requests", "chat": "chat",
                 "completions": "completions"}


@dataclass
class QuotaLine:
    name: str
    text: str
    percent_left: float | None = None  # 0-100 when known (a meter)


@dataclass
class QuotaView:
    plan: str | None = None
    lines: list[QuotaLine] = field(default_factory=list)
    resets: str | None = None
    error: str | None = None


def _num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}" if isinstance(value, int | float) else str(value)


def quota_view(facts: dict[str, Any]) -> QuotaView:
    """What ``describe()`` said, as lines a person reads (pure)."""
    view = QuotaView(plan=facts.get("plan") or facts.get("access_type_sku") or facts.get("sku"))
    view.error = facts.get("quota_error") or facts.get("usage_error")
    quotas = facts.get("quotas") if isinstance(facts.get("quotas"), dict) else {}
    for name, q in quotas.items():  # Copilot snapshots, Kiro credits
        if not isinstance(q, dict):
            continue
        label = COPILOT_NAMES.get(name, str(name))
        if q.get("unlimited"):
            view.lines.append(QuotaLine(label, "unlimited"))
            continue
        remaining, entitlement = q.get("remaining"), q.get("entitlement")
        if remaining is None and entitlement is None:
            continue
        text = f"{_num(remaining)} of {_num(entitlement)} left"
        if q.get("used") is not None:
            text += f" ({_num(q['used'])} used)"
        percent = q.get("percent_remaining")
        view.lines.append(QuotaLine(label, text, float(percent) if isinstance(
            percent, int | float) else None))
    for window in facts.get("quota") or []:  # Z.ai windows
        if not isinstance(window, dict):
            continue
        name = str(window.get("kind") or "quota")
        if window.get("window"):
            name += f" ({window['window']})"
        used = window.get("used_percent")
        text = f"{_num(used)}% used" if used is not None else "?"
        if window.get("limit") is not None and window.get("used") is not None:
            text += f" ({_num(window['used'])} of {_num(window['limit'])})"
        if window.get("resets_at"):
            text += f", resets {_local(str(window['resets_at']))}"
        view.lines.append(QuotaLine(name, text, max(0.0, 100.0 - float(used))
                                    if isinstance(used, int | float) else None))
    reset = facts.get("quota_reset_date") or facts.get("credits_reset_expires_at")
    if isinstance(reset, int | float):
        reset = time.strftime("%Y-%m-%d", time.localtime(reset))
    view.resets = str(reset) if reset else None
    return view


def _local(iso: str) -> str:
    """An ISO-8601 time as local ``YYYY-MM-DD HH:MM`` (as given when unreadable)."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


@dataclass
class Entry:
    facts: dict[str, Any] | None = None
    error: str | None = None
    at: float = 0.0  # monotonic time of the last answer
    task: asyncio.Task | None = None


class QuotaCache:
    """``describe()`` per account, asked in the background when stale."""

    def __init__(self, pool: Pool, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.clock = clock
        self._entries: dict[str, Entry] = {}

    def get(self, account_id: str) -> Entry:
        """The last answer (maybe none yet); starts a refresh when it is stale.
        Never waits."""
        entry = self._entries.setdefault(account_id, Entry())
        ttl = ERROR_TTL_SECS if entry.error else TTL_SECS
        fresh = entry.at and self.clock() - entry.at < ttl
        if not fresh and entry.task is None and account_id in self.pool.providers:
            entry.task = asyncio.get_running_loop().create_task(self._ask(account_id, entry))
        return entry

    async def _ask(self, account_id: str, entry: Entry) -> None:
        provider = self.pool.providers.get(account_id)
        try:
            if provider is not None:
                async with asyncio.timeout(TIMEOUT_SECS):
                    entry.facts = await provider.describe()
                entry.error = None
        except TimeoutError:
            entry.error = f"no answer within {TIMEOUT_SECS:g} s"
        except Exception as exc:  # noqa: BLE001 - shown beside the account, never raised
            entry.error = getattr(exc, "message", None) or describe_exc(exc)
        finally:
            entry.at = self.clock()
            entry.task = None

    def forget(self, account_id: str) -> None:
        entry = self._entries.pop(account_id, None)
        if entry is not None and entry.task is not None:
            entry.task.cancel()

    async def aclose(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
