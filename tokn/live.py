"""Live config: a running tokn takes up a changed ``config.toml``.

:func:`watch` polls the file's ``stat`` twice a second (one system call, no
thread, no dependency; an edit is taken up 0.5-1 s after the file stops
changing, so an editor writing in several steps is read once, whole) and asks
the runtime to reload when it changed.  ``tokn reload`` / SIGHUP and the
dashboard's account actions ask directly.

:func:`reload` reads and validates the file, lets :func:`tokn.reload.plan`
say what changed, and :func:`apply` swaps the running state: the config in
force (everything that reads it through the runtime's accessor sees the new
one from its next read), the pool's providers (rebuilt only for accounts
that changed; requests in flight keep the ones they hold), the proxy's
intercepted hosts and the log level and format.  Settings only a restart
applies keep their running values and are reported.  A file that does not
load keeps the running config, with one log line saying why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from tokn import ca
from tokn.config import Config, ConfigError, load_config
from tokn.errors import ToknError
from tokn.logs import apply_logging
from tokn.reload import Outcome, Plan, digest, in_force, plan

log = logging.getLogger("tokn")

POLL_SECS = 0.5
# the running proxy holds its CA in memory: a new one needs a restart too
REGENERATE = "run `tokn proxy ca regenerate`, trust the new CA, then `tokn restart`"


def signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is written or replaced; None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def ca_notes(cfg: Config, changes: Plan) -> list[str]:
    """What the proxy's CA needs after intercepted hosts changed."""
    if not changes.ca_keys:
        return []
    notes = []
    if "ca.name_constraints" in changes.keys:
        notes.append("[ca] name_constraints applies to a new CA: " + REGENERATE)
    try:
        outdated = ca.constraints_outdated(cfg)
    except (OSError, ValueError) as exc:
        outdated = []
        notes.append(f"cannot read the CA to check its name constraints: {exc}")
    if outdated:
        notes.append("the CA's name constraints do not cover " + ", ".join(outdated)
                     + "; before the proxy can intercept them: " + REGENERATE)
    return notes


def apply(runtime: Any, new: Config, changes: Plan) -> list[str]:
    """Swap ``runtime`` over to ``new`` (see module doc); returns notes for
    people (what needs another step).  Raises a ToknError, before changing
    anything, when an account's provider cannot be built."""
    pool = runtime.pool
    running = in_force(runtime.cfg, new, changes.restart)
    providers = pool.build(running.accounts, keep=pool.providers)
    runtime.cfg = running
    pool.swap(providers)
    if any(k.startswith("logging.") for k in changes.keys):
        apply_logging(running)
    if runtime.proxy is not None:
        runtime.proxy.apply(running)
    return ca_notes(running, changes)


def _kept(why: str, seen: str = "") -> Outcome:
    """The outcome (and the one log line) of a config file that is not applied."""
    outcome = Outcome(False, "the running config is kept: " + " ".join(why.split()), seen)
    log.warning("config not reloaded: %s", outcome.message)
    return outcome


async def reload(runtime: Any, source: str, *, force: bool = True) -> Outcome | None:
    """Re-read the config file and apply it to ``runtime``; ``source`` says who
    asked.  Without ``force`` (the watcher) a file whose content was already
    seen returns None."""
    path = runtime.cfg.path
    if path is None:
        return Outcome(False, "this tokn runs without a config file; nothing to reload")
    if force:
        log.info("reload requested (%s)", source)
    try:
        raw = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return _kept(f"{path} is gone")
    except OSError as exc:
        return _kept(f"cannot read {path}: {exc.strerror}")
    seen = digest(raw)
    if not force and seen == runtime.config_digest:
        return None
    runtime.config_digest = seen  # applied or refused: the watcher says it once
    try:
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        return _kept(str(exc), seen)
    changes = plan(runtime.cfg, new)
    try:
        notes = apply(runtime, new, changes) if not changes.empty else []
    except ToknError as exc:
        return _kept(exc.message, seen)
    message = "; ".join([changes.summary(), *notes])
    outcome = Outcome(True, message, seen, changes.restart)
    if not changes.empty or force:
        log.info("config reloaded (%s): %s", source, message)
        for warning in new.warnings:
            log.warning("%s", warning)
    return outcome


async def watch(runtime: Any, every: float = POLL_SECS) -> None:
    """Reload whenever the config file changed and then held still for
    ``every`` seconds; runs until cancelled.  The first look is at once."""
    path = runtime.cfg.path
    if path is None:
        return
    last, pending = signature(path), True
    while True:
        now = signature(path)
        if now != last:
            last, pending = now, True
        elif pending:
            pending = False
            try:
                await runtime.reload("file", force=False)
            except Exception:  # noqa: BLE001 - the watcher keeps watching
                log.exception("config reload failed")
        await asyncio.sleep(every)
