"""Real Redis and PostgreSQL for the replica tests (one of each per module;
emptied before every test)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shared.services import Postgres, Redis, missing


@pytest.fixture(scope="module")
def services_dir() -> Iterator[Path]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="tokn-shared-") as where:
        yield Path(where)


@pytest.fixture(scope="module")
def redis_module(services_dir: Path) -> Iterator[Redis]:
    where = services_dir / "redis"
    where.mkdir()
    server = Redis(where)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_module(services_dir: Path) -> Iterator[Postgres]:
    where = services_dir / "pg"
    where.mkdir()
    server = Postgres(where)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(redis_module: Redis) -> Redis:
    import redis

    if redis_module.proc is None or redis_module.proc.poll() is not None:
        redis_module.start()
    client = redis.Redis.from_url(redis_module.url)
    client.flushall()
    client.close()
    return redis_module


@pytest.fixture
def pg_server(pg_module: Postgres) -> Postgres:
    import psycopg

    if pg_module.proc is None or pg_module.proc.poll() is not None:
        pg_module.start()
    with psycopg.connect(pg_module.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS requests")
    return pg_module
