"""The asyncio + websockets driver around a sans-I/O ``ClientSession``.

Theory of operation. The driver makes no protocol decisions (STYLE.md 2, docs/sansio.md). It
runs two tasks per connection:

* the **reader** feeds every binary websocket message to ``session.receive_data(msg, now)``,
  hands ``session.events_received()`` to the facade's callback, and wakes the writer;
* the **writer** sleeps on one wake-up event. Whoever changes the session (a received frame, a
  send command of the facade, the keep-alive timer) calls ``wake()``; the writer then calls
  ``session.expire(now)`` if ``session.next_deadline()`` has passed, writes every frame of
  ``session.data_to_send()`` in order (one frame per binary message, docs/protocol.md 2; the
  frames of one pass go to the socket in one ``transport.write``, see ``_send_frames``), closes the
  websocket when ``session.close_requested``, and re-arms a single ``loop.call_at`` timer on the
  session's next deadline. That timer is how the protocol's PING cadence (6.5) is kept without
  a polling loop.

Dead connections are detected below the protocol: websockets sends its own ping frames every
``ping_interval`` seconds and fails the connection when no pong comes within ``ping_timeout``.
The MIMC PING (a protocol frame the server need not answer) cannot tell us that.

websockets exceptions never leave this module: connect failures become our
``ConnectionClosed``, and the end of a connection is described by a ``CloseInfo`` value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from mimc_rx.errors import ConnectionClosed
from mimc_rx.protocol.events import ClientEvent

from .seams import DriverSession
from .values import CloseInfo, DisconnectReason, TransportOptions

__all__ = ["WebSocketTransport", "describe_exception"]

log = logging.getLogger(__name__)


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: message"`` (or just the type name), for log lines and close details."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _CoalescingConnection(ClientConnection):
    """A websockets client connection that writes what it has queued in one ``write``.

    websockets writes each queued frame with its own ``transport.write``, and the transport
    tries each at once: one ``send`` system call per frame. ``_send_frames`` queues the frames of
    a writer pass together, so joining them here costs one system call for all of them.
    """

    def send_data(self) -> None:
        chunks = self.protocol.data_to_send()
        if all(chunks):
            if chunks:
                self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            return
        # An end of stream (the empty chunk after a close frame): handed back to websockets,
        # which half-closes or closes the socket. data_to_send() only swapped the list out.
        self.protocol.writes[:0] = chunks
        super().send_data()


class WebSocketTransport:
    """One websocket connection driving one ``ClientSession``.

    Args:
        session: the sans-I/O client session (already told to ``login``).
        url: the websocket URL, e.g. ``ws://127.0.0.1:8080/``.
        on_events: called on the loop with each non-empty batch of session events.
        options: websocket settings.
    """

    def __init__(
        self,
        session: DriverSession,
        url: str,
        on_events: Callable[[Sequence[ClientEvent]], None],
        *,
        options: TransportOptions | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.options = options or TransportOptions()
        self._on_events = on_events
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._by_us = False
        self._close_info: CloseInfo | None = None
        self._done: asyncio.Future[CloseInfo] | None = None
        self.frames_sent = 0
        self.frames_received = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_open(self) -> bool:
        """True from a successful ``open()`` until the connection ends."""
        return self._ws is not None and self._close_info is None

    @property
    def close_info(self) -> CloseInfo | None:
        """How the connection ended, once it has."""
        return self._close_info

    async def open(self) -> None:
        """Open the websocket and start the reader and writer.

        Raises:
            ConnectionClosed: the websocket could not be opened (reason says why).
        """
        self._loop = asyncio.get_running_loop()
        opts = self.options
        try:
            self._ws = await websockets.connect(
                self.url,
                open_timeout=opts.open_timeout,
                ping_interval=opts.ping_interval,
                ping_timeout=opts.ping_timeout,
                close_timeout=opts.close_timeout,
                max_size=opts.max_size,
                compression=None,  # MIMC payloads are RC4 noise: deflate only costs CPU
                proxy=opts.proxy,
                create_connection=_CoalescingConnection,
            )
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
            raise ConnectionClosed(
                f"cannot connect to {self.url}: {describe_exception(exc)}"
            ) from exc
        self._done = self._loop.create_future()
        self._reader = self._loop.create_task(self._read(), name="mimc-rx reader")
        self._writer = self._loop.create_task(self._write(), name="mimc-rx writer")
        self.wake()

    def wake(self) -> None:
        """Ask the writer to drain the session (call after every session command)."""
        if self._close_info is None:
            self._wake.set()

    async def wait_closed(self) -> CloseInfo:
        """Wait until the connection has ended and return how."""
        if self._done is None:
            raise RuntimeError("the transport was never opened")
        return await asyncio.shield(self._done)

    async def close(self, timeout: float | None = None) -> CloseInfo:  # noqa: ASYNC109
        """Close the websocket from our side and wait for the reader to finish."""
        if self._ws is None or self._done is None:
            raise RuntimeError("the transport was never opened")
        if self._close_info is None:
            self._by_us = True
            await self._ws.close()
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            # The peer never finished the closing handshake: drop the TCP connection.
            self._ws.transport.abort()
            return await asyncio.shield(self._done)

    # ------------------------------------------------------------------ tasks

    def _publish(self) -> None:
        events = self.session.events_received()
        if not events:
            return
        try:
            self._on_events(events)
        except Exception:  # the facade guards its subscribers; this is a last resort
            log.exception("event handler raised; the connection goes on")

    def _arm_timer(self) -> None:
        assert self._loop is not None
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self.wake)

    async def _write(self) -> None:
        assert self._ws is not None
        assert self._loop is not None
        ws, session, loop, wake = self._ws, self.session, self._loop, self._wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                now = loop.time()
                deadline = session.next_deadline()
                if deadline is not None and now >= deadline:
                    self._timer_at = None
                    session.expire(now)
                    self._publish()
                frames = session.data_to_send()
                if frames:
                    await self._send_frames(ws, frames)
                    self.frames_sent += len(frames)
                if session.close_requested:
                    self._by_us = True
                    await ws.close()
                    return
                self._arm_timer()
        except WsConnectionClosed:
            return  # the reader sees the same close and reports it
        except Exception:
            # A bug below us (or in the session) must not leave a connection that looks open
            # but never sends: kill it, so the reader (and the supervisor) see it end.
            log.exception("writer failed; dropping the connection")
            ws.transport.abort()

    @staticmethod
    async def _send_frames(ws: ClientConnection, frames: list[bytes]) -> None:
        """Send each frame as one binary message, all of them in one socket write.

        ``send_context`` is websockets' documented way to write through its protocol object:
        it checks the state, then writes and waits for the buffer to drain (flow control), and
        raises ``ConnectionClosed`` as ``send`` does. We never send fragmented messages, so no
        ``send`` can be half-way through one here.
        """
        if len(frames) == 1 or ws.protocol.state is not State.OPEN:
            for frame in frames:
                await ws.send(frame)
            return
        async with ws.send_context():
            send_binary = ws.protocol.send_binary
            for frame in frames:
                send_binary(frame)

    async def _read(self) -> None:
        assert self._ws is not None
        assert self._loop is not None
        ws, session, loop = self._ws, self.session, self._loop
        error: BaseException | None = None
        try:
            async for message in ws:
                if isinstance(message, str):
                    # One frame is one *binary* message (docs/protocol.md 2); text is not MIMC.
                    log.warning("ignoring a text websocket message of %d chars", len(message))
                    continue
                self.frames_received += 1
                session.receive_data(message, now=loop.time())
                self._publish()
                self._wake.set()
        except WsConnectionClosed as exc:
            error = exc
        except Exception as exc:  # pragma: no cover - a bug in the session must not hang us
            log.exception("reader failed")
            error = exc
            await ws.close(CloseCode.INTERNAL_ERROR, "client error")
        finally:
            self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        info = CloseInfo(reason=DisconnectReason.CONNECTION_LOST, by_us=self._by_us)
        try:
            info = self._describe_end(error)
            self._close_info = info
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            self.session.receive_eof()
            self._publish()
        except Exception:
            log.exception("ending the session failed")
        finally:
            # Whatever failed above, whoever waits for the end (logout, the supervisor) wakes.
            if self._close_info is None:
                self._close_info = info
            if self._done is not None and not self._done.done():
                self._done.set_result(info)

    def _describe_end(self, error: BaseException | None) -> CloseInfo:
        assert self._ws is not None
        ws = self._ws
        code, detail = ws.close_code, ws.close_reason or ""
        sent = error.sent if isinstance(error, WsConnectionClosed) else None
        if self._by_us:
            reason = DisconnectReason.SERVER_CLOSED
        elif sent is not None and sent.reason == "keepalive ping timeout":
            # websockets failed the connection itself: no pong within ping_timeout.
            reason, code, detail = DisconnectReason.PING_TIMEOUT, sent.code, sent.reason
        elif code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
            reason = DisconnectReason.SERVER_CLOSED
        else:
            reason = DisconnectReason.CONNECTION_LOST
        if not detail and isinstance(error, WsConnectionClosed):
            # Say why, e.g. "1009 (message too big) frame exceeds limit": rcvd is the peer's
            # close frame, sent ours (websockets fails the connection itself on a big message).
            frame = error.rcvd if error.rcvd is not None and error.rcvd.reason else error.sent
            frame = frame or error.rcvd
            if frame is not None:
                detail = str(frame)
                if code is None or code == CloseCode.ABNORMAL_CLOSURE:
                    code = frame.code
        elif not detail and error is not None:
            detail = describe_exception(error)
        return CloseInfo(reason=reason, detail=detail, code=code, by_us=self._by_us)

    def __repr__(self) -> str:
        state = "open" if self.is_open else ("closed" if self._close_info else "new")
        return f"<WebSocketTransport {self.url} {state}>"
