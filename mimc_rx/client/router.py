"""``EventRouter``: the protocol core's events, republished on ``MIMCUser``'s streams.

The lifecycle hands every event of the current connection to ``EventRouter.publish``, on the
loop, in the order the core produced them. Each goes out on ``events`` unfiltered, then on its
own stream. The router decides nothing: the core already dropped redelivered messages, tracked
the unlimited groups and answered pull notifications (STYLE.md 9); the lifecycle applies the
events that decide a connection's fate. On the way the router records acks in the ``AckBook``
(for ``ack()`` calls made before or after they arrive) and counts what it republished.
"""

from __future__ import annotations

import logging

from mimc_rx.protocol.events import (
    BadPacket,
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    ProtocolFailure,
    PullNotification,
    SendExpired,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)

from .acks import AckBook
from .streams import UserStreams

__all__ = ["EventRouter"]

log = logging.getLogger(__name__)


class EventRouter:
    """Republishes core events on the user's streams and records acks.

    Args:
        streams: where events go.
        acks: where acks are recorded.

    Attributes:
        counts: messages ``sent`` (by the facade), ``acked`` and ``received``.
    """

    __slots__ = ("_acks", "_streams", "counts")

    def __init__(self, streams: UserStreams, acks: AckBook) -> None:
        self._streams = streams
        self._acks = acks
        self.counts: dict[str, int] = {"sent": 0, "acked": 0, "received": 0}

    def publish(self, event: ClientEvent) -> None:
        """Republish one core event (called by the lifecycle, on the loop)."""
        streams = self._streams
        streams.events.publish(event)
        match event:
            case P2PMessage():
                self.counts["received"] += 1
                streams.p2p_messages.publish(event)
            case P2TMessage():
                self.counts["received"] += 1
                streams.group_messages.publish(event)
            case ServerAck():
                self.counts["acked"] += 1
                self._acks.record(event)
                streams.server_acks.publish(event)
            case UCMessage():
                streams.uc_messages.publish(event)
            case UCJoinResult():
                streams.uc_join_results.publish(event)
            case UCQuitResult():
                streams.uc_quit_results.publish(event)
            case UCDismissed():
                streams.uc_dismissals.publish(event)
            case PullNotification():
                streams.pull_notifications.publish(event)
            case BadPacket():
                log.warning("bad packet from server: %s %s", event.reason, event.detail)
            case SendExpired():
                log.warning(
                    "stored send %s given up unacked after %.0f s (outbox age limit)",
                    event.packet_id,
                    event.age,
                )
            case StatusChange() | Kicked() | ProtocolFailure():
                pass  # the lifecycle applies them to the connection and publishes the status
