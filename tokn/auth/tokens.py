"""One token-refresh mechanism for every credential that expires.

A Copilot token exchanged from a GitHub token, a Kiro access token renewed
with a (single-use) refresh token, a Google access token: each is a
:class:`Token` held by a :class:`Refresher`, which

* hands out the current token while it is fresh (no I/O, no lock);
* renews it ahead of expiry (``refresh_at``), one renewal per account at a
  time however many requests wait for it (single flight);
* refreshes it when the upstream rejected it, unless the rejected token was
  already replaced meanwhile ("refresh only if still the failed token"), and
  collapses concurrent forced refreshes (a generation counter);
* keeps serving a still-valid token when a renewal ahead of expiry fails;
* for single-use refresh tokens, holds the account's lock across processes
  and re-reads the stored token after acquiring it: if another tokn process
  rotated it meanwhile, theirs is used instead of refreshing again.

What the refresher knows of a provider is a :class:`TokenSource` (fetch a new
token; read and write the persisted record).  Where tokens live and who may
renew them is a :class:`TokenStore`: :class:`LocalTokens` (memory, the 0600
state files and file locks of this machine) is the default.  The store is
shared by every provider instance of an account, so a provider rebuilt for an
unchanged account (a new config snapshot) keeps its token; a store backed by
a shared service can replace it without touching the providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tokn import paths, state
from tokn.errors import ToknError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 60.0  # seconds to wait for another process's refresh


@dataclass
class Token:
    """An expiring credential.  ``data`` is the provider's own (Copilot's API
    endpoint and plan, Kiro's refresh token and profile ARN...)."""

    access: str
    expires_at: float
    refresh_at: float          # renew from this moment on (ahead of expiry)
    owner: str = ""            # what it was derived from (a hash); "" binds nothing
    data: dict[str, Any] = field(default_factory=dict)

    def fresh(self, now: float) -> bool:
        """Good to use without renewing first."""
        return bool(self.access) and now < self.refresh_at

    def valid(self, now: float) -> bool:
        """Not expired yet: usable when a renewal fails."""
        return bool(self.access) and now < self.expires_at - 30


class TokenSource(Protocol):
    """What a provider tells its :class:`Refresher`."""

    async def fetch_token(self, current: Token | None) -> Token:
        """A new token from upstream (``current``: the best known one, e.g. for
        its refresh token); a :class:`ToknError` saying the fix when refused."""

    def token_from_record(self, record: dict[str, Any] | None) -> Token | None:
        """The persisted ``record`` (``None``: none stored) as a token, or the
        best token known without one (Kiro: the config's); ``None``: nothing."""

    def token_record(self, token: Token) -> dict[str, Any]:
        """What to persist of ``token``."""

    def token_saved(self, token: Token) -> None:
        """Keep a new token beyond the store (Kiro writes a rotated refresh
        token to the config file).  Runs in a worker thread."""


