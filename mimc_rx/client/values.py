"""The client's own plain values: why a connection ended, what reconnect plans, settings.

The protocol core's events (``mimc_rx.protocol.events``) carry what the server said. A few
facts only the client knows: that the websocket went away and why (``Disconnected``, built from
the transport's ``CloseInfo``), and that a reconnect is scheduled (``Reconnecting``). They are
frozen dataclasses and an enum with no dependency beyond the standard library and the core's
events, so the transport and the reconnect policy can use them without importing the reactive
layer (STYLE.md 2, 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from mimc_rx.protocol.events import StatusChange

__all__ = [
    "OFFLINE",
    "CloseInfo",
    "DisconnectReason",
    "Disconnected",
    "Reconnecting",
    "TransportOptions",
    "offline_status",
]

OFFLINE = StatusChange(online=False)
"""The status of a user that never logged in (what ``user.status`` replays first)."""


def offline_status(err_type: str, err_reason: str = "", err_desc: str = "") -> StatusChange:
    """An offline ``StatusChange`` saying why: the one way the client builds its own."""
    return StatusChange(online=False, err_type=err_type, err_reason=err_reason, err_desc=err_desc)


class DisconnectReason(StrEnum):
    """Why a connection ended, as a value to ``match`` on."""

    LOGOUT = "logout"
    """We logged out (UBND, docs/protocol.md 6.13)."""
    KICKED = "kicked"
    """The server sent KICK, usually because the same resource logged in elsewhere."""
    LOGIN_FAILED = "login-failed"
    """The server refused BIND; the connection is closed."""
    SERVER_CLOSED = "server-closed"
    """The server closed the websocket cleanly without telling us why."""
    CONNECTION_LOST = "connection-lost"
    """The websocket broke (network error, abnormal close)."""
    PING_TIMEOUT = "ping-timeout"
    """The websocket keep-alive ping got no pong in time: the connection is dead."""
    PROTOCOL_FAILURE = "protocol-failure"
    """The server sent bytes we cannot accept; we closed the connection."""
    CONNECT_FAILED = "connect-failed"
    """The websocket could not be opened at all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """A connection of this user ended (the web SDK's disconnect handler, docs/protocol.md 9.3).

    Attributes:
        reason: why, as a ``DisconnectReason``.
        detail: a human explanation (close reason, exception text, KICK fields).
        code: the websocket close code, when there was one.
        will_reconnect: true when automatic reconnect will try again (see ``user.reconnects``).
    """

    reason: DisconnectReason
    detail: str = ""
    code: int | None = None
    will_reconnect: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting:
    """Automatic reconnect scheduled attempt number ``attempt`` (from 1) in ``delay`` seconds."""

    attempt: int
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseInfo:
    """How a transport's connection ended.

    Attributes:
        reason: the transport-level reason (``SERVER_CLOSED``, ``CONNECTION_LOST``,
            ``PING_TIMEOUT``); the lifecycle refines it with what the protocol said (KICK, UBND).
        detail: the websocket close reason or the exception text.
        code: the websocket close code, if any.
        by_us: true when we started the close (the session asked for it, or ``close()``).
    """

    reason: DisconnectReason
    detail: str = ""
    code: int | None = None
    by_us: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """Websocket settings of a ``MIMCUser`` connection.

    Attributes:
        open_timeout: seconds to open the websocket (TCP + TLS + HTTP upgrade).
        ping_interval: seconds between websocket-level pings (dead-connection detection);
            None turns them off.
        ping_timeout: seconds to wait for the pong before the connection counts as dead.
        close_timeout: seconds to wait for the closing handshake.
        max_size: the largest message accepted, in bytes (None: no limit). A COMPOUND of
            stored messages can be large, so the default is generous (16 MiB); a bigger
            message fails the connection with close code 1009.
        proxy: websockets' proxy setting: True follows the environment, None connects directly.
    """

    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 2.0
    max_size: int | None = 16 << 20
    proxy: str | Literal[True] | None = None
