"""Between a TCP socket and the ASGI application: what uvicorn's protocols leave to us.

Theory of operation
-------------------
uvicorn parses HTTP with h11 and, on an upgrade, hands the socket to its sans-I/O websocket
protocol. Both trust the client more than a server on an open port may, so the server runs them
through two small subclasses that share one :class:`ConnectionGuard`:

* **Handshake timeout.** A connection must send a complete request head (an API call or the
  websocket upgrade) within ``ServerConfig.handshake_timeout`` of connecting, or of the end of
  its previous response; otherwise it is closed. Without this, a client that sends nothing, or
  headers that never end, holds a file descriptor for ever.
* **A cap on pending connections.** Connections still waiting for their first request head,
  plus websockets that have not bound a user yet (the hub's ``unbound`` set, which the login
  timeout empties), may number at most ``ServerConfig.max_pending_connections``; a newer
  connection is closed at once.
* **Refusals that are sent.** When websockets refuses a request head it parsed (more than 128
  headers, a header line too long), it queues a 431 or 414 answer that uvicorn's protocol never
  writes, leaving the socket open. The subclass writes it and closes.
* **No writes to a closing socket.** Once the transport is closing (the peer reset it), a
  message to send raises ``ClientDisconnected`` instead of reaching ``transport.write``, which
  would log asyncio's ``socket.send() raised exception`` for every frame after the fifth.
* **Client errors are counted, not logged one by one.** Bytes from a client must never put a
  traceback in our log, nor a line per bad frame (a log flood anyone can start). A text frame
  with invalid UTF-8, an invalid HTTP request, a refused or timed-out handshake, or a request
  whose client left before its body ended (the REST helpers report it) is counted by kind;
  the counts are logged as one warning line at most every :data:`SUMMARY_INTERVAL` seconds.

uvicorn is imported here, so this module is imported only when a server starts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from mimc_rx.server.config import ServerConfig
from mimc_rx.server.gateway import DIRECT_FRAMES

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CLIENT_LEFT", "SUMMARY_INTERVAL", "ConnectionGuard"]

log = logging.getLogger(__name__)

SUMMARY_INTERVAL = 60.0
"""Seconds between two summary lines of client errors (the first one is logged at once)."""

# Kinds of client error, as the summary line names them.
INVALID_UTF8 = "invalid UTF-8 text frames"
INVALID_HTTP = "invalid HTTP requests"
REFUSED_HANDSHAKE = "refused websocket handshakes"
HANDSHAKE_TIMEOUT = "handshakes timed out"
TOO_MANY_PENDING = "connections refused: too many pending"
CLIENT_LEFT = "requests abandoned before their body ended"

# What uvicorn and websockets log, per client, about a client's mistake: (level, start of the
# message) -> the kind counted instead.
_CLIENT_MESSAGES: dict[tuple[int, str], str] = {
    (logging.WARNING, "Invalid HTTP request received"): INVALID_HTTP,
    (logging.WARNING, "Unsupported upgrade request"): INVALID_HTTP,
    (logging.INFO, "connection rejected"): REFUSED_HANDSHAKE,
    (logging.INFO, "HTTP response sent"): REFUSED_HANDSHAKE,  # a head websockets cannot parse
    (logging.INFO, "connection failed"): REFUSED_HANDSHAKE,
}

# Exceptions that, active while uvicorn logs "exception", were caused by a client's bytes.
_CLIENT_EXCEPTIONS: dict[type[BaseException], str] = {UnicodeDecodeError: INVALID_UTF8}


class ConnectionGuard:
    """State shared by every connection of one server: the pending set and the error counts.

    Args:
        config: the timeouts and the cap.
        unbound: the hub's set of websockets not bound yet (they count as pending).
        clock: loop time, for the summary's rate limit.
    """

    def __init__(
        self, config: ServerConfig, unbound: set[Any], clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self.waiting: set[asyncio.Protocol] = set()
        """Connections that have not sent a complete first request head yet."""
        self._unbound = unbound
        self.errors: Counter[str] = Counter()
        """Every client error counted since the server started, by kind."""
        self._unreported: Counter[str] = Counter()
        self._clock = clock
        self._last_summary: float | None = None
        self._summary_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the protocols

    def protocols(self) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
        """The HTTP and websocket protocol classes to give uvicorn, bound to this guard."""
        guard = self
        http = type("GuardedH11Protocol", (_GuardedH11Protocol,), {"guard": guard})
        ws = type("GuardedWebSocketProtocol", (_GuardedWebSocketProtocol,), {"guard": guard})
        return http, ws

    def admit(self, protocol: asyncio.Protocol) -> bool:
        """Count a new connection as pending; False when the cap is reached (close it)."""
        if len(self.waiting) + len(self._unbound) >= self.config.max_pending_connections:
            self.client_error(TOO_MANY_PENDING)
            return False
        self.waiting.add(protocol)
        return True

    # ------------------------------------------------------------------ the summary

    def client_error(self, kind: str) -> None:
        """Count one error a client caused; log the counts at most every SUMMARY_INTERVAL."""
        self.errors[kind] += 1
        self._unreported[kind] += 1
        now = self._now()
        if self._last_summary is None or now - self._last_summary >= SUMMARY_INTERVAL:
            self._report()
        elif self._summary_timer is None:
            delay = self._last_summary + SUMMARY_INTERVAL - now
            self._summary_timer = asyncio.get_running_loop().call_later(delay, self._report)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _report(self) -> None:
        self._summary_timer = None
        if not self._unreported:
            return
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self._unreported.items()))
        since = "" if self._last_summary is None else f" in the last {SUMMARY_INTERVAL:.0f} s"
        log.warning("client errors%s: %s (connections closed)", since, counts)
        self._unreported.clear()
        self._last_summary = self._now()

    def close(self) -> None:
        """Log what is still unreported and stop the summary timer (the server stops)."""
        if self._summary_timer is not None:
            self._summary_timer.cancel()
        self._report()

    def quiet(self, logger: logging.Logger) -> _QuietLogger:
        """``logger`` as seen by a protocol: client mistakes are counted instead of logged."""
        return _QuietLogger(logger, self)


class _QuietLogger:
    """A logger proxy for uvicorn's and websockets' per-connection logging.

    Messages and exceptions that a client's bytes cause become counts in the guard; everything
    else (our bugs included, with their tracebacks) reaches the real logger unchanged.
    """

    def __init__(self, logger: logging.Logger, guard: ConnectionGuard) -> None:
        self._logger = logger
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def _client_kind(self, level: int, msg: object) -> str | None:
        text = str(msg)
        for (known_level, start), kind in _CLIENT_MESSAGES.items():
            if level == known_level and text.startswith(start):
                return kind
        return None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        kind = self._client_kind(level, msg)
        if kind is not None:
            self._guard.client_error(kind)
        else:
            self._logger.log(level, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        active = sys.exc_info()[1]
        for exc_type, kind in _CLIENT_EXCEPTIONS.items():
            if isinstance(active, exc_type):
                self._guard.client_error(kind)
                return
        self._logger.exception(msg, *args, **kwargs)


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the handshake timeout and the pending cap."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.guard.quiet(self.logger)  # type: ignore[assignment]
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is complete
            self._head_received()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._head_received()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request head must come in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(
            self.guard.config.handshake_timeout, self._head_timed_out
        )

    def _head_received(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.guard.waiting.discard(self)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.guard.waiting.discard(self)
        if not self.transport.is_closing():
            self.guard.client_error(HANDSHAKE_TIMEOUT)
            self.transport.abort()


class _GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol that sends its refusals and never writes late.

    It also offers the gateway a shortcut past the ASGI queue (:class:`_DirectFrames`, in the
    scope's extensions under :data:`~mimc_rx.server.gateway.DIRECT_FRAMES`): each binary
    message goes straight to the gateway's callback from ``data_received``, and the frames of
    one tick go out in one ``transport.write``.
    """

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet = self.guard.quiet(self.logger)
        self.logger = quiet  # type: ignore[assignment]
        self.conn.logger = quiet  # type: ignore[assignment]  # websockets logs refusals here
        self.on_binary: Callable[[bytes], None] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[DIRECT_FRAMES] = _DirectFrames(self)

    def send_receive_event_to_app(self) -> None:
        handler = self.on_binary
        if (
            handler is None
            or self.curr_msg_data_type != "bytes"
            or self.close_sent
            or not self.queue.empty()  # never overtake a message the app has not read
        ):
            super().send_receive_event_to_app()
            return
        frames = self.frames
        self.frames = []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            handler(data if data.__class__ is bytes else bytes(data))
        except Exception:  # a bug of ours: this connection goes, the server stays
            log.exception("websocket message handler failed; closing")
            self.on_binary = None
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011})

    def write_frames(self, frames: list[bytes]) -> bool:
        """Send ``frames`` (one binary message each) in one write; False when the socket cannot
        take them now (not open, closing, or paused by flow control): queue them instead."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        conn = self.conn
        try:
            for frame in frames:
                conn.send_binary(frame)
        except InvalidState:  # raised by the first frame already: nothing was queued
            return False
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        conn = self.conn
        if (
            conn.handshake_exc is not None
            and not self.handshake_initiated
            and not self.transport.is_closing()
        ):
            # websockets refused the request head and queued its answer (431, 414, or an EOF
            # for garbage); uvicorn's protocol would leave it unsent and the socket open.
            self.transport.write(b"".join(conn.data_to_send()))
            self.transport.close()

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.send" and self.transport.is_closing():
            raise ClientDisconnected
        await super().send(message)


class _DirectFrames:
    """What the gateway gets in ``scope["extensions"][DIRECT_FRAMES]``: binary messages to a
    callback instead of the ASGI queue, and a write of many frames at once.

    Why: through ASGI every message costs a queue entry, a ``pause_reading`` and a
    ``resume_reading`` (two ``epoll_ctl`` calls) and a wake-up of the app's task, and every frame
    sent its own ``send`` syscall; the stored P2P path sends an ack and a delivery per message.
    The server processes a message synchronously, so there is nothing to pause reading for.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: _GuardedWebSocketProtocol) -> None:
        self._protocol = protocol

    def subscribe(self, on_binary: Callable[[bytes], None]) -> None:
        """Hand every later binary message to ``on_binary`` (text and disconnect stay ASGI)."""
        self._protocol.on_binary = on_binary

    def write(self, frames: list[bytes]) -> bool:
        """Write ``frames`` now, in one syscall; False when the caller must queue them."""
        return self._protocol.write_frames(frames)