class TokenStore(Protocol):
    """Where tokens live and who may renew them, by ``(kind, account_id)``."""

    def peek(self, kind: str, account_id: str) -> Token | None:
        """The latest token this process knows (no I/O)."""

    async def read(self, kind: str, account_id: str) -> dict[str, Any] | None:
        """The persisted record (what other processes wrote too)."""

    async def put(self, kind: str, account_id: str, token: Token,
                  record: dict[str, Any]) -> None:
        """Make ``token`` the current one (bumps the generation) and persist ``record``."""

    def remember(self, kind: str, account_id: str, token: Token) -> None:
        """Hold ``token`` (another process's, read from the store) in memory,
        so the next request uses it without I/O; not a renewal."""

    def generation(self, kind: str, account_id: str) -> int:
        """How many tokens were put for the account (a renewal finished when it moved)."""

    def drop(self, kind: str, account_id: str) -> None:
        """Forget the account's token, in memory and persisted."""

    def lock(self, kind: str, account_id: str, *,
             across_processes: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """One renewal at a time for the account (in every process when asked)."""


class LocalTokens:
    """The default :class:`TokenStore`: tokens in memory, records in the 0600
    state file ``<kind>.json`` (keyed by account id), an asyncio lock per
    account and, across processes, a lock file beside the state files."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], Token] = {}
        self._generations: dict[tuple[str, str], int] = {}
        self._locks: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    def peek(self, kind: str, account_id: str) -> Token | None:
        return self._tokens.get((kind, account_id))

    async def read(self, kind: str, account_id: str) -> dict[str, Any] | None:
        record = state.read(kind).get(account_id)
        return record if isinstance(record, dict) else None

    async def put(self, kind: str, account_id: str, token: Token,
                  record: dict[str, Any]) -> None:
        key = (kind, account_id)
        self._tokens[key] = token
        self._generations[key] = self._generations.get(key, 0) + 1
        try:
            await asyncio.to_thread(state.update, kind, account_id, record)
        except OSError as exc:  # memory still holds it; the file is a cache
            log.error("cannot save the %s token of account %s: %s", kind, account_id, exc)

    def remember(self, kind: str, account_id: str, token: Token) -> None:
        self._tokens[(kind, account_id)] = token

    def generation(self, kind: str, account_id: str) -> int:
        return self._generations.get((kind, account_id), 0)

    def drop(self, kind: str, account_id: str) -> None:
        self._tokens.pop((kind, account_id), None)
        if account_id in state.read(kind):
            state.update(kind, account_id, None)

    @contextlib.asynccontextmanager
    async def lock(self, kind: str, account_id: str, *,
                   across_processes: bool) -> AsyncIterator[None]:
        key = (kind, account_id)
        loop = asyncio.get_running_loop()
        held = self._locks.get(key)
        if held is None or held[0] is not loop:  # an asyncio lock belongs to one loop
            held = self._locks[key] = (loop, asyncio.Lock())
        async with held[1]:
            if not across_processes:
                yield
                return
            async with machine_lock(kind, account_id):
                yield


def machine_lock(kind: str, account_id: str) -> contextlib.AbstractAsyncContextManager[None]:
    """The account's renewal lock among the tokn processes of this machine
    (a lock file beside the state files)."""
    return _file_lock(_lock_path(kind, account_id))


def _lock_path(kind: str, account_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in account_id)
    return paths.state_dir() / f"{kind}.{safe}.refresh"


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """:func:`tokn.paths.locked` without blocking the event loop.  A waiter
    cancelled meanwhile still releases the lock once its thread gets it."""
    held = paths.locked(path, timeout=LOCK_TIMEOUT)
    acquiring = asyncio.ensure_future(asyncio.to_thread(held.__enter__))
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:
        acquiring.add_done_callback(
            lambda f: None if f.cancelled() or f.exception() else held.__exit__(None, None, None))
        raise
    except TimeoutError as exc:
        raise ToknError(f"another tokn process has been refreshing this account's token for "
                        f"{LOCK_TIMEOUT:.0f} s ({exc}); try again.", status=503,
                        code="refresh_locked") from None
    try:
        yield
    finally:
        held.__exit__(None, None, None)


_stores: dict[Path, LocalTokens] = {}
_shared: list[TokenStore] = []  # the store a server shares with other replicas ([state] url)


def local_tokens() -> LocalTokens:
    """The process's store for the current state directory (``TOKN_HOME``)."""
    where = paths.state_dir()
    store = _stores.get(where)
    if store is None:
        store = _stores[where] = LocalTokens()
    return store


def use_store(store: TokenStore | None) -> None:
    """Make ``store`` the one new :class:`Refresher` objects use (a server with
    ``[state] url``); ``None``: back to :func:`local_tokens`."""
    _shared.clear()
    if store is not None:
        _shared.append(store)


def current_store() -> TokenStore:
    """The store set by :func:`use_store`, else :func:`local_tokens`."""
    return _shared[0] if _shared else local_tokens()


class Refresher:
    """One account's expiring token (see the module doc)."""

    def __init__(self, kind: str, account_id: str, source: TokenSource, *,
                 owner: str = "", single_use: bool = False,
                 store: TokenStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.kind = kind
        self.account_id = account_id
        self.source = source
        self.owner = owner
        self.single_use = single_use
        self.store = store if store is not None else current_store()
        self.clock = clock

    def current(self) -> Token | None:
        """The token in memory, if it is this account's (no I/O)."""
        tok = self.store.peek(self.kind, self.account_id)
        return tok if tok is not None and tok.owner == self.owner else None

    async def stored(self) -> Token | None:
        """The best token known: memory, or the persisted one when newer
        (another process renewed it), else what the source knows."""
        mine = self.current()
        theirs = self.source.token_from_record(
            await self.store.read(self.kind, self.account_id))
        if theirs is not None and theirs.owner != self.owner:
            theirs = None
        # ``>=``: the persisted record is written by every renewal, so at equal
        # expiry it is the later one (upstreams give whole seconds: a token
        # replaced within the second it was issued has the same expiry)
        if mine is None or (theirs is not None and theirs.expires_at >= mine.expires_at):
            if theirs is not None and theirs.fresh(self.clock()):
                self.store.remember(self.kind, self.account_id, theirs)
            return theirs
        return mine

    async def token(self, *, refresh: bool = False, failed: str | None = None) -> Token:
        """The current token, renewed when needed.

        ``failed``: the access token the upstream rejected: refreshed unless it
        was replaced meanwhile.  ``refresh``: renew now, unless a renewal
        finished while this call waited for the lock.
        """
        refresh = refresh or failed is not None
        tok = self.current()
        if not refresh and tok is not None and tok.fresh(self.clock()):
            return tok
        generation = self.store.generation(self.kind, self.account_id)
        async with self.store.lock(self.kind, self.account_id,
                                   across_processes=self.single_use):
            tok = await self.stored()
            now = self.clock()
            if refresh and tok is not None:
                if failed is not None:
                    if tok.access != failed and tok.valid(now):
                        return tok      # someone already replaced the rejected token
                elif self.store.generation(self.kind, self.account_id) != generation:
                    return tok          # a renewal finished while we waited
            elif tok is not None and tok.fresh(now):
                return tok
            try:
                new = await self.source.fetch_token(tok)
            except ToknError:
                if not refresh and tok is not None and tok.valid(now):
                    log.warning("%s %s: renewing the token failed; the current one is still "
                                "valid", self.kind, self.account_id)
                    return tok
                raise
            new.owner = self.owner
            await self.store.put(self.kind, self.account_id, new,
                                 self.source.token_record(new))
            await asyncio.to_thread(self.source.token_saved, new)
            return new

    def forget(self) -> None:
        self.store.drop(self.kind, self.account_id)


def bearer_of(headers: Any) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` header (``None``: none)."""
    auth = headers.get("authorization") if headers is not None else None
    if not auth:
        return None
    scheme, _, value = str(auth).partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
