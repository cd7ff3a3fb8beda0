"""A login storm, CI-sized (issue 10): 200 ``MIMCUser``s of one process log in at once against a
server child process, then each sends 5 stored messages to others picked at random; everyone
gets online and every message arrives exactly once. ``bench/login_storm.py`` runs 1,000."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from mimc_rx.client.http import close_shared_client, shared_client
from mimc_rx.testing import ServerProcess
from mimc_rx.testing.storm import StormPlan, run_login_storm


async def test_200_users_log_in_at_once_and_every_message_arrives_once(tmp_path: Path) -> None:
    async with ServerProcess(tmp_path / "chat.db", extra_args=["--log-level", "WARNING"]) as server:
        result = await run_login_storm(server, StormPlan(users=200, messages_per_user=5))
    summary = result.summary()
    assert result.online == 200, summary
    assert result.sent == 1000, summary
    assert (result.lost, result.duplicated) == (0, 0), summary
    assert server.tracebacks() == []


async def test_token_fetchers_share_one_http_client_per_loop() -> None:
    first = shared_client()
    assert shared_client() is first
    assert isinstance(first, httpx.AsyncClient)
    await close_shared_client()
    assert first.is_closed
    second = shared_client()
    assert second is not first
    await close_shared_client()
    await close_shared_client()  # idempotent

    # Another loop gets a client of its own (a client belongs to the loop that made it).
    def other_loop() -> httpx.AsyncClient:
        async def make() -> httpx.AsyncClient:
            client = shared_client()
            await close_shared_client()
            return client

        return asyncio.run(make())

    assert await asyncio.to_thread(other_loop) is not second
