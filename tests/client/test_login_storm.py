"""A login storm, CI-sized (issue 10): 200 ``MIMCUser``s of one process log in at once against a
server child process, then each sends 5 stored messages to others picked at random; everyone
gets online and every message arrives exactly once. ``bench/login_storm.py`` runs 1,000."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from mimc_rx.client.http import _POOL_SIZE as POOL_SIZE
from mimc_rx.client.http import AccountTokenFetcher, close_shared_client, shared_client
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


async def test_a_storm_of_fetches_waits_in_a_fifo_not_in_the_http_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpcore's pool walks every queued request over every connection whenever a request comes
    # or goes: a thousand fetches queued there cost the storm most of its CPU. The shared client
    # lets only as many requests into the pool as it has connections; the rest wait before it.
    held = asyncio.Event()
    release = asyncio.Event()
    at_server = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal at_server
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # keep-alive: one request after another
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                at_server += 1
                if at_server == POOL_SIZE:
                    held.set()
                await release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    in_pool = peak_in_pool = 0
    original = httpcore.AsyncConnectionPool.handle_async_request

    async def counting(self: httpcore.AsyncConnectionPool, request: httpcore.Request) -> Any:
        nonlocal in_pool, peak_in_pool
        in_pool += 1
        peak_in_pool = max(peak_in_pool, in_pool)
        try:
            return await original(self, request)
        finally:
            in_pool -= 1

    monkeypatch.setattr(httpcore.AsyncConnectionPool, "handle_async_request", counting)
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fetchers = [
        AccountTokenFetcher(
            f"http://127.0.0.1:{port}", app_id=1, app_key="k", app_secret="s", app_account=f"u{i}"
        )
        for i in range(10 * POOL_SIZE)
    ]
    async with server:
        fetches = asyncio.gather(*(fetch() for fetch in fetchers))
        await asyncio.wait_for(held.wait(), 10.0)
        await asyncio.sleep(0.05)  # the others had their chance to enter the pool
        assert (at_server, peak_in_pool) == (POOL_SIZE, POOL_SIZE)
        release.set()
        assert await asyncio.wait_for(fetches, 10.0) == [b"{}"] * len(fetchers)
        await close_shared_client()
    assert peak_in_pool == POOL_SIZE
