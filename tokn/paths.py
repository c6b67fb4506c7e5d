"""Where tokn keeps its files.

platformdirs decides the defaults (``~/.config/tokn``, ``~/.local/state/tokn``,
``~/.local/share/tokn`` on Linux).  ``TOKN_HOME=DIR`` puts every one of them
under ``DIR`` (``DIR/config``, ``DIR/state``, ``DIR/data``), which is what the
test-suite does.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "tokn"


def _home() -> Path | None:
    value = os.environ.get("TOKN_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP))


def state_dir() -> Path:
    home = _home()
    return home / "state" if home else Path(platformdirs.user_state_dir(APP))


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP))


def config_file() -> Path:
    override = os.environ.get("TOKN_CONFIG")
    return Path(override).expanduser() if override else config_dir() / "config.toml"


def ca_dir() -> Path:
    return config_dir() / "ca"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically: temp file in the same dir, fsync, rename.

    The file never exists with looser permissions than ``mode``.
    """
    ensure_private_dir(path.parent)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
