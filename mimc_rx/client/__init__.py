"""The asyncio client: the reactive facade and everything that keeps it online.

The layers, from the wire up (each module says more):

* ``values``: plain values of the client (``DisconnectReason``, ``Disconnected``,
  ``Reconnecting``, ``CloseInfo``, ``TransportOptions``); no dependency beyond the core.
* ``seams``: the protocols a session, a transport and their factories must follow.
* ``transport``: the websocket driver around a sans-I/O ``ClientSession``.
* ``reconnect``: the backoff policy and the retry schedule.
* ``http``: token fetchers and the group REST clients.
* ``link``, ``attempt``, ``lifecycle``, ``supervisor``: one connection's fate, the steps of one
  login attempt, the lifecycle that logs in and out, and the supervisor that retries a first
  login, watches each connection and reconnects.
* ``streams``, ``acks``, ``router``: the reactive side: subscriber-safe hubs, acks by packet
  id, and the router that republishes the core's events.
* ``user``: ``MIMCUser``, the facade; ``sync``: ``SyncMIMCUser``, its blocking twin.
"""

from __future__ import annotations

from .http import AccountTokenFetcher, ProxyTokenFetcher, UCTopicClient
from .reconnect import Backoff
from .seams import TokenFetcher
from .streams import first_value
from .sync import SyncMIMCUser
from .user import MIMCUser
from .values import Disconnected, DisconnectReason, Reconnecting, TransportOptions

__all__ = [
    "AccountTokenFetcher",
    "Backoff",
    "DisconnectReason",
    "Disconnected",
    "MIMCUser",
    "ProxyTokenFetcher",
    "Reconnecting",
    "SyncMIMCUser",
    "TokenFetcher",
    "TransportOptions",
    "UCTopicClient",
    "first_value",
]
