"""ServerConfig.max_tick_items: one socket read's burst is written and acked in several ticks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.server import LocalServer, ServerConfig
from mimc_rx.server.storage import Store
from mimc_rx.server.storage.interface import Intent, Outcome, P2PWrite
from mimc_rx.server.storage.sqlite_async import SQLiteStorage

from .conftest import APP, TIMEOUT, FakeClock, login_http
from .wire import WireClient


class CountingStorage(SQLiteStorage):
    """The SQLite storage, noting how many messages each ``write_tick`` wrote."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.ticks: list[int] = []

    async def write_tick(self, intents: Sequence[Intent]) -> list[Outcome]:
        messages = sum(isinstance(i, P2PWrite) for i in intents)
        if messages:
            self.ticks.append(messages)
        return await super().write_tick(intents)


async def test_a_burst_in_one_read_is_written_and_acked_in_bounded_ticks(
    db_path: Path, clock: FakeClock
) -> None:
    storage = CountingStorage(Store(db_path))
    config = ServerConfig(clock=clock, max_tick_items=10)
    async with (
        LocalServer(apps=[APP], config=config, storage=storage) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        alice, bob = WireClient(server.ws_url, "alice"), WireClient(server.ws_url, "bob")
        await alice.login((await login_http(http, "alice")).answer)
        await bob.login((await login_http(http, "bob")).answer)
        assert server.hub is not None
        [conn] = [c for c in server.hub.connections if c.user and c.user.account == "alice"]
        sent = [alice.session.send_p2p("bob", f"m{i}", now=alice.now()) for i in range(25)]
        frames = alice.session.data_to_send()
        assert len(frames) == 25
        # What one socket read of 25 messages does, deterministically: every frame is handled
        # before the loop runs the tick.
        for frame in frames:
            conn.receive(frame)  # type: ignore[attr-defined]
        await alice.next(ServerAck, 25)
        await bob.next(P2PMessage, 25)
        assert storage.ticks == [10, 10, 5]
        assert [a.packet_id for a in alice.of(ServerAck)] == sent  # in order, all acked
        assert [m.text for m in bob.of(P2PMessage)] == [f"m{i}" for i in range(25)]
        await alice.close()
        await bob.close()
