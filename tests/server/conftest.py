"""Fixtures of the server tests: a running LocalServer on 127.0.0.1 (port 0) and HTTP helpers."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mimc_rx.server import AppConfig, LocalServer, ServerConfig

if TYPE_CHECKING:
    from .replay import Replay

TIMEOUT = 5.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Seconds any single wait in these tests may take; scale with MIMC_TEST_TIMEOUT_SCALE."""

APP = AppConfig(app_id=1000000000000000001, app_key="KEY-1", app_secret="SECRET-1", package="com.t")
OTHER_APP = AppConfig(app_id=1000000000000000002, app_key="KEY-2", app_secret="SECRET-2")


class FakeClock:
    """A wall clock the test moves by hand (token expiry without sleeping)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "server.db"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only: about the embedded SQLite store itself (its file, its in-memory state, "
        "seeding from synchronous code); the `server` fixture runs it on SQLite only",
    )


def make_server(db: Path | str, clock: FakeClock, **config: Any) -> LocalServer:
    """A server for APP and OTHER_APP with the fake clock and the given config overrides.

    ``db`` is an SQLite file (or ``":memory:"``) or a ``postgresql://`` DSN.
    """
    return LocalServer(db=db, apps=[APP, OTHER_APP], config=ServerConfig(clock=clock, **config))


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Where the `server` fixture keeps its state: each behaviour test runs on both storages.

    The PostgreSQL run is skipped, with the reason, only when PostgreSQL is not installed
    (``postgres_dsn`` in tests/conftest.py), or for a test marked ``sqlite_only``.
    """
    if request.param == "sqlite":
        return str(db_path)
    if request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip("about the embedded SQLite store")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
async def server(storage_url: str, clock: FakeClock) -> AsyncIterator[LocalServer]:
    async with make_server(storage_url, clock, max_group_members=5, backlog_limit=5) as srv:
        yield srv


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as client:
        yield client


@dataclass
class Account:
    """A user as the token service described it."""

    account: str
    uuid: int
    token: str
    key: str
    answer: dict[str, Any]


async def login_http(http: httpx.AsyncClient, account: str, app: AppConfig = APP) -> Account:
    """Get a token for ``account`` from the token service."""
    answer = (
        await http.post(
            "/api/account/token",
            json={
                "appId": str(app.app_id),
                "appKey": app.app_key,
                "appSecret": app.app_secret,
                "appAccount": account,
            },
        )
    ).json()
    assert answer["code"] == 200, answer
    data = answer["data"]
    return Account(account, int(data["miUserId"]), data["token"], data["miUserSecurityKey"], answer)


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Let the loop run until ``predicate()`` is true; fail after ``timeout`` seconds.

    ``predicate`` may return an awaitable (a storage read), which is awaited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.002)


@pytest.fixture
async def replay(tmp_path: Path) -> AsyncIterator[Replay]:
    """The server seeded with the official SDK capture (tests/server/replay.py)."""
    from .replay import open_replay  # imported late: replay.py imports this module

    async with open_replay(tmp_path) as state:
        yield state
