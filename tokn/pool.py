"""The account pool: which accounts may serve a model, in which order, and
which are resting after failures.

Health is kept in memory and mirrored to the ``health`` state file so that
``tokn account list`` (another process) can show it.  Replicas sharing state
(``[state] url``) also publish it, with the sticky-session map, through a
:class:`SharedPool`, and read the others' before choosing accounts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import httpx

from tokn import state
from tokn.config import AccountConfig, Config
from tokn.convert.models import close_matches, normalize_model
from tokn.endings import describe
from tokn.errors import ToknError
from tokn.providers import ModelInfo, Provider, provider_class
from tokn.resolve import Resolution, exact_alias, resolve, served_models

Listed = tuple[str, frozenset[str]]  # a model id an account lists, and its formats
MODELS_TTL = 600.0
LIST_RETRY_SECS = 1.0  # a failed model listing is retried at once, then after 1, 2, 4 ... s
LIST_RETRY_MAX_SECS = 60.0
MAX_RETRY_AFTER = 86400.0  # an upstream's Retry-After is honoured up to a day
STICKY_MAX = 10000  # session keys remembered (oldest forgotten first)
LAST_OK_SAVE_SECS = 60.0  # how stale `tokn account show`'s "last ok" may be


@dataclass
class Health:
    cooldown_until: float = 0.0
    failures: int = 0
    last_error: str = ""
    last_ok: float = 0.0
    exhausted_until: float | None = None

    def available(self, now: float) -> bool:
        if self.exhausted_until and now < self.exhausted_until:
            return False
        return now >= self.cooldown_until

    def resume_at(self) -> float:
        return max(self.cooldown_until, self.exhausted_until or 0.0)


def cooldown_secs(failures: int, base: float, cap: float,
                  retry_after: float | None = None) -> float:
    """``base x 2^(failures-1)`` capped at ``cap``; ``Retry-After`` wins when given."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, MAX_RETRY_AFTER)
    return min(base * (2 ** max(failures - 1, 0)), cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (now or time.time()), 0.0)


@dataclass
class Unlisted:
    """An account whose model listing failed: why, and when to try again."""

    error: ToknError
    retry_at: float
    attempts: int


@dataclass
class Candidate:
    provider: Provider
    model: ModelInfo | None
    upstream_model: str
    solo: bool = False  # the only account able to serve this request

    @property
    def served_model(self) -> str:
        """The model id this account serves the request with."""
        return self.model.id if self.model is not None else self.upstream_model

    @property
    def account_id(self) -> str:
        return self.provider.account_id


class SharedPool(Protocol):
    """Health and sticky sessions shared with other replicas (``[state] url``).
    Unreachable: :meth:`pull` answers ``None`` and the pool goes on with its own."""

    async def pull(self, account_ids: Sequence[str], session_key: str | None
                   ) -> tuple[dict[str, dict[str, Any]], str | None] | None:
        """The shared health records of ``account_ids`` (those known) and the
        account ``session_key`` is pinned to; ``None``: unreachable."""

    def push(self, account_id: str, record: dict[str, Any]) -> None:
        """Publish an account's health record (in the background)."""

    def pin(self, session_key: str, account_id: str) -> None:
        """Publish that ``session_key`` goes to ``account_id`` (in the background)."""


