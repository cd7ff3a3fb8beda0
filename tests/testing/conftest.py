"""Fixtures of the fault-proxy tests: a TCP echo server on 127.0.0.1 and a proxy in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from mimc_rx.testing import FaultProxy

TIMEOUT = 5.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Seconds any single wait in these tests may take; scale with MIMC_TEST_TIMEOUT_SCALE."""

SILENCE = 0.3
"""How long a test watches for the absence of data (half-open, pause) before it trusts it."""


@dataclass
class EchoServer:
    """Echoes every byte back; remembers what it received and how each connection ended."""

    server: asyncio.Server
    port: int
    received: bytearray = field(default_factory=bytearray)
    endings: list[str] = field(default_factory=list)
    """``"eof"`` or the exception type name, one per finished connection."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
            self.endings.append("eof")
        except OSError as exc:
            self.endings.append(type(exc).__name__)
        finally:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    holder: list[EchoServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await holder[0].handle(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    holder.append(EchoServer(server, server.sockets[0].getsockname()[1]))
    try:
        yield holder[0]
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), TIMEOUT)


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as p:
        yield p


async def connect(
    proxy: FaultProxy, route: str = "default"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP client of ``route``."""
    return await asyncio.open_connection("127.0.0.1", proxy.port_of(route))


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes = b"ping"
) -> float:
    """Send ``data`` through the echo and wait for it back; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT)
    assert got == data
    return loop.time() - start


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Let the loop run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.005)
