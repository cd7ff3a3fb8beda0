"""A minimal test driver: the protocol core's ClientSession over a real websockets connection.

It is deliberately not ``mimc_rx.transport`` (the client under test elsewhere): the server tests
should depend only on the protocol core, and see every event and frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import ClientEvent, ServerAck, StatusChange

from .conftest import APP, TIMEOUT

E = TypeVar("E")

BARRIER_TOPIC = 1
"""A group id no test creates (the server makes 18-digit ids): a P2T to it is refused with an
ack and nothing else, which makes it a clean round trip for :meth:`WireClient.barrier`."""


class WireClient:
    """One client connection; events accumulate in :attr:`events`."""

    max_size: int | None = None
    """The largest websocket message accepted (None: any), as a real client's limit."""

    def __init__(self, url: str, account: str, resource: str = "res-1", **session: Any) -> None:
        self.url = url
        self.frame_sizes: list[int] = []
        self.session = ClientSession(APP.app_id, account, resource, **session)
        self.events: list[ClientEvent] = []
        self.ws: ClientConnection | None = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self.close_code: int | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await connect(self.url, compression=None, max_size=self.max_size)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.frame_sizes.append(len(message))
                self.session.receive_data(message, now=loop.time())
                self.events.extend(self.session.events_received())
                self._changed.set()
                await self.flush()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.session.receive_eof()
            self.closed.set()
            self._changed.set()

    async def flush(self) -> None:
        """Write what the session wants to send."""
        assert self.ws is not None
        for frame in self.session.data_to_send():
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                return

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def login(self, token_answer: dict[str, Any], *, expect_ok: bool = True) -> StatusChange:
        """CONN + BIND with this token answer; returns the StatusChange."""
        if self.ws is None:
            await self.connect()
        self.session.login(token_answer, now=asyncio.get_running_loop().time())
        await self.flush()
        status = await self.next(StatusChange)
        if expect_ok:
            assert status.online, status
        return status

    async def barrier(self) -> None:
        """One round trip on this connection: its ack comes after every frame the server queued
        for us before it handled the barrier packet.

        Why: "nothing more arrived" is only true once the server has provably handled all that
        came before; a fixed sleep passes on a loaded machine when a wrong delivery is late.
        """
        packet_id = self.session.send_p2t(BARRIER_TOPIC, b"barrier", is_store=False, now=self.now())
        await self.flush()
        await self.wait(lambda: any(a.packet_id == packet_id for a in self.of(ServerAck)))

    def of(self, kind: type[E]) -> list[E]:
        """The events of one type received so far."""
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def next(self, kind: type[E], count: int = 1) -> E:
        """Wait until ``count`` events of ``kind`` arrived; returns the last of them."""
        await self.wait(lambda: len(self.of(kind)) >= count)
        return self.of(kind)[count - 1]

    async def wait_closed(self) -> int | None:
        async with asyncio.timeout(TIMEOUT):
            await self.closed.wait()
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def now(self) -> float:
        return asyncio.get_running_loop().time()
