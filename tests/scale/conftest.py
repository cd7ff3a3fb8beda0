"""Several ``python -m mimc_rx serve`` processes on one PostgreSQL database and one Redis.

Each test gets a fresh database (``postgres_dsn``) and an emptied Redis (``redis_url``), and
starts the processes it needs with :func:`cluster` (a :class:`ServerCluster`, stopped at the
end; a traceback in any process's log fails the test). Clients are real ``MIMCUser``\\ s pinned to
a process by its URL: "alice on #0, bob on #1" is ``user(nodes[0], "alice")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from mimc_rx import Backoff, MIMCUser
from mimc_rx.client.values import TransportOptions
from mimc_rx.server.config import AppConfig
from mimc_rx.testing.process import ServerCluster, ServerProcess

SCALE = float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT = 10.0 * SCALE
"""Seconds any single wait may take (cross-process hops and engine restarts included)."""

FAST = Backoff(initial=0.05, max_delay=0.5, jitter=0.2)

StartCluster = Callable[..., Awaitable[ServerCluster]]


@pytest.fixture
async def cluster(postgres_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[StartCluster]:
    """``await cluster(n, shared_port=, apps=)``: n processes on this test's database and Redis."""
    started: list[ServerCluster] = []

    async def start(
        count: int, *, shared_port: bool = False, apps: Sequence[AppConfig] = ()
    ) -> ServerCluster:
        nodes = ServerCluster(
            count,
            storage_url=postgres_dsn,
            broker_url=redis_url,
            log_dir=tmp_path / f"cluster{len(started)}",
            shared_port=shared_port,
            apps=apps,
            extra_args=["--log-level", "WARNING"],
        )
        started.append(nodes)
        await nodes.start()
        return nodes

    yield start
    for nodes in started:
        await nodes.stop()
    tracebacks = [line for nodes in started for line in nodes.tracebacks()]
    assert tracebacks == [], "\n".join(
        p.log_text()[-3000:] for nodes in started for p in nodes if p.tracebacks()
    )


def user(
    node: ServerProcess,
    account: str,
    *,
    url: str | None = None,
    token_from: ServerProcess | None = None,
    **options: Any,
) -> MIMCUser:
    """A ``MIMCUser`` on ``node`` (or on ``url``, e.g. a proxy in front of it), quick to retry.

    Its tokens come from the token service at the same address, as a client behind a load
    balancer gets them, or from ``token_from``: any process may issue a token, and any other
    verifies it (tokens live in the shared database).
    """
    target = url or node.ws_url
    http = "http" + target.removeprefix("ws").rstrip("/")
    if token_from is not None:
        http = token_from.http_url
    options.setdefault("reconnect", FAST)
    options.setdefault(
        "transport_options",
        TransportOptions(ping_interval=0.3, ping_timeout=0.6, close_timeout=0.5),
    )
    return MIMCUser(
        account,
        app_id=node.app.app_id,
        token_fetcher=node.token_fetcher(account, base_url=http),
        url=target,
        login_timeout=TIMEOUT,
        **options,
    )


async def online(*users: MIMCUser) -> None:
    for u in users:
        status = await u.login()
        assert status.online, f"{u.app_account} could not log in: {status}"


async def offline(*users: MIMCUser) -> None:
    for u in users:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(u.close(), TIMEOUT)


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Let the loop run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)
