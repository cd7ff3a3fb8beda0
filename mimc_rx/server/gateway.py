"""The websocket gateway: an ASGI endpoint that drives one ``ServerSession`` per connection.

The driver makes no protocol decisions (STYLE.md 2): each binary message goes into
``session.receive_data``; the events go to the :class:`~mimc_rx.server.hub.Hub`; the frames the
session wants to send are queued and written by a small writer task, so a slow reader never
blocks the connection that produced a message for it. Writes happen when the hub flushes, after
its commit (see :mod:`mimc_rx.server.hub`).

A connection is closed, with a logged reason, when its session asks for it (UBND, KICK, a
malformed frame), when it sends a text frame (the protocol is binary only, docs/protocol.md 2), when
it stays silent longer than ``ServerConfig.idle_timeout``, when its unsent frames pile up past
``ServerConfig.max_outbound_frames`` or ``ServerConfig.max_outbound_bytes``, or when one write
stalls longer than ``ServerConfig.send_timeout``. Nothing a client sends can raise out of this
module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol

from mimc_rx.protocol.events import Peer
from mimc_rx.protocol.server import ServerSession
from mimc_rx.server.config import AppConfig
from mimc_rx.server.hub import Hub
from mimc_rx.server.storage import User

__all__ = [
    "DIRECT_FRAMES",
    "DirectFrames",
    "Gateway",
    "GatewayConnection",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_counter = itertools.count(1)

DIRECT_FRAMES: Final = "mimc_rx.direct_frames"
"""The ASGI scope extension our websocket protocol (server/listener.py) offers: a
:class:`DirectFrames`. Under another ASGI server the gateway uses plain ASGI messages."""


class DirectFrames(Protocol):
    """A shortcut past the ASGI queue: binary messages to a callback, many frames per write.

    Through ASGI every received message costs a queue entry, a pause and a resume of reading
    and a wake-up of the gateway's task, and every frame sent its own ``send`` call and
    syscall; the stored P2P path sends two frames per message.
    """

    def subscribe(self, on_binary: Callable[[bytes], None]) -> None:
        """Hand every later binary message to ``on_binary``, from the protocol's callback."""

    def write(self, frames: list[bytes]) -> bool:
        """Write ``frames`` (one binary message each) now; False when they must be queued
        (flow control paused the socket, or it is closing)."""
        ...


