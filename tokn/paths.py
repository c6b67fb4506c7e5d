"""Where tokn keeps its files.

platformdirs decides the defaults (``~/.config/tokn``, ``~/.local/state/tokn``,
``~/.local/share/tokn`` on Linux).  ``TOKN_HOME=DIR`` puts every one of them
under ``DIR`` (``DIR/config``, ``DIR/state``, ``DIR/data``), which is what the
test-suite does.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
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


def lock_file(path: Path) -> Path:
    """The lock file guarding ``path``: ``.NAME.lock`` beside it."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` shared by every process and thread.

    Read-modify-write of a file others also write (the config, state files)
    happens inside it, so no writer overwrites another's change.  The lock is
    an OS lock on a separate ``.NAME.lock`` file (released when the holder
    dies); waiting is bounded by ``timeout`` (then :class:`TimeoutError`).
    """
    lock = lock_file(path)
    ensure_private_dir(lock.parent)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while not try_lock(fd):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} stayed locked by another tokn process for "
                                   f"{timeout:.0f} s (lock file {lock}); try again")
            time.sleep(0.005)
        try:
            yield
        finally:
            unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the exclusive lock on ``fd`` if nobody holds it; whether it was taken."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
