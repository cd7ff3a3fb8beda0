"""The brokers: the in-process one, and the Redis one against a real redis-server.

The Redis tests run two brokers as two nodes in one event loop (each has its own connections,
as two processes would), a third in a child process to SIGKILL, and restart Redis under them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mimc_rx.server.broker import (
    Broker,
    LocalBroker,
    LocalBus,
    Signal,
    SignalKind,
    decode_signal,
    encode_signal,
)
from mimc_rx.testing.engines import RedisEngine

from .conftest import TIMEOUT, eventually

ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """What one node received."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.resyncs = 0

    def __call__(self, signal: Signal) -> None:
        self.signals.append(signal)

    def resynced(self) -> None:
        self.resyncs += 1

    def kinds(self) -> list[SignalKind]:
        return [s.kind for s in self.signals]


def test_signals_round_trip_and_junk_is_refused() -> None:
    signal = Signal(
        kind=SignalKind.FANOUT,
        uuids=(1, 2**62),
        resource="phone",
        topic_id=7,
        exclude=(1, "pad"),
        origin="n1",
        body=b"\x00\n\xffbody",
    )
    assert decode_signal(encode_signal(signal)) == signal
    plain = Signal(kind=SignalKind.LOOK, uuids=(5,))
    assert decode_signal(encode_signal(plain)) == plain
    for junk in (b"", b"hello", b"{}\n", b'{"k": "nope"}\nx', b"[1]\n"):
        with pytest.raises(ValueError, match="signal"):
            decode_signal(junk)


# ---------------------------------------------------------------------------- the local broker


async def test_local_brokers_on_one_bus_behave_as_nodes() -> None:
    bus = LocalBus()
    a, b = LocalBroker(bus, "a"), LocalBroker(bus, "b")
    inbox_a, inbox_b = Inbox(), Inbox()
    await a.start(inbox_a)
    await b.start(inbox_b)
    assert isinstance(a, Broker)
    assert await a.claim(1, "phone") is None
    assert await b.claim(2, "pad") is None
    assert await a.holders([1, 2, 3]) == {1: {"phone": "a"}, 2: {"pad": "b"}}
    assert await a.send("b", Signal(kind=SignalKind.DELIVER, uuids=(2,), body=b"m"))
    assert not await a.send("nobody", Signal(kind=SignalKind.LOOK))
    await a.broadcast(Signal(kind=SignalKind.CHANGED, topic_id=9))
    await eventually(lambda: len(inbox_b.signals) == 2)
    assert inbox_b.signals[0].origin == "a"
    assert inbox_b.kinds() == [SignalKind.DELIVER, SignalKind.CHANGED]
    assert inbox_a.signals == []  # not its own broadcast
    # The same resource on another node: the first holder is kicked.
    assert await b.claim(1, "phone") == "a"
    await eventually(lambda: inbox_a.kinds() == [SignalKind.KICK])
    assert inbox_a.signals[0].uuids == (1,)
    await a.release(1, "phone")  # late: b's claim stays
    assert await a.holders([1]) == {1: {"phone": "b"}}
    await b.close()
    assert await a.holders([1, 2]) == {}


# ---------------------------------------------------------------------------- the Redis broker


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[Broker, Inbox, Broker, Inbox]]:
    from mimc_rx.server.broker_redis import RedisBroker

    a = RedisBroker(redis_url, node_id="a", heartbeat=0.1, ttl=0.5)
    b = RedisBroker(redis_url, node_id="b", heartbeat=0.1, ttl=0.5)
    inbox_a, inbox_b = Inbox(), Inbox()
    await a.start(inbox_a, inbox_a.resynced)
    await b.start(inbox_b, inbox_b.resynced)
    yield a, inbox_a, b, inbox_b
    await a.close()
    await b.close()