class GatewayConnection:
    """One websocket and its session: the hub's :class:`~mimc_rx.server.hub.ClientLink`.

    Attributes:
        session: the sans-I/O server session of this connection.
        user, app, resource, peer: who is bound here (None / "" before BIND).
        last_seen: loop time of the last message received, for the idle sweep.
        opened_at: loop time the websocket was accepted, for the login timeout.
    """

    def __init__(
        self, hub: Hub, send: Send, client: str, direct: DirectFrames | None = None
    ) -> None:
        self.hub = hub
        self._direct = direct
        self.number = next(_counter)
        self.client = client
        self.session = ServerSession(
            clock_ms=hub.config.now_ms,
            challenges=hub.config.challenges,
            group_bodies=hub.group_bodies,  # a group message is encoded once for all members
        )
        self.user: User | None = None
        self.app: AppConfig | None = None
        self.resource = ""
        self.peer = Peer(app_id=0)
        self._send = send
        self._loop = asyncio.get_running_loop()
        self.opened_at = self.last_seen = self._loop.time()
        self._out: deque[bytes] = deque()
        self._out_bytes = 0  # bytes in self._out, against ServerConfig.max_outbound_bytes
        # Loop time when the write in progress started (None between writes); the hub's sweep
        # closes a connection whose write takes longer than ServerConfig.send_timeout. A
        # watchdog rather than a timeout per write keeps timer handles off the hot path.
        self._sending_since: float | None = None
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._writer = self._loop.create_task(self._write_forever())

    def __repr__(self) -> str:
        who = f" {self.user.account}/{self.resource}" if self.user is not None else ""
        return f"<conn #{self.number} {self.client}{who}>"

    @property
    def is_open(self) -> bool:
        """False once a close was decided; nothing more should be queued."""
        return self._close is None

    @property
    def can_send(self) -> bool:
        """True while session commands may be issued (open and bound)."""
        return self._close is None and self.session.is_bound

    def bound(self, user: User, app: AppConfig, resource: str) -> None:
        """Record the identity a successful BIND established."""
        self.user, self.app, self.resource = user, app, resource
        self.peer = Peer(
            app_id=app.app_id, app_account=user.account, uuid=user.uuid, resource=resource
        )

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes) -> None:
        """Feed one websocket message to the session and the hub."""
        if self._close is not None:
            return
        now = self._loop.time()
        self.last_seen = now
        session = self.session
        session.receive_data(data, now=now)
        hub = self.hub
        for event in session.events_received():
            try:
                hub.handle(self, event)
            except Exception:
                # A bug of ours must not take the server down; it takes this connection.
                log.exception("%s: failed to handle %r; closing", self, type(event).__name__)
                self.close(1011, "internal error")
                return
        hub.touch(self)

    def expire(self, now: float) -> None:
        """Run the session's timers if their deadline passed (called by the idle sweep)."""
        deadline = self.session.next_deadline()
        if deadline is not None and deadline <= now:
            self.session.expire(now)
            self.hub.touch(self)

    # ------------------------------------------------------------------ output

    def pump(self) -> None:
        """Move the session's frames to the writer; close if the session asked to."""
        if self._close is not None:
            return
        frames = self.session.data_to_send()
        if frames:
            direct = self._direct
            if (
                direct is not None
                and not self._out
                and self._sending_since is None
                and direct.write(frames)
            ):
                # Written in one syscall; nothing queued, so no writer wake-up either.
                if self.session.close_requested:
                    self.close(1000, "")
                return
            self._out.extend(frames)
            self._out_bytes += sum(map(len, frames))
            config = self.hub.config
            if (
                len(self._out) > config.max_outbound_frames
                or self._out_bytes > config.max_outbound_bytes
            ):
                # Its stored messages are redelivered at its next login; online-only ones are lost,
                # as they would be for a client that went offline.
                log.warning(
                    "%s: %d frames (%d bytes) unsent; closing slow reader",
                    self,
                    len(self._out),
                    self._out_bytes,
                )
                self._out.clear()
                self._out_bytes = 0
                self.close(1008, "too slow")
                return
            self._wakeup.set()
        if self.session.close_requested:
            self.close(1000, "")

    def kick(self, err_type: str, err_reason: str, err_desc: str) -> None:
        """Send KICK (docs/protocol.md 6.13) and close."""
        if self._close is not None:
            return
        self.session.kick(err_type, err_reason, err_desc)
        self.pump()
        self.close(1000, "kicked")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the queued frames are written. Idempotent."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self.hub.detach(self)
        self._wakeup.set()

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames waiting for the writer or being written."""
        return self._out_bytes

    def check_writer(self, now: float) -> None:
        """Close the connection when one write has been blocked past ``send_timeout``.

        Called by the hub's sweep. A reader that takes nothing for that long is gone or stuck:
        its queue is dropped (stored messages are redelivered at its next login) and the
        blocked write is cancelled.
        """
        since = self._sending_since
        if since is None or now - since <= self.hub.config.send_timeout:
            return
        log.warning("%s: a write stalled for %.0f s; closing", self, now - since)
        self._out.clear()
        self._out_bytes = 0
        self.close(1008, "write stalled")
        self._writer.cancel()

    async def _write_forever(self) -> None:
        out, send, clock = self._out, self._send, self._loop.time
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while out:
                    frame = out.popleft()
                    self._sending_since = clock()
                    await send({"type": "websocket.send", "bytes": frame})
                    self._sending_since = None
                    if out or self._out_bytes:  # not reset by a close meanwhile
                        self._out_bytes -= len(frame)
                if self._close is not None:
                    code, reason = self._close
                    self._sending_since = clock()
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    self._sending_since = None
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away while we were writing
            log.debug("%s: write failed: %r", self, exc)
            self.close(1006, "write failed")

    async def wait_closed(self) -> None:
        """Wait for the writer to finish (after :meth:`close`), or stop it."""
        if not self._writer.done():
            self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


class Gateway:
    """The ASGI application of the websocket endpoint (``/``)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(scope, receive, send)
        except asyncio.CancelledError:
            # The event loop is shutting down with the server still running (a script that
            # ended without ``server.stop()``, asyncio.run cancelling every task): uvicorn
            # would log a cancelled ASGI call as a crash, a 30-line traceback for nothing.
            log.debug("a websocket connection was cancelled: the event loop is shutting down")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        client = scope.get("client")
        direct = scope.get("extensions", {}).get(DIRECT_FRAMES)
        conn = GatewayConnection(
            self.hub, send, f"{client[0]}:{client[1]}" if client else "?", direct
        )
        if direct is not None:
            # From now on binary messages skip the loop below; it still sees text frames
            # and the disconnect. Nothing was received yet: the client waits for the accept.
            direct.subscribe(conn.receive)
        self.hub.attach(conn)
        log.debug("%s: connected", conn)
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes")
                    if data is None:
                        log.info("%s: text frame; closing (the protocol is binary)", conn)
                        conn.close(1003, "binary frames only")
                        break
                    conn.receive(data)
                    if not conn.is_open:
                        break
                elif kind == "websocket.disconnect":
                    break
        except Exception:
            log.exception("%s: gateway failure; closing", conn)
            conn.close(1011, "internal error")
        finally:
            conn.session.receive_eof()
            conn.close(1000, "")
            self.hub.detach(conn)
            # Let the writer send what is queued plus the close frame, then finish.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn._writer), timeout=5.0)
            await conn.wait_closed()
            log.debug("%s: disconnected", conn)
