"""Server limits that protect clients and the server itself: frame sizes, slow readers.

Each test reproduces a reviewer's finding against the behaviour before the fix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.server import LocalServer
from mimc_rx.server.gateway import GatewayConnection
from mimc_rx.server.hub.outbox import compound_chunks

from .conftest import FakeClock, eventually, login_http, make_server
from .wire import WireClient

MIB = 1024 * 1024


class _Item:
    def __init__(self, size: int) -> None:
        self.payload = b"x" * size


def _sizes(chunks: Iterator[Any]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def test_compound_chunks_split_by_count_and_by_bytes() -> None:
    small = [_Item(10) for _ in range(7)]
    assert _sizes(compound_chunks(small, 3, MIB)) == [3, 3, 1]
    big = [_Item(100_000) for _ in range(12)]
    chunks = list(compound_chunks(big, 100, 512 * 1024))
    assert sum(map(len, chunks)) == 12
    assert all(sum(len(i.payload) for i in c) <= 512 * 1024 for c in chunks)
    assert [i for c in chunks for i in c] == big  # order kept, nothing lost


def test_a_message_larger_than_the_budget_goes_alone() -> None:
    items = [_Item(10), _Item(5000), _Item(10)]
    assert _sizes(compound_chunks(items, 100, 1000)) == [1, 1, 1]
    assert _sizes(compound_chunks([], 100, 1000)) == []


class _LimitedClient(WireClient):
    max_size = MIB  # what the SDKs and our client refuse above


async def test_big_backlog_reaches_a_client_with_a_1_mib_limit(
    db_path: Path, clock: FakeClock
) -> None:
    # 30 stored messages of 45 KB: one COMPOUND of all of them (1.35 MB) would be refused by the
    # client, which would reconnect and get the same frame forever.
    async with make_server(db_path, clock, backlog_limit=200) as server:
        import httpx

        async with httpx.AsyncClient(base_url=server.http_url) as http:
            alice = WireClient(server.ws_url, "alice")
            await alice.login((await login_http(http, "alice")).answer)
            for i in range(30):
                alice.session.send_p2p("bob", f"{i:02}" + "€" * 15_000, now=alice.now())
            await alice.flush()
            assert (await alice.next(ServerAck, 30)).ok
            bob = _LimitedClient(server.ws_url, "bob")
            await bob.login((await login_http(http, "bob")).answer)
            await bob.wait(lambda: len(bob.of(P2PMessage)) == 30 or bob.closed.is_set())
            assert not bob.closed.is_set(), bob.close_code
            assert [m.text[:2] for m in bob.of(P2PMessage)] == [f"{i:02}" for i in range(30)]
            assert max(bob.frame_sizes) <= MIB
            await alice.close()
            await bob.close()


class _StubSession:
    """Stands in for a ServerSession: hands the connection the frames a test chose."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.close_requested = False

    def data_to_send(self) -> list[bytes]:
        frames, self.frames = self.frames, []
        return frames


async def _stalled_connection(server: LocalServer) -> tuple[GatewayConnection, _StubSession]:
    """A connection whose peer never takes a byte: every write blocks."""
    assert server.hub is not None
    never = asyncio.Event()

    async def stalled_send(message: Any) -> None:
        await never.wait()

    conn = GatewayConnection(server.hub, stalled_send, "stalled")
    server.hub.attach(conn)  # as the gateway does: the hub's sweep watches its writes
    stub = _StubSession()
    conn.session = stub  # type: ignore[assignment]
    return conn, stub


async def test_slow_reader_is_closed_past_the_byte_cap(
    db_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_server(db_path, clock, max_outbound_bytes=MIB, send_timeout=3600.0) as server:
        conn, stub = await _stalled_connection(server)
        caplog.set_level(logging.WARNING, "mimc_rx.server.gateway")
        for _ in range(3):  # 3 x 400 KB in 3 frames: few frames, many bytes
            stub.frames = [b"x" * 400_000]
            conn.pump()
            await asyncio.sleep(0)
        assert not conn.is_open
        assert conn.queued_bytes == 0  # the queue is dropped, not kept for a dead reader
        assert "closing slow reader" in caplog.text
        await conn.wait_closed()


async def test_a_reader_under_the_byte_cap_stays_open(db_path: Path, clock: FakeClock) -> None:
    async with make_server(db_path, clock, max_outbound_bytes=MIB, send_timeout=3600.0) as server:
        conn, stub = await _stalled_connection(server)
        stub.frames = [b"x" * 100_000, b"y" * 100_000]
        conn.pump()
        await asyncio.sleep(0)
        assert conn.is_open
        # The writer holds the first frame (blocked in send); both count.
        assert conn.queued_bytes == 200_000
        conn.close()
        await conn.wait_closed()


async def test_a_stalled_write_closes_the_connection(
    db_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_server(db_path, clock, send_timeout=0.01) as server:
        conn, stub = await _stalled_connection(server)
        caplog.set_level(logging.WARNING, "mimc_rx.server.gateway")
        stub.frames = [b"x" * 10]
        conn.pump()
        await eventually(lambda: not conn.is_open)
        assert "write stalled" in caplog.text
        await conn.wait_closed()
