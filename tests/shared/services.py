"""Throwaway ``redis-server`` and PostgreSQL instances for the replica tests:
free loopback ports, data in a temporary directory, output to a file.
PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
user (created by the Debian package)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
# Debian's layout; the newest installed major version (15 on bookworm)
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"),
             key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))


def missing() -> str | None:
    """Why these tests cannot run here (binaries absent), or ``None``."""
    if not os.access(REDIS, os.X_OK):
        return "redis-server is not installed (apt-get install redis-server)"
    if not all(os.access(PG_BIN / b, os.X_OK) for b in ("initdb", "postgres")):
        return f"PostgreSQL is not installed at {PG_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run PostgreSQL as"
    return None


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening after {timeout} s: {log.read_text(errors='replace')}")


class Redis:
    def __init__(self, where: Path) -> None:
        self.where = where
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port)."""
        log = self.where / "redis.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.where)], stdout=out,
                stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Postgres:
    def __init__(self, where: Path) -> None:
        self.where = where
        self.data = where / "pgdata"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(where, pw.pw_uid, pw.pw_gid)
            for parent in where.parents:  # the postgres user must reach its directory
                if parent == Path(tempfile.gettempdir()) or parent == parent.parent:
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o111)
            self.as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                            "--init-groups"]
        subprocess.run([*self.as_user, str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                        "tokn", "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://tokn@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = self.where / "postgres.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.as_user, str(PG_BIN / "postgres"), "-D", str(self.data), "-p",
                 str(self.port), "-k", str(self.where), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off"], stdout=out, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, log)
        import psycopg

        deadline = time.monotonic() + 30
        while True:  # listening comes before accepting ("the database system is starting up")
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown: waits for clients; fast below
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(2)  # SIGINT: fast shutdown
                self.proc.wait(20)