class Pool:
    """All configured accounts, their providers, models and health."""

    def __init__(self, config: Callable[[], Config], client: httpx.AsyncClient,
                 clock: Callable[[], float] = time.time,
                 shared: SharedPool | None = None) -> None:
        self.config = config
        self.shared = shared
        self.client = client
        self.clock = clock
        self.providers: dict[str, Provider] = self.build(config().accounts)
        saved = state.read("health")
        self.health: dict[str, Health] = {}
        for account_id in self.providers:
            raw = saved.get(account_id, {})
            known = {k: v for k, v in raw.items() if k in Health.__dataclass_fields__}
            self.health[account_id] = Health(**known)
        self._rr = itertools.count()
        self._sticky: dict[str, str] = {}
        self._ok_saved: dict[str, float] = {}  # last_ok as last written to the state file
        self._models_at: dict[str, float] = {}
        self._unlisted: dict[str, Unlisted] = {}
        self._refresh_task: asyncio.Task | None = None

    @property
    def cfg(self) -> Config:
        """The config in force (read through the runtime's accessor, never kept)."""
        return self.config()

    def build(self, accounts: list[AccountConfig],
              keep: Mapping[str, Provider] | None = None) -> dict[str, Provider]:
        """A provider per enabled account; those in ``keep`` whose account
        config is unchanged (or changed only by the provider's own write, see
        :meth:`Provider.adopt`) are reused.  Raises a ToknError naming
        the account whose provider is unknown."""
        keep = keep or {}
        out: dict[str, Provider] = {}
        for account in accounts:
            if not account.enabled:
                continue
            old = keep.get(account.id)
            if old is not None and (old.account == account or old.adopt(account)):
                out[account.id] = old
                continue
            try:
                cls = provider_class(account.provider)
            except KeyError as exc:
                raise ToknError(f"account {account.id!r}: {exc.args[0]}", status=500) from None
            out[account.id] = cls(account, self.client)
        return out

    # --- models --------------------------------------------------------------------
    async def models_of(self, provider: Provider) -> list[ModelInfo]:
        """The account's models.  A listing that fails (with no earlier list or
        configured models to fall back on) raises its error, naming the account
        and the fix, and marks the account failing; it is retried with backoff
        (at once, then after 1 s doubling to a minute), not on every request."""
        aid = provider.account_id
        now = self.clock()
        unlisted = self._unlisted.get(aid)
        if unlisted is not None and now < unlisted.retry_at:
            raise unlisted.error
        stale = now - self._models_at.get(aid, 0.0) > MODELS_TTL
        secs = provider.account.timeouts.first_byte_secs
        try:
            async with asyncio.timeout(secs):
                models = await provider.models(refresh=stale and aid in self._models_at)
        except TimeoutError:
            error = ToknError(f"account {aid} did not list its models within {secs:g} s "
                              "([timeouts] first_byte_secs)", status=504, code="upstream_timeout")
        except ToknError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - an unreadable listing fails the account
            error = ToknError(f"account {aid}: listing its models failed ({describe(exc)})",
                              status=502, code="upstream_error")
        else:
            if stale and provider.has_models:
                self._models_at[aid] = now
            if self._unlisted.pop(aid, None) is not None:
                self.mark_success(aid)
            return models
        attempts = unlisted.attempts + 1 if unlisted is not None else 1
        wait = 0.0 if attempts == 1 else min(LIST_RETRY_SECS * 2 ** (attempts - 2),
                                              LIST_RETRY_MAX_SECS)
        error.account = aid
        self._unlisted[aid] = Unlisted(error, self.clock() + wait, attempts)
        self.mark_failure(aid, error.message, cooldown=False)
        raise error

    def listing_errors(self) -> dict[str, ToknError]:
        """Why each account whose last model listing failed is failing."""
        return {aid: u.error for aid, u in self._unlisted.items()}

    async def all_models(self) -> list[tuple[Provider, ModelInfo]]:
        providers = list(self.providers.values())  # a reload may swap them meanwhile
        lists = await asyncio.gather(*(self.models_of(p) for p in providers),
                                     return_exceptions=True)
        out: list[tuple[Provider, ModelInfo]] = []
        for provider, models in zip(providers, lists):
            if isinstance(models, BaseException):
                continue
            out.extend((provider, m) for m in models)
        return out

    def start_background_refresh(self, every: float = MODELS_TTL) -> None:
        async def loop() -> None:
            while True:
                try:
                    await asyncio.sleep(every)
                    self._models_at.clear()
                    await self.all_models()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a failed refresh keeps the old list
                    continue

        if self._refresh_task is None:
            self._refresh_task = asyncio.get_running_loop().create_task(loop())

    async def aclose(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None

    # --- routing -------------------------------------------------------------------
    def _split_prefix(self, model: str) -> tuple[list[Provider] | None, str]:
        if "/" not in model:
            return None, model
        prefix, rest = model.split("/", 1)
        if prefix in self.providers:
            return [self.providers[prefix]], rest
        by_provider = [p for p in self.providers.values()
                       if p.account.provider == prefix or prefix in (type(p).id, *type(p).ids)]
        if by_provider:
            return by_provider, rest
        return None, model

    async def candidates(self, model: str, headers: Mapping[str, str] | None = None,
                         session_key: str | None = None,
                         provider_ids: tuple[str, ...] | None = None,
                         fmt: str | None = None) -> list[Candidate]:
        """Accounts that can serve ``model``, healthy ones first in strategy order.

        A model no account serves is resolved (:mod:`tokn.resolve`): a glob
        alias, the default provider, then (``[models] fallback = "nearest"``)
        the nearest served model for the caller's API format ``fmt``.

        Raises a 404 :class:`ToknError` listing close matches when nobody serves
        it, and a 503 with the earliest retry time when all are resting.
        """
        headers = headers or {}
        if not self.providers:
            raise ToknError("no accounts are configured; add one with `tokn login`.",
                            status=503, code="no_accounts")
        await self.sync(session_key)
        wanted = provider_ids or ((headers.get("x-provider"),) if headers.get("x-provider")
                                  else None)
        everyone = self._filter(list(self.providers.values()), wanted)
        # An id served verbatim wins over a provider/ prefix ("openai/gpt-4o"
        # on OpenRouter is a model id, not a routing hint).
        if "/" in model:
            found, everything = await self._match(everyone, model, exact=True)
            scoped, name = (None, model) if found else self._split_prefix(model)
        else:
            found, everything, scoped, name = [], [], None, model
        pool = self._filter(scoped, wanted) if scoped else everyone
        listed: list[Listed] = []
        if not found:
            found, listed = await self._match(pool, name, blind=bool(scoped))
            everything += listed
        resolution: Resolution | None = None
        if not found:  # glob aliases, then the default provider, then the nearest model
            resolution = resolve(name, served_models(listed), self.cfg.models.aliases,
                                 self.cfg.models.fallback, fmt)
            # only accounts that listed their models (a failed listing is not retried here)
            listing = [p for p in pool if p.account_id not in self._unlisted]
        if not found and resolution is not None and resolution.how == "glob":
            found, _ = await self._match(listing, resolution.model or "", exact=True)
        if not found and self.cfg.pool.default_provider and not scoped:
            found = [Candidate(p, None, name) for p in everyone
                     if p.account.provider == self.cfg.pool.default_provider]
        if not found and resolution is not None and resolution.model is not None:
            found, _ = await self._match(listing, resolution.model, exact=True)
        failing = {aid: err for aid, err in self.listing_errors().items()
                   if any(p.account_id == aid for p in (scoped or everyone))}
        if not found and failing:
            raise self.listing_failure(failing)
        if not found:
            hints = close_matches(name, sorted({model_id for model_id, _ in everything}))
            hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
            why = f" ({resolution.why})" if resolution is not None else ""
            raise ToknError(f"The model `{model}` does not exist or no account serves "
                            f"it{why}.{hint} See `tokn models`.",
                            status=404, code="model_not_found")
        return self._order(found, session_key)

    @staticmethod
    def listing_failure(failing: dict[str, ToknError]) -> ToknError:
        """The answer when no account lists a model and some could not list at
        all: their failure (naming account and fix), not "model not found"."""
        if len(failing) == 1:
            ((aid, err),) = failing.items()
            return ToknError(err.message, status=err.status, code=err.code, account=aid)
        statuses = {e.status for e in failing.values()}
        return ToknError(
            "accounts cannot list their models: " + "; ".join(e.message for e in failing.values()),
            status=statuses.pop() if len(statuses) == 1 else 502, code="accounts_failing",
            account=next(iter(failing)))

    @staticmethod
    def _filter(pool: list[Provider], wanted: tuple[str, ...] | None) -> list[Provider]:
        if not wanted:
            return pool
        return [p for p in pool if p.account.provider in wanted
                or p.account_id in wanted or type(p).id in wanted]

    async def _match(self, pool: list[Provider], name: str, *, exact: bool = False,
                     blind: bool = False) -> tuple[list[Candidate], list[Listed]]:
        """Accounts in ``pool`` whose model list has ``name`` (normalised unless
        ``exact``), and every model they list with its formats; with ``blind``,
        an account that lists nothing is tried as is."""
        found: list[Candidate] = []
        everything: list[Listed] = []
        for provider in pool:
            try:
                models = await self.models_of(provider)
            except ToknError:  # listing failed: candidates() reports it if nobody serves
                models = []
            ids = [m.id for m in models]
            everything.extend((m.id, provider.model_formats(m)) for m in models)
            if exact:
                match = name if name in ids else None
            else:
                alias = exact_alias(name, self.cfg.models.aliases)
                match = normalize_model(name, ids, {name: alias} if alias else None) \
                    if ids else None
            if match is not None:
                info = next(m for m in models if m.id == match)
                found.append(Candidate(provider, info, info.upstream_id))
            elif blind and not ids:
                found.append(Candidate(provider, None, name))
        return found, everything

    def _order(self, found: list[Candidate], session_key: str | None) -> list[Candidate]:
        now = self.clock()
        healthy = [c for c in found if self.health[c.account_id].available(now)]
        if not healthy:
            soonest = min(self.health[c.account_id].resume_at() for c in found)
            wait = max(soonest - now, 0.0)
            when = time.strftime("%H:%M:%S", time.localtime(soonest))
            raise ToknError(
                f"every account that serves this model is cooling down; retry after "
                f"{when} (in {wait:.0f} s). See `tokn account list`.",
                status=503, code="all_accounts_cooling", retry_after=wait)
        if self.cfg.pool.strategy == "round_robin" and len(healthy) > 1:
            start = next(self._rr) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
        if session_key and self.cfg.pool.sticky_sessions:
            pinned = self._sticky.get(session_key)
            healthy.sort(key=lambda c: c.account_id != pinned)
        return healthy

    def switch_account(self, provider_id: str,
                       accept: Callable[[Provider], bool] = lambda _: True) -> Provider:
        """A healthy account of ``provider_id`` for a switched proxy flow, among
        those ``accept`` allows (the proxy admits only accounts whose credential
        may go to the flow's host).

        Accounts of the same provider id come first; failing those, any account
        whose provider class serves that id (the four Z.ai / Zhipu ids share one).
        """
        same = [p for p in self.providers.values() if p.account.provider == provider_id]
        if not same:
            try:
                cls = provider_class(provider_id)
            except KeyError:
                cls = None
            same = [p for p in self.providers.values() if cls is not None and type(p) is cls]
        if not same:
            raise ToknError(
                f"switch mode needs an account of provider {provider_id}, and none is "
                f"configured: run `tokn login --provider {provider_id}` (or send "
                "x-tokn-route-mode: passthrough to use your own key).", status=400,
                code="no_account_for_provider")
        allowed = [p for p in same if accept(p)]
        if not allowed:
            raise ToknError(
                f"switch mode: no {provider_id} account may send its credential to this host "
                f"(an account with its own base_url sends it only there); send "
                f"x-tokn-route-mode: route or passthrough instead.", status=400,
                code="no_account_for_host")
        ordered = self._order([Candidate(p, None, "") for p in allowed], None)
        return ordered[0].provider

    # --- membership ----------------------------------------------------------------
    def swap(self, providers: dict[str, Provider]) -> None:
        """Serve with ``providers`` (from :meth:`build`, for the config now in
        force) from the next request on.  Requests in flight keep the provider
        objects they hold.  An account whose provider was kept keeps its model
        list and health; a new or changed one starts afresh (healthy, models
        listed again); a removed or disabled one leaves rotation and sticky
        sessions (its health stays in memory for requests still finishing).
        With shared state a changed account's fresh health is published too; a
        new one takes the other replicas' record at the next :meth:`sync`."""
        fresh = [aid for aid, p in providers.items() if self.providers.get(aid) is not p]
        for account_id in fresh:
            self.health[account_id] = Health()
            self._models_at.pop(account_id, None)
            self._unlisted.pop(account_id, None)
        gone = set(self.providers) - set(providers)
        changed = {aid for aid in fresh if aid in self.providers}
        self.providers = providers
        for account_id in fresh:
            self._save(account_id, publish=account_id in changed)
        if gone:
            self._sticky = {k: v for k, v in self._sticky.items() if v not in gone}
            for account_id in gone:
                self._unlisted.pop(account_id, None)
                self._models_at.pop(account_id, None)

    # --- health --------------------------------------------------------------------
    async def sync(self, session_key: str | None = None) -> None:
        """Take the other replicas' view of health (and of ``session_key``'s
        account) before choosing; no-op without shared state or when it is
        unreachable."""
        if self.shared is None:
            return
        pulled = await self.shared.pull(list(self.providers), session_key)
        if pulled is None:
            return
        records, pinned = pulled
        for account_id, record in records.items():
            if account_id in self.health:
                known = {k: v for k, v in record.items() if k in Health.__dataclass_fields__}
                self.health[account_id] = Health(**known)
        if session_key and pinned and self.cfg.pool.sticky_sessions:
            self._sticky.pop(session_key, None)
            self._sticky[session_key] = pinned

    def mark_success(self, account_id: str, session_key: str | None = None) -> None:
        health = self.health[account_id]
        now = self.clock()
        # the state file is written when health changes, and for last_ok at most
        # once per LAST_OK_SAVE_SECS (not on every request)
        changed = health.failures or health.cooldown_until or health.last_error or \
            now - self._ok_saved.get(account_id, 0.0) >= LAST_OK_SAVE_SECS
        health.failures, health.cooldown_until, health.last_error = 0, 0.0, ""
        health.last_ok = now
        if session_key and self.cfg.pool.sticky_sessions:
            before = self._sticky.pop(session_key, None)
            self._sticky[session_key] = account_id
            if len(self._sticky) > STICKY_MAX:
                del self._sticky[next(iter(self._sticky))]
            if self.shared is not None and before != account_id:
                self.shared.pin(session_key, account_id)
        if changed:
            self._save(account_id)

    def mark_failure(self, account_id: str, error: str, *, retry_after: float | None = None,
                     exhausted_until: float | None = None, cooldown: bool = True) -> float:
        """Record a failure and (unless ``cooldown`` is false) put the account to
        rest; returns the cooldown in seconds."""
        health = self.health[account_id]
        health.failures += 1
        wait = 0.0
        if cooldown:
            wait = cooldown_secs(health.failures, self.cfg.pool.failure_cooldown_secs,
                                 self.cfg.pool.max_cooldown_secs, retry_after)
            health.cooldown_until = self.clock() + wait
        health.last_error = error[:300]
        if exhausted_until:
            health.exhausted_until = exhausted_until
        self._save(account_id)
        return wait

    def mark_refused(self, provider: Provider, status: int, body: bytes,
                     headers: Mapping[str, str], error: str, *,
                     cooldown: bool = True) -> tuple[str, float | None]:
        """Judge an upstream's error answer (HTTP ``status`` >= 400) the way the
        account's provider says (:meth:`~tokn.providers.Provider.failure_kind`)
        and record it: ``client`` leaves the account alone, ``account`` rests it
        (as long as a ``Retry-After`` asks), ``quota`` takes it out of rotation
        until the quota resets.  Returns the kind and the Retry-After seconds.

        Without ``cooldown`` (the only account) it rests only when told to wait."""
        kind = provider.failure_kind(status, body)
        retry_after = parse_retry_after(headers.get("retry-after"))
        if kind == "client":
            return kind, retry_after
        exhausted = provider.quota_reset(status, body) if kind == "quota" else None
        self.mark_failure(provider.account_id, error, retry_after=retry_after,
                          exhausted_until=exhausted,
                          cooldown=cooldown or retry_after is not None or exhausted is not None)
        return kind, retry_after

    def _save(self, account_id: str, publish: bool = True) -> None:
        if account_id not in self.providers:
            return  # taken out of rotation while its request ran: nothing to show
        self._ok_saved[account_id] = self.health[account_id].last_ok
        record = asdict(self.health[account_id])
        if self.shared is not None and publish:
            self.shared.push(account_id, record)
        try:
            state.update("health", account_id, record)
        except OSError:
            pass  # health display is best effort; routing keeps the in-memory truth
