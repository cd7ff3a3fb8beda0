"""The storage engines under one parametrized fixture: the same suite runs on each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.interface import Storage
from mimc_rx.server.storage.sqlite_async import SQLiteStorage

APP = AppConfig(app_id=1000000000000000001, app_key="KEY-1", app_secret="SECRET-1", package="com.t")
OTHER_APP = AppConfig(app_id=1000000000000000002, app_key="KEY-2", app_secret="SECRET-2")

Opener = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=["sqlite", "postgres"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens a storage on this test's database; every storage opened is closed at the end.

    Opening twice gives two handles on the same data: a restart (SQLite) or a second server
    process (PostgreSQL).
    """
    opened: list[Storage] = []
    if request.param == "sqlite":
        path = tmp_path / "chat.db"

        async def open_one() -> Storage:
            storage: Storage = SQLiteStorage.at(path)
            await storage.open()
            opened.append(storage)
            return storage
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        from mimc_rx.server.storage.postgres import PostgresStorage

        async def open_one() -> Storage:
            storage: Storage = PostgresStorage(dsn, max_size=4)
            await storage.open()
            opened.append(storage)
            return storage

    yield open_one
    for storage in reversed(opened):
        await storage.close()


@pytest.fixture
async def storage(opener: Opener) -> Storage:
    """A fresh, empty storage of each engine."""
    return await opener()