async def test_redis_presence_signals_and_kicks(nodes: tuple[Broker, Inbox, Broker, Inbox]) -> None:
    a, inbox_a, b, inbox_b = nodes
    assert await a.claim(1, "phone") is None
    assert await b.claim(1, "pad") is None
    assert await b.claim(2, "phone") is None
    assert await a.holders([1, 2, 3]) == {1: {"phone": "a", "pad": "b"}, 2: {"phone": "b"}}
    body = bytes(range(256))
    assert await a.send("b", Signal(kind=SignalKind.DELIVER, uuids=(2,), body=body))
    assert await a.send("a", Signal(kind=SignalKind.LOOK, uuids=(1,)))  # to itself
    assert await b.broadcast(Signal(kind=SignalKind.CHANGED, topic_id=4))
    await eventually(lambda: len(inbox_b.signals) == 1 and len(inbox_a.signals) == 2)
    assert inbox_b.signals[0] == Signal(kind=SignalKind.DELIVER, uuids=(2,), origin="a", body=body)
    assert sorted(inbox_a.kinds()) == [SignalKind.CHANGED, SignalKind.LOOK]
    # b logs in alice's phone: a is kicked, and a's late release leaves b's entry alone.
    assert await b.claim(1, "phone") == "a"
    await eventually(lambda: SignalKind.KICK in inbox_a.kinds())
    kick = inbox_a.signals[-1]
    assert (kick.uuids, kick.resource, kick.origin) == ((1,), "phone", "b")
    await a.release(1, "phone")
    assert await a.holders([1]) == {1: {"phone": "b", "pad": "b"}}
    await b.release(1, "pad")
    assert await a.holders([1]) == {1: {"phone": "b"}}


_CHILD = """
import asyncio, sys
from mimc_rx.server.broker_redis import RedisBroker

async def main() -> None:
    broker = RedisBroker(sys.argv[1], node_id="doomed", heartbeat=0.1, ttl=0.5)
    await broker.start(lambda signal: None)
    await broker.claim(77, "phone")
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_process_vanishes_from_presence(
    nodes: tuple[Broker, Inbox, Broker, Inbox], redis_url: str
) -> None:
    a, _, _, _ = nodes
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, redis_url, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
        assert line.strip() == b"ready"
        assert await a.holders([77]) == {77: {"phone": "doomed"}}
        # Alive past several ttl periods while it beats.
        await asyncio.sleep(0.8)
        assert await a.holders([77]) == {77: {"phone": "doomed"}}
        child.kill()
        await asyncio.wait_for(child.wait(), TIMEOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while await a.holders([77]):
            assert loop.time() < deadline, "the killed node's presence never expired"
            await asyncio.sleep(0.05)
        # A new login of that resource on a live node is not told to kick anyone.
        assert await a.claim(77, "phone") is None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_redis_restart_signals_resume_and_presence_comes_back(
    nodes: tuple[Broker, Inbox, Broker, Inbox],
    redis_engine: RedisEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, inbox_a, b, inbox_b = nodes
    await a.claim(1, "phone")
    await b.claim(2, "pad")
    caplog.set_level(logging.WARNING, logger="mimc_rx.server.broker_redis")
    await asyncio.to_thread(redis_engine.kill)
    # Down: publishing fails softly, presence lookups are empty, nothing raises.
    assert not await a.send("b", Signal(kind=SignalKind.LOOK, uuids=(2,)))
    assert not await a.send("b", Signal(kind=SignalKind.LOOK, uuids=(2,)))
    assert await a.holders([1, 2]) == {}
    assert await b.claim(3, "watch") is None  # remembered, written back when Redis returns
    await asyncio.sleep(0.3)
    await asyncio.to_thread(redis_engine.start)  # same port, no data at all
    await eventually(lambda: inbox_a.resyncs >= 1 and inbox_b.resyncs >= 1)

    async def delivered() -> bool:
        before = len(inbox_b.signals)
        await a.send("b", Signal(kind=SignalKind.DELIVER, uuids=(2,), body=b"after"))
        await asyncio.sleep(0.05)
        return len(inbox_b.signals) > before

    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not await delivered():
        assert loop.time() < deadline, "signals did not resume after the restart"
    assert inbox_b.signals[-1].body == b"after"
    assert await a.holders([1, 2, 3]) == {
        1: {"phone": "a"},
        2: {"pad": "b"},
        3: {"watch": "b"},
    }
    # One warning when Redis went away and one when it came back, per node: not one per call.
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) <= 2, messages
    assert sum("reachable again" in m for m in messages) <= 2, messages
    assert "Traceback" not in caplog.text
