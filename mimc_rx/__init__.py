"""mimc-rx: a reactive (RxPY) client for the MIMC instant-messaging protocol, and a local server.

Start with ``MIMCUser``; ``SyncMIMCUser`` is the blocking twin for plain scripts. The local server
lives in ``mimc_rx.server`` and is imported only when used.
"""

from __future__ import annotations

# mimc_rx.errors
from .errors import (
    ConnectionClosed,
    LocalProtocolError,
    LoginError,
    MimcError,
    NotLoggedIn,
    PayloadTooLarge,
    ProtocolError,
    RemoteProtocolError,
    SendTimeout,
    ServerError,
    TokenError,
)

# mimc_rx.http
from .http import AccountTokenFetcher, ProxyTokenFetcher, TokenFetcher, UCTopicClient

# mimc_rx.protocol.events
from .protocol.events import (
    BadPacket,
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    PacketId,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)

# mimc_rx.reconnect
from .reconnect import Backoff

# mimc_rx.streams
from .streams import Disconnected, DisconnectReason, Reconnecting

# mimc_rx.sync
from .sync import SyncMIMCUser

# mimc_rx.transport
from .transport import TransportOptions

# mimc_rx.user
from .user import MIMCUser

__all__ = [  # noqa: RUF022 - grouped by submodule on purpose
    # mimc_rx.user
    "MIMCUser",
    # mimc_rx.sync
    "SyncMIMCUser",
    # mimc_rx.streams
    "DisconnectReason",
    "Disconnected",
    "Reconnecting",
    # mimc_rx.reconnect
    "Backoff",
    # mimc_rx.transport
    "TransportOptions",
    # mimc_rx.http
    "AccountTokenFetcher",
    "ProxyTokenFetcher",
    "TokenFetcher",
    "UCTopicClient",
    # mimc_rx.protocol.events
    "BadPacket",
    "ClientEvent",
    "Kicked",
    "P2PMessage",
    "P2TMessage",
    "PacketId",
    "ProtocolFailure",
    "PullNotification",
    "ServerAck",
    "StatusChange",
    "UCDismissed",
    "UCJoinResult",
    "UCMessage",
    "UCQuitResult",
    # mimc_rx.errors
    "ConnectionClosed",
    "LocalProtocolError",
    "LoginError",
    "MimcError",
    "NotLoggedIn",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteProtocolError",
    "SendTimeout",
    "ServerError",
    "TokenError",
]
