"""Small JSON state files (cached tokens, account health) under the state dir.

Each file is written atomically with mode 0600, so a crash never leaves a
half-written token and another user never reads one.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tokn import paths

_lock = threading.Lock()


def _path(name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return paths.state_dir() / f"{safe}.json"


def read(name: str) -> dict[str, Any]:
    try:
        return json.loads(_path(name).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write(name: str, data: dict[str, Any]) -> None:
    with _lock:
        paths.write_private(_path(name), json.dumps(data, indent=1, sort_keys=True))


def update(name: str, key: str, value: Any) -> None:
    """Set one top-level key of a state file (read-modify-write under a lock)."""
    with _lock:
        data = read(name)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        paths.write_private(_path(name), json.dumps(data, indent=1, sort_keys=True))
