"""Faults under load: a server process killed with SIGKILL, Redis restarted empty.

Two numbered streams of stored messages run at a steady pace, alice -> bob and bob -> alice,
with alice on #0 and bob on #1, so that every message crosses processes and each fault hits
both a sender and a receiver. The application sends each number once; what a fault leaves
unacked is the outbox's to resend, under the same packet id, and the server's (sender, packet
id) dedup in PostgreSQL stores it once. Counted at the end, after a barrier message on each
path: numbers never received (lost), received twice (duplicated), sends never acked, or acked
twice.

**The kill.** alice reaches the servers through a :class:`FaultProxy` that stands in for a TCP
load balancer: when #0 dies, the balancer's health check takes it out, which here is the test
pointing the proxy's upstream at #1. alice's client sees its connection drop, reconnects to the
same address, gets a token from #1 and logs in there; her presence entry on #0 is overwritten
by #1's claim (and #0's would expire with its liveness key anyway).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from mimc_rx import MIMCUser
from mimc_rx.client.values import Disconnected
from mimc_rx.errors import NotLoggedIn, OutboxFull
from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.testing.engines import RedisEngine
from mimc_rx.testing.proxy import FaultProxy

from .conftest import SCALE, StartCluster, eventually, offline, online, user

MESSAGES = 300
RATE = 150.0  # per stream: two seconds of load
SETTLE = 20.0 * SCALE


class Stream:
    """``count`` numbered stored messages from ``sender`` to ``receiver``, counted both ends."""

    def __init__(self, sender: MIMCUser, receiver: MIMCUser, count: int) -> None:
        self.sender, self.receiver, self.count = sender, receiver, count
        self.prefix = f"{sender.app_account}:"
        self.received: Counter[int] = Counter()
        self.acks: Counter[str] = Counter()
        self.pids: list[str] = []
        self.barrier_seen = False
        receiver.p2p_messages.subscribe(self._on_message)
        sender.server_acks.subscribe(self._on_ack)

    def _on_message(self, message: P2PMessage) -> None:
        if message.from_account != self.sender.app_account:
            return
        if message.text == f"{self.prefix}barrier":
            self.barrier_seen = True
        elif message.text.startswith(self.prefix):
            self.received[int(message.text.removeprefix(self.prefix))] += 1

    def _on_ack(self, ack: ServerAck) -> None:
        self.acks[ack.packet_id] += 1

    async def send_all(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(self.count):
            if (delay := start + n / rate - loop.time()) > 0:
                await asyncio.sleep(delay)
            await self._send(f"{self.prefix}{n}")

    async def _send(self, text: str) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE
        while True:
            try:
                pid = self.sender.send_message(self.receiver.app_account, text)
            except (NotLoggedIn, OutboxFull):
                # Nothing was sent: wait for the reconnect (or for acks) and send it then.
                assert loop.time() < deadline, f"{self.sender.app_account} stayed offline"
                await asyncio.sleep(0.01)
                continue
            self.pids.append(pid)
            return pid

    def settled(self) -> bool:
        return len(self.received) == self.count and set(self.acks) >= set(self.pids)

    async def barrier(self) -> None:
        """A last message on the same path: anything queued before it has arrived by then."""
        self.barrier_seen = False
        await self._send(f"{self.prefix}barrier")
        await eventually(lambda: self.barrier_seen, SETTLE)

    def problems(self) -> dict[str, int]:
        return {
            "lost": self.count - len(self.received),
            "duplicated": sum(n - 1 for n in self.received.values()),
            "unacked": len(set(self.pids) - set(self.acks)),
            "acked twice": sum(1 for pid in self.pids if self.acks[pid] > 1),
        }


async def _load_through(fault: asyncio.Task[None], streams: list[Stream]) -> None:
    await asyncio.gather(*(s.send_all(RATE) for s in streams), fault)
    await eventually(lambda: all(s.settled() for s in streams), SETTLE)
    for s in streams:
        await s.barrier()
    for s in streams:
        assert s.problems() == dict.fromkeys(s.problems(), 0), s.prefix


async def test_kill_9_of_one_of_two_processes_moves_its_users_and_loses_nothing(
    cluster: StartCluster,
) -> None:
    nodes = await cluster(2)
    async with FaultProxy.for_url(nodes[0].ws_url) as balancer:
        alice = user(nodes[0], "alice", url=balancer.url(), resource="alice-tab")
        bob = user(nodes[1], "bob", resource="bob-tab")
        drops: list[Disconnected] = []
        alice.disconnects.subscribe(drops.append)
        streams = [Stream(alice, bob, MESSAGES), Stream(bob, alice, MESSAGES)]
        await online(alice, bob)

        async def kill_0() -> None:
            await asyncio.sleep(MESSAGES / RATE / 3)
            await nodes[0].kill()
            balancer.upstream = (nodes[1].host, nodes[1].port)  # the health check's verdict

        await _load_through(asyncio.ensure_future(kill_0()), streams)
        assert drops, "alice's connection survived the kill: the test did not test"
        assert alice.is_logged_in
        assert nodes[0].returncode == -9
        await offline(alice, bob)


async def test_a_redis_restart_mid_load_delays_but_loses_nothing(
    cluster: StartCluster, redis_engine: RedisEngine
) -> None:
    nodes = await cluster(2)
    alice, bob = user(nodes[0], "alice"), user(nodes[1], "bob")
    streams = [Stream(alice, bob, MESSAGES), Stream(bob, alice, MESSAGES)]
    await online(alice, bob)
    starts = redis_engine.starts

    async def restart_redis() -> None:
        await asyncio.sleep(MESSAGES / RATE / 3)
        # Empty afterwards (no persistence): presence and subscriptions are gone with it.
        await asyncio.to_thread(redis_engine.restart, down_for=0.5)

    await _load_through(asyncio.ensure_future(restart_redis()), streams)
    assert redis_engine.starts == starts + 1
    # The outage was felt: the processes' brokers lost Redis (and said so once), mid-load.
    assert any("unreachable" in node.log_text() for node in nodes)
    # Both users kept their connections: only the signals between the processes were lost.
    assert alice.is_logged_in
    assert bob.is_logged_in
    await offline(alice, bob)
