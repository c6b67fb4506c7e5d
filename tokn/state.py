"""Small JSON state files (cached tokens, account health) under the state dir.

Each file is written atomically with mode 0600, so a crash never leaves a
half-written token and another user never reads one.  Writes take the file's
cross-process lock (:func:`tokn.paths.locked`) around read-modify-write, so the
server and a CLI command updating different keys never lose each other's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokn import paths


def _path(name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return paths.state_dir() / f"{safe}.json"


def read(name: str) -> dict[str, Any]:
    try:
        data = json.loads(_path(name).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # missing, not JSON, not UTF-8
        return {}
    return data if isinstance(data, dict) else {}


def write(name: str, data: dict[str, Any]) -> None:
    path = _path(name)
    with paths.locked(path):
        paths.write_private(path, json.dumps(data, indent=1, sort_keys=True))


def update(name: str, key: str, value: Any) -> None:
    """Set one top-level key of a state file (``None`` removes it); the file is
    read again under the cross-process lock, so other keys' changes are kept."""
    path = _path(name)
    with paths.locked(path):
        data = read(name)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        paths.write_private(path, json.dumps(data, indent=1, sort_keys=True))
