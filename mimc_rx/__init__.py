"""mimc-rx: a reactive (RxPY) client for the MIMC instant-messaging protocol, and a local server.

Start with ``MIMCUser``; ``SyncMIMCUser`` is the blocking twin for plain scripts. The client
lives in ``mimc_rx.client``, the sans-I/O protocol core in ``mimc_rx.protocol``; the local
server (``mimc_rx.server``), the DataFrame adapters (``mimc_rx.frames``) and the chat widget
(``mimc_rx.widgets``) are imported only when used.
"""

from __future__ import annotations

# mimc_rx.client
from .client.http import AccountTokenFetcher, ProxyTokenFetcher, UCTopicClient
from .client.reconnect import Backoff
from .client.seams import TokenFetcher
from .client.sync import SyncMIMCUser
from .client.user import MIMCUser
from .client.values import Disconnected, DisconnectReason, Reconnecting, TransportOptions

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

__all__ = [  # noqa: RUF022 - grouped by submodule on purpose
    # mimc_rx.client.user
    "MIMCUser",
    # mimc_rx.client.sync
    "SyncMIMCUser",
    # mimc_rx.client.values
    "DisconnectReason",
    "Disconnected",
    "Reconnecting",
    "TransportOptions",
    # mimc_rx.client.reconnect
    "Backoff",
    # mimc_rx.client.seams
    "TokenFetcher",
    # mimc_rx.client.http
    "AccountTokenFetcher",
    "ProxyTokenFetcher",
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
