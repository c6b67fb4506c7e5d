"""Applying the config file to a running tokn: what SIGHUP and ``tokn reload`` do.

:func:`reload` is the one place a running tokn is asked to take up a changed
``config.toml``.  The serving loop calls it on SIGHUP (``tokn reload`` sends
one; so does ``systemctl --user reload`` for the unit ``tokn service install``
writes) and reports its :class:`Outcome` in the status file, where ``tokn
reload`` reads it.  A SIGHUP never stops tokn: a closed terminal no longer
ends a ``tokn serve`` started in it.

Live reload of the config is not implemented yet: the outcome says so, and
that ``tokn restart`` applies a changed config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tokn")

NOT_YET = ("this tokn does not apply config changes while it runs yet; "
           "`tokn restart` applies them")


@dataclass(frozen=True)
class Outcome:
    """What a reload did: ``applied`` whether the running config changed;
    ``message`` for people (what changed, or why nothing did)."""

    applied: bool
    message: str
    at: float = field(default_factory=time.time)


async def reload(runtime: Any, source: str) -> Outcome:
    """Re-read the config file and apply it to ``runtime`` (the seam where
    live reload plugs in); ``source`` says who asked ("SIGHUP")."""
    log.info("reload requested (%s)", source)
    outcome = Outcome(applied=False, message=NOT_YET)
    log.info("reload: %s", outcome.message)
    return outcome
