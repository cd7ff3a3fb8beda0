"""Fixtures shared by every test folder: the throw-away PostgreSQL and Redis of issue 14.

Each engine starts once per test session, on 127.0.0.1 with its data in a temporary directory
(:mod:`mimc_rx.testing.engines`), and only when a test asks for it. A test that needs an engine
is skipped, with the reason, only when the engine's binaries are not installed; an engine that is
installed but fails to start is an error, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mimc_rx.testing.engines import (
    PostgresEngine,
    RedisEngine,
    find_postgres_bin,
    find_redis_server,
)

NO_POSTGRES = (
    "PostgreSQL is not installed (Debian's 'postgresql' package: .ci/run installs it; "
    "or set MIMC_POSTGRES_BIN to the directory of initdb/postgres)"
)
NO_REDIS = (
    "redis-server is not installed (Debian's 'redis-server' package: .ci/run installs it; "
    "or set MIMC_REDIS_SERVER)"
)


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[PostgresEngine]:
    """One PostgreSQL cluster for the session; tests take a fresh database from it."""
    if find_postgres_bin() is None:
        pytest.skip(NO_POSTGRES)
    with PostgresEngine() as engine:
        yield engine


@pytest.fixture
def postgres_dsn(postgres_engine: PostgresEngine) -> str:
    """A fresh, empty database of the session's cluster, as a DSN."""
    return postgres_engine.create_database()


@pytest.fixture(scope="session")
def redis_engine() -> Iterator[RedisEngine]:
    """One redis-server for the session. A test that restarts it leaves it running."""
    if find_redis_server() is None:
        pytest.skip(NO_REDIS)
    with RedisEngine() as engine:
        yield engine


@pytest.fixture
def redis_url(redis_engine: RedisEngine) -> str:
    """The session's Redis, running and emptied (``FLUSHALL``) for this test."""
    if not redis_engine.is_running:
        redis_engine.start()
    redis_engine.flushall()
    return redis_engine.url
