"""Clients that misbehave below the protocol: slow or endless handshakes, too many of them,
oversized request heads, text frames that are not UTF-8, sockets that reset while we write.

Each test speaks raw bytes over 127.0.0.1, as an attacker would, and checks that the connection
is closed (or answered) and that the server log holds no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState

from mimc_rx.server import LocalServer, ServerConfig
from mimc_rx.server.listener import (
    CLIENT_LEFT,
    HANDSHAKE_TIMEOUT,
    INVALID_UTF8,
    REFUSED_HANDSHAKE,
    TOO_MANY_PENDING,
    ConnectionGuard,
)

from .conftest import TIMEOUT, FakeClock, eventually, login_http, make_server
from .wire import WireClient

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def _open(server: LocalServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def _closed_by_server(reader: asyncio.StreamReader, within: float = TIMEOUT) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the socket open."""
    async with asyncio.timeout(within):
        return await reader.read()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


@pytest.fixture
async def quick(db_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server whose handshake and login timeouts are short."""
    async with make_server(db_path, clock, handshake_timeout=0.3, login_timeout=0.3) as srv:
        yield srv


# ---------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", UPGRADE],  # nothing, partial headers, no blank line
)
async def test_an_unfinished_request_head_is_closed(
    quick: LocalServer, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await _open(quick)
    writer.write(sent)
    assert await _closed_by_server(reader) == b""
    writer.close()
    assert quick.guard is not None
    assert quick.guard.errors[HANDSHAKE_TIMEOUT] == 1
    _no_tracebacks(caplog)


async def test_the_next_request_head_on_a_kept_alive_connection_is_timed_too(
    quick: LocalServer,
) -> None:
    reader, writer = await _open(quick)
    writer.write(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
    length = int(fields[b"content-length"])
    await reader.readexactly(length)
    writer.write(b"GET /api/status HTTP/1.1\r\n")  # and then nothing more
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_websocket_that_never_binds_is_closed(quick: LocalServer) -> None:
    idle = WireClient(quick.ws_url, "lurker")
    await idle.connect()
    assert await idle.wait_closed() == 1008
    assert quick.hub is not None
    assert quick.hub.unbound == set()


# ---------------------------------------------------------------------------- the pending cap


async def test_pending_connections_are_capped(db_path: Path, clock: FakeClock) -> None:
    async with (
        make_server(db_path, clock, max_pending_connections=2, handshake_timeout=60) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as http,
    ):
        assert srv.guard is not None
        assert srv.hub is not None
        answer = (await login_http(http, "lurker0")).answer  # before the cap is full
        # Two websockets accepted but not bound fill the cap ...
        lurkers = [WireClient(srv.ws_url, f"lurker{i}") for i in range(2)]
        for lurker in lurkers:
            await lurker.connect()
        await eventually(lambda: len(srv.hub.unbound) == 2)  # type: ignore[union-attr]
        reader, writer = await _open(srv)
        assert await _closed_by_server(reader) == b""  # at once, not after 60 s
        writer.close()
        assert srv.guard.errors[TOO_MANY_PENDING] == 1
        # ... until one of them logs in: a bound connection is not pending.
        await lurkers[0].login(answer)
        reader, writer = await _open(srv)
        writer.write(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()
        for lurker in lurkers:
            await lurker.close()


# ---------------------------------------------------------------------------- refused heads


async def test_too_many_headers_are_answered_and_closed(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await _open(server)
    extra = b"".join(b"X-Pad-%d: %d\r\n" % (i, i) for i in range(130))
    writer.write(UPGRADE + extra + b"\r\n")
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    writer.close()
    assert server.guard is not None
    assert server.guard.errors[REFUSED_HANDSHAKE] == 1
    _no_tracebacks(caplog)


# ---------------------------------------------------------------------------- text frames


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def test_invalid_utf8_text_frames_are_counted_not_logged(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        reader, writer = await _open(server)
        writer.write(UPGRADE + b"\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        writer.write(_masked_frame(0x1, b"\xff\xfe not UTF-8"))
        closing = await _closed_by_server(reader)
        assert closing[:4] == b"\x88\x02\x03\xef"  # a close frame, code 1007
        writer.close()
    _no_tracebacks(caplog)
    assert server.guard is not None
    assert server.guard.errors[INVALID_UTF8] == 3
    summaries = [r for r in caplog.records if r.name == "mimc_rx.server.listener"]
    assert len(summaries) == 1  # the first at once, the rest wait for the next summary
    assert "1 invalid UTF-8 text frames" in summaries[0].getMessage()


# ---------------------------------------------------------------------------- late writes


class _ClosingTransport:
    """A transport whose peer has reset it: asyncio marks it closing before connection_lost."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


async def test_no_frame_is_written_to_a_closing_transport() -> None:
    # asyncio logs "socket.send() raised exception." for every write to a reset socket past the
    # fifth; the guarded protocol refuses the write instead, which ends the gateway's writer.
    guard = ConnectionGuard(ServerConfig(), set())
    _, ws_protocol = guard.protocols()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    config = uvicorn.Config(app, ws=ws_protocol, log_config=None)
    config.load()
    protocol: Any = ws_protocol(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = _ClosingTransport()
    protocol.transport = transport
    protocol.handshake_complete = True
    with pytest.raises(ClientDisconnected):
        await protocol.send({"type": "websocket.send", "bytes": b"frame"})
    assert transport.written == []


# ---------------------------------------------------------------------------- bodies cut short


async def test_a_client_that_leaves_mid_body_leaves_no_traceback(
    quick: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A token client that gives up mid-request (a login storm's timeout): it promised more body
    # than it sent, then closed. starlette raises ClientDisconnect while the body is read.
    caplog.set_level(logging.DEBUG)
    _, writer = await _open(quick)
    writer.write(
        b"POST /api/account/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 400\r\n\r\n{"appId": "1'
    )
    await writer.drain()
    await asyncio.sleep(0.05)  # the route is reading the body now
    writer.close()
    await writer.wait_closed()
    assert quick.guard is not None
    await eventually(lambda: quick.guard is not None and quick.guard.errors[CLIENT_LEFT] == 1)
    # A barrier: a later request has been answered, so the first one's handling is over.
    async with httpx.AsyncClient(base_url=quick.http_url) as http:
        assert (await http.get("/api/status")).json()["code"] == 200
    _no_tracebacks(caplog)
