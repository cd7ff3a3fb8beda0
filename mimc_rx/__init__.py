"""mimc-rx: a reactive (RxPY) client for the MIMC instant-messaging protocol, and a local server.

Start with ``MIMCUser``; ``SyncMIMCUser`` is the blocking twin for plain scripts. The client
lives in ``mimc_rx.client``, the sans-I/O protocol core in ``mimc_rx.protocol``; the local
server (``mimc_rx.server``), the DataFrame adapters (``mimc_rx.frames``) and the chat widget
(``mimc_rx.widgets``) are imported only when used.

In Jupyter, ``%load_ext mimc_rx`` adds the ``%mimc`` magic (see ``mimc_rx.jupyter``), and
``mimc_rx.aiter(stream)`` turns any stream into an async iterator for ``async for``.
"""

from __future__ import annotations

from typing import Any

# mimc_rx.client
from .client.aiter import aiter
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

__version__ = "0.1.0"
"""The package version (``pyproject.toml`` reads it from here)."""

__all__ = [  # noqa: RUF022 - grouped by submodule on purpose
    "__version__",
    "load_ipython_extension",
    # mimc_rx.client.user
    "MIMCUser",
    # mimc_rx.client.sync
    "SyncMIMCUser",
    # mimc_rx.client.aiter
    "aiter",
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


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mimc_rx``: register the ``%mimc`` magic (imports IPython only now)."""
    from .jupyter import load_ipython_extension as load

    load(ipython)
