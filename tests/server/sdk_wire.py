"""A raw websocket that plays the official web SDK's frames and reads the answers as the SDK would.

No client session here: the test decides every byte that goes out (captured frames, or frames
rebuilt from them), and :class:`~tests.server.sdk_model.SdkUser` judges every frame that comes in.
"""

from __future__ import annotations

import asyncio
import itertools

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import TIMEOUT
from .sdk_model import SdkUser, Seen, parse_frame

__all__ = ["ChallengeQueue", "SdkConnection", "web_ids"]

_web_counter = itertools.count()


def web_ids() -> str:
    """A fresh id shaped like the web SDK's (``web`` + 13-digit ms + counter, protocol.md 6.2)."""
    return f"web1795863200000{next(_web_counter)}"


class ChallengeQueue:
    """The challenge factory injected into the server (``ServerConfig.challenges``).

    The BIND signature covers the CONN challenge (6.3), so a captured BIND frame verifies only
    on a connection that was given the captured challenge. The test queues the challenge just
    before it sends that connection's CONN and waits for the reply, so connections and
    challenges cannot be paired wrongly.
    """

    def __init__(self) -> None:
        self._queue: list[str] = []
        self.given: list[str] = []

    def push(self, challenge: str) -> None:
        self._queue.append(challenge)

    def __call__(self) -> str:
        assert self._queue, "a connection asked for a challenge the test did not queue"
        challenge = self._queue.pop(0)
        self.given.append(challenge)
        return challenge


class SdkConnection:
    """One websocket of one SDK user.

    Attributes:
        user: the SDK model reading what arrives.
        seen: every frame received so far, judged.
    """

    def __init__(self, url: str, user: SdkUser, ping: bytes | None = None) -> None:
        self.url = url
        self.user = user
        self.ping = ping
        self.seen: list[Seen] = []
        self.ws: ClientConnection | None = None

    async def open(self) -> None:
        self.ws = await connect(self.url, compression=None, max_size=None)

    async def send(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def receive(self) -> Seen:
        """The next frame, judged by the SDK model."""
        assert self.ws is not None
        async with asyncio.timeout(TIMEOUT):
            message = await self.ws.recv()
        assert isinstance(message, bytes), "the protocol is binary (docs/protocol.md 2)"
        seen = self.user.receive(message)
        self.seen.append(seen)
        return seen

    async def request(self, data: bytes) -> Seen:
        """Send one frame and return the next frame received."""
        await self.send(data)
        return await self.receive()

    async def settle(self) -> list[Seen]:
        """Everything the server still sends in answer to the frames sent so far.

        Sends the connection's PING twice, one round trip after the other, and returns the
        frames received before the second echo (echoes excluded). The server handles a
        connection's frames in order and writes one tick's frames together, so once the second
        echo is in, every answer to an earlier frame has been written (no timing involved).
        """
        assert self.ping is not None
        ping_id = parse_frame(self.ping)[0].id
        got: list[Seen] = []
        for _ in range(2):
            await self.send(self.ping)
            while True:
                seen = await self.receive()
                if seen.cmd == "PING" and seen.header.id == ping_id:
                    break
                got.append(seen)
        return got

    async def closed_by_server(self) -> list[Seen]:
        """Wait until the server closes the websocket; returns the frames received meanwhile.

        Fails unless the server sent a close frame (not merely dropped the TCP connection).
        """
        assert self.ws is not None
        got: list[Seen] = []
        try:
            while True:
                got.append(await self.receive())
        except ConnectionClosed:
            pass
        assert self.ws.protocol.close_rcvd is not None, "the server dropped the socket unclosed"
        return got

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
