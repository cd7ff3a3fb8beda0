"""WebSocketTransport against small websockets servers on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from mimc_rx.client.transport import WebSocketTransport
from mimc_rx.client.values import DisconnectReason, TransportOptions
from mimc_rx.errors import ConnectionClosed

from .conftest import TIMEOUT, eventually


class ScriptedSession:
    """A minimal session: echoes what it receives as events, pings on a deadline."""

    def __init__(self, ping_every: float | None = None) -> None:
        self.received: list[bytes] = []
        self.outgoing: list[bytes] = []
        self.events: list[Any] = []
        self.ping_every = ping_every
        self.deadline: float | None = None
        self.eof = False
        self.close_requested = False
        self.expired = 0

    def start(self, now: float) -> None:
        if self.ping_every is not None:
            self.deadline = now + self.ping_every

    def receive_data(self, data: bytes, now: float) -> None:
        self.received.append(data)
        self.events.append(("got", data))
        if data == b"bye":
            self.close_requested = True

    def receive_eof(self) -> None:
        self.eof = True
        self.events.append(("eof",))

    def expire(self, now: float) -> None:
        self.expired += 1
        self.outgoing.append(b"PING")
        assert self.ping_every is not None
        self.deadline = now + self.ping_every

    def events_received(self) -> list[Any]:
        out, self.events = self.events, []
        return out

    def data_to_send(self) -> list[bytes]:
        out, self.outgoing = self.outgoing, []
        return out

    def next_deadline(self) -> float | None:
        return self.deadline


Handler = Callable[[ServerConnection], Awaitable[None]]


async def start(handler: Handler) -> tuple[Server, str]:
    server = await serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/"


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[bytes], list[ServerConnection]]]:
    """A server that records binary messages, echoes b"echo:" + msg, and keeps connections."""
    got: list[bytes] = []
    conns: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        conns.append(ws)
        async for msg in ws:
            assert isinstance(msg, bytes)
            got.append(msg)
            if msg.startswith(b"say"):
                await ws.send(b"echo:" + msg)

    server, url = await start(handler)
    yield url, got, conns
    server.close()
    await server.wait_closed()


async def open_transport(
    session: ScriptedSession, url: str, **opts: Any
) -> tuple[WebSocketTransport, list[Any]]:
    seen: list[Any] = []
    transport = WebSocketTransport(session, url, seen.extend, options=TransportOptions(**opts))
    session.start(asyncio.get_running_loop().time())
    await transport.open()
    return transport, seen


async def test_frames_flow_both_ways_in_order(recorder: Any) -> None:
    url, got, _ = recorder
    session = ScriptedSession()
    transport, seen = await open_transport(session, url)
    session.outgoing.extend([b"say1", b"say2", b"say3"])
    transport.wake()
    await eventually(lambda: len(seen) == 3)
    assert got == [b"say1", b"say2", b"say3"]
    assert seen == [("got", b"echo:say1"), ("got", b"echo:say2"), ("got", b"echo:say3")]
    assert transport.is_open
    info = await transport.close(TIMEOUT)
    assert info.by_us
    assert session.eof
    assert not transport.is_open


async def test_keepalive_follows_the_session_deadline(recorder: Any) -> None:
    url, got, _ = recorder
    session = ScriptedSession(ping_every=0.01)
    transport, _ = await open_transport(session, url)
    await eventually(lambda: got.count(b"PING") >= 3)
    assert session.expired >= 3
    await transport.close(TIMEOUT)


async def test_session_close_request_closes_the_websocket(recorder: Any) -> None:
    url, _, conns = recorder
    session = ScriptedSession()
    transport, _ = await open_transport(session, url)
    await eventually(lambda: conns)
    await conns[0].send(b"bye")
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.by_us
    assert info.code == 1000


async def test_server_close_is_server_closed(recorder: Any) -> None:
    url, _, conns = recorder
    transport, _ = await open_transport(ScriptedSession(), url)
    await eventually(lambda: conns)
    await conns[0].close(1001, "going away")
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert (info.reason, info.code, info.detail, info.by_us) == (
        DisconnectReason.SERVER_CLOSED,
        1001,
        "going away",
        False,
    )


async def test_abrupt_drop_is_connection_lost(recorder: Any) -> None:
    url, _, conns = recorder
    session = ScriptedSession()
    transport, _ = await open_transport(session, url)
    await eventually(lambda: conns)
    conns[0].transport.abort()
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.reason is DisconnectReason.CONNECTION_LOST
    assert session.eof


async def test_silent_peer_is_detected_by_websocket_pings(recorder: Any) -> None:
    url, _, conns = recorder
    transport, _ = await open_transport(
        ScriptedSession(), url, ping_interval=0.02, ping_timeout=0.05, close_timeout=0.05
    )
    await eventually(lambda: conns)
    conns[0].transport.pause_reading()  # the server stops answering anything, pings included
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.reason is DisconnectReason.PING_TIMEOUT
    conns[0].transport.abort()


async def test_text_messages_are_ignored(recorder: Any) -> None:
    url, _, conns = recorder
    session = ScriptedSession()
    transport, seen = await open_transport(session, url)
    await eventually(lambda: conns)
    await conns[0].send("not a frame")
    await conns[0].send(b"frame")
    await eventually(lambda: seen)
    assert session.received == [b"frame"]
    await transport.close(TIMEOUT)


async def test_connect_failure_is_our_connection_closed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = WebSocketTransport(ScriptedSession(), f"ws://127.0.0.1:{port}/", lambda e: None)
    with pytest.raises(ConnectionClosed, match="cannot connect"):
        await transport.open()


async def test_bad_url_is_our_connection_closed() -> None:
    transport = WebSocketTransport(ScriptedSession(), "http://not-a-ws-url/", lambda e: None)
    with pytest.raises(ConnectionClosed):
        await transport.open()


async def test_default_max_size_fits_a_large_compound() -> None:
    # A COMPOUND of stored messages can exceed 1 MiB; the default must not refuse it.
    limit = TransportOptions().max_size
    assert limit is None or limit >= 16 << 20


async def test_a_too_big_message_says_why_the_connection_closed(recorder: Any) -> None:
    url, _, conns = recorder
    transport, _ = await open_transport(ScriptedSession(), url, max_size=1000)
    await eventually(lambda: conns)
    await conns[0].send(b"x" * 2000)
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.code == 1009
    assert "1009" in info.detail
    assert "too big" in info.detail


class _BrokenWriterSession(ScriptedSession):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def data_to_send(self) -> list[bytes]:
        if self.broken:
            raise RuntimeError("encoder bug")
        return super().data_to_send()


async def test_a_writer_failure_ends_the_connection(
    recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, _, conns = recorder
    session = _BrokenWriterSession()
    transport, _ = await open_transport(session, url)
    await eventually(lambda: conns)
    session.broken = True
    transport.wake()
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.reason is DisconnectReason.CONNECTION_LOST
    assert not transport.is_open
    assert "writer failed" in caplog.text


class _BadEofSession(ScriptedSession):
    def receive_eof(self) -> None:
        raise RuntimeError("eof bug")


async def test_a_failing_receive_eof_still_reports_the_end(recorder: Any) -> None:
    url, _, conns = recorder
    transport, _ = await open_transport(_BadEofSession(), url)
    await eventually(lambda: conns)
    await conns[0].close(1000, "bye")
    info = await asyncio.wait_for(transport.wait_closed(), TIMEOUT)
    assert info.reason is DisconnectReason.SERVER_CLOSED
    assert not transport.is_open
