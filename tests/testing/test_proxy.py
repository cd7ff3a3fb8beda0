"""FaultProxy: each fault observed from plain sockets through an echo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import socket
import struct
import time
from typing import Any

import pytest

from mimc_rx.testing import FaultKind, FaultProxy, FaultRecord, fault_spans

from .conftest import SILENCE, TIMEOUT, EchoServer, connect, eventually, roundtrip


async def test_forwards_both_ways_and_counts_bytes(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer, b"hello")
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: proxy.stats().connections_open == 0)
    stats = proxy.stats()
    assert (stats.connections_total, stats.bytes_up, stats.bytes_down) == (1, 5, 5)
    await eventually(lambda: echo.endings == ["eof"])  # a clean close passes through as FIN


async def test_cut_resets_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    record = proxy.cut()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), TIMEOUT)
    await eventually(lambda: echo.endings == ["ConnectionResetError"])
    assert (record.kind, record.route, record.connections) == (FaultKind.CUT, None, 1)
    assert proxy.stats().cuts == 1
    again = await connect(proxy)  # a cut is an instant: new connections flow
    await roundtrip(*again)


async def test_half_open_is_a_silent_peer_until_healed(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    proxy.half_open()
    writer.write(b"into the void")
    await writer.drain()
    with pytest.raises(TimeoutError):  # neither data nor a close
        await asyncio.wait_for(reader.read(1), SILENCE)
    late_reader, late_writer = await connect(proxy)  # accepted while it lasts: frozen too
    late_writer.write(b"x")
    await late_writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late_reader.read(1), SILENCE)
    assert echo.endings == []
    assert proxy.stats().connections_open == 2

    proxy.heal()  # the frozen connections are reset, so they never linger
    for frozen in (reader, late_reader):
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(frozen.read(1), TIMEOUT)
    # Barrier: the server saw its connection end, so nothing sent during the fault reached it.
    await eventually(lambda: echo.endings == ["ConnectionResetError"])
    assert bytes(echo.received) == b"ping"
    await roundtrip(*await connect(proxy))


async def test_timed_pause_releases_in_order(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    record = proxy.partition(None, seconds=0.4)
    for part in (b"one,", b"two,", b"three"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.02)
    got = await asyncio.wait_for(reader.readexactly(13), TIMEOUT)
    held = asyncio.get_running_loop().time() - record.loop_time
    assert got == b"one,two,three"
    assert held >= 0.4
    assert [f.kind for f in proxy.faults] == [FaultKind.PAUSE, FaultKind.RELEASE]
    assert echo.endings == []  # held, never closed


async def test_pause_until_healed_holds_upstream_too(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    proxy.pause()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), SILENCE)
    assert bytes(echo.received) == b"ping"  # not forwarded to the server either
    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"held"


async def test_delay_adds_latency_each_way(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    proxy.delay(None, 100)
    assert await roundtrip(reader, writer) >= 0.2  # 100 ms up, 100 ms down
    proxy.delay(None, 0)
    assert await roundtrip(reader, writer) < 0.15


async def test_jitter_never_reorders_bytes(echo: EchoServer) -> None:
    async with FaultProxy("127.0.0.1", echo.port, rng=random.Random(7)) as proxy:
        proxy.delay(None, 40, jitter=40)
        reader, writer = await connect(proxy)
        expected = b"".join(b"%04d" % i for i in range(40))
        for i in range(40):  # separate chunks, each with its own random delay
            writer.write(b"%04d" % i)
            await writer.drain()
            await asyncio.sleep(0.003)
        assert await asyncio.wait_for(reader.readexactly(len(expected)), TIMEOUT) == expected


async def test_bandwidth_limits_throughput(proxy: FaultProxy) -> None:
    kbps = 4000.0
    rate = kbps * 1000 / 8  # bytes per second
    size = 300_000
    proxy.bandwidth(None, kbps)
    reader, writer = await connect(proxy)
    loop = asyncio.get_running_loop()
    data = os.urandom(size)

    async def send() -> None:
        writer.write(data)
        await writer.drain()

    start = loop.time()
    sending = asyncio.create_task(send())
    got = await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
    elapsed = loop.time() - start
    await sending
    assert got == data
    # Both directions are limited and pipelined: the echo takes about size / rate (0.6 s),
    # less the two bursts (50 ms each) at most.
    assert 0.6 * rate <= size / elapsed <= 1.25 * rate

    proxy.bandwidth(None, None)
    start = loop.time()
    sending = asyncio.create_task(send())
    await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
    await sending
    assert loop.time() - start < size / rate / 3


async def test_faults_on_one_route_leave_the_others_alone(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    alice_port, bob_port = await proxy.route("alice"), await proxy.route("bob")
    assert len({alice_port, bob_port, proxy.port}) == 3
    assert await proxy.route("bob") == bob_port  # idempotent
    alice, bob = await connect(proxy, "alice"), await connect(proxy, "bob")
    await roundtrip(*alice)
    await roundtrip(*bob)

    proxy.delay("bob", 200)
    assert await roundtrip(*bob) >= 0.4
    assert await roundtrip(*alice) < 0.2

    proxy.pause("bob")
    bob[1].write(b"held")
    await roundtrip(*alice)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bob[0].read(1), SILENCE)

    proxy.cut("bob")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(bob[0].read(1), TIMEOUT)
    await roundtrip(*alice)
    assert (proxy.stats("alice").cuts, proxy.stats("bob").cuts) == (0, 1)

    proxy.heal("bob")
    proxy.pause(None)  # every route, and a route heal does not lift it
    proxy.heal("alice")
    alice[1].write(b"held")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alice[0].read(1), SILENCE)
    proxy.heal()
    assert await asyncio.wait_for(alice[0].readexactly(4), TIMEOUT) == b"held"
    with pytest.raises(KeyError, match="no route"):
        proxy.cut("carol")


async def test_fault_log_records_loop_and_wall_times(proxy: FaultProxy) -> None:
    await proxy.route("bob")
    loop = asyncio.get_running_loop()
    wall0, loop0 = time.time(), loop.time()
    proxy.delay("bob", 50, jitter=10)
    proxy.pause(None, seconds=0.2)
    await eventually(lambda: proxy.faults[-1].kind is FaultKind.RELEASE)
    proxy.cut("bob")
    proxy.heal("bob")
    faults = proxy.faults
    assert [(f.kind, f.route) for f in faults] == [
        (FaultKind.DELAY, "bob"),
        (FaultKind.PAUSE, None),
        (FaultKind.RELEASE, None),
        (FaultKind.CUT, "bob"),
        (FaultKind.HEAL, "bob"),
    ]
    assert (faults[0].delay_ms, faults[0].jitter_ms, faults[1].seconds) == (50, 10, 0.2)
    loop_times = [f.loop_time for f in faults]
    assert loop_times == sorted(loop_times)
    assert loop_times[0] >= loop0
    assert all(wall0 <= f.wall_time <= time.time() for f in faults)
    assert faults[2].loop_time - faults[1].loop_time >= 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        faults[0].route = "alice"  # type: ignore[misc]

    spans = {s.kind: s for s in proxy.spans()}
    assert spans[FaultKind.PAUSE].end == faults[2].loop_time
    assert spans[FaultKind.DELAY].end == faults[4].loop_time  # healed
    assert spans[FaultKind.CUT].start == spans[FaultKind.CUT].end


def _rec(kind: FaultKind, route: str | None, at: float, **fields: Any) -> FaultRecord:
    return FaultRecord(kind=kind, route=route, loop_time=at, wall_time=1000 + at, **fields)


def test_fault_spans_pairing_rules() -> None:
    log = [
        _rec(FaultKind.DELAY, "bob", 1, delay_ms=80.0),
        _rec(FaultKind.BANDWIDTH, "alice", 2, kbps=64.0),
        _rec(FaultKind.DELAY, "bob", 3, delay_ms=20.0),  # replaces: ends the first
        _rec(FaultKind.HALF_OPEN, None, 4),
        _rec(FaultKind.BANDWIDTH, "alice", 5, kbps=None),  # clears, opens nothing
        _rec(FaultKind.PAUSE, "bob", 6),
        _rec(FaultKind.HEAL, "bob", 7),  # ends bob's, not the global half-open
        _rec(FaultKind.PAUSE, "carol", 8),
    ]
    spans = [(s.kind, s.route, s.start, s.end) for s in fault_spans(log)]
    assert spans == [
        (FaultKind.DELAY, "bob", 1, 3),
        (FaultKind.BANDWIDTH, "alice", 2, 5),
        (FaultKind.DELAY, "bob", 3, 7),
        (FaultKind.HALF_OPEN, None, 4, None),
        (FaultKind.PAUSE, "bob", 6, 7),
        (FaultKind.PAUSE, "carol", 8, None),
    ]
    healed = fault_spans([*log, _rec(FaultKind.HEAL, None, 9)])
    assert all(s.end is not None for s in healed)
    assert fault_spans(log)[0].wall_end == 1003


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_server_down_resets_the_client() -> None:
    async with FaultProxy("127.0.0.1", _free_port()) as proxy:
        reader, _ = await connect(proxy)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), TIMEOUT)
        assert proxy.stats().refused == 1


async def test_rude_clients_never_break_the_proxy(proxy: FaultProxy, echo: EchoServer) -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    rng = random.Random(3)
    try:
        for i in range(20):
            _, writer = await connect(proxy)
            writer.write(rng.randbytes(rng.randrange(1, 5000)))
            if i % 2:  # vanish with a RST mid-stream
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:  # half-close and go
                writer.write_eof()
                writer.close()
        await eventually(lambda: proxy.stats().connections_open == 0)
        await roundtrip(*await connect(proxy))
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_max_connections_resets_the_extra_ones(echo: EchoServer) -> None:
    async with FaultProxy("127.0.0.1", echo.port, max_connections=2) as proxy:
        held = [await connect(proxy) for _ in range(2)]  # kept referenced: open
        for pair in held:
            await roundtrip(*pair)
        reader, _ = await connect(proxy)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), TIMEOUT)
        assert proxy.stats().refused == 1
        await roundtrip(*held[0])


async def test_aclose_closes_connections_and_ports(echo: EchoServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port)
    await proxy.start()
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer)
    port = proxy.port
    await proxy.aclose()
    await proxy.aclose()  # idempotent
    assert await asyncio.wait_for(reader.read(1), TIMEOUT) == b""
    await eventually(lambda: echo.endings == ["eof"])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    writer.close()  # the echo fixture's teardown waits for its connections to end
