"""Routing the protocol core's events to ``MIMCUser``'s streams.

The transport hands each batch of events of a connection to ``EventRouter.dispatch``, on the
loop. Every event goes out on ``events`` unfiltered, then on its own stream, in the order the
core produced them. On the way the router keeps the little state the facade derives from events:

* delivered P2P/P2T sequences in a bounded ``SequenceWindow``, owned by the user and not by a
  connection, so a message the server re-delivers after a reconnect is emitted exactly once
  (docs/protocol.md 6.8, 10.6);
* acks in the ``AckBook``, for ``ack()`` calls made before or after they arrive;
* the unlimited groups we are in (``uc_topics``), so a reconnect can join them again;
* auto-pull: a pull notification (6.10) is answered with PULL, and again after each pulled
  batch until the notified range is covered;
* the counters behind ``user.counts``.

Events that decide a connection's fate (BIND result, KICK, protocol failure) go to the
``ConnectionManager`` at their place in the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .acks import AckBook
from .connection import Connection, ConnectionManager
from .payload import SequenceWindow
from .protocol.events import (
    BadPacket,
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from .streams import UserStreams

__all__ = ["EventRouter"]

log = logging.getLogger("mimc_rx.user")


class EventRouter:
    """Republishes core events on the user's streams, with dedup, acks and auto-pull.

    Args:
        streams: where events go.
        acks: where acks are recorded.
        lifecycle: told about BIND results, KICK and protocol failures; runs auto-pull's PULL.
        dedup_window: how many delivered sequences are remembered to drop duplicates.
        auto_pull: answer pull notifications with PULL until the range is covered.

    Attributes:
        counts: messages ``sent`` (by the facade), ``acked``, ``received`` and ``duplicates``.
        seen: the dedup window of delivered P2P/P2T sequences.
        uc_topics: the unlimited groups we are in.
    """

    def __init__(
        self,
        streams: UserStreams,
        acks: AckBook,
        lifecycle: ConnectionManager,
        *,
        dedup_window: int,
        auto_pull: bool,
    ) -> None:
        self._streams = streams
        self._acks = acks
        self._lifecycle = lifecycle
        self.auto_pull = auto_pull
        self.seen = SequenceWindow(dedup_window)
        self.counts: dict[str, int] = {"sent": 0, "acked": 0, "received": 0, "duplicates": 0}
        self.uc_topics: set[int] = set()
        self._pull_target: int | None = None

    def dispatch(self, conn: Connection, events: Sequence[ClientEvent]) -> None:
        """Republish a batch of core events of ``conn`` (called by its transport, on the loop)."""
        streams, counts, seen = self._streams, self.counts, self.seen
        target = self._pull_target
        pulled: int | None = None  # the highest delivered sequence within the pull range
        for event in events:
            streams.events.publish(event)
            match event:
                case P2PMessage():
                    if target is not None and event.sequence <= target:
                        pulled = max(pulled or 0, event.sequence)
                    if seen.add(event.sequence):
                        counts["received"] += 1
                        streams.p2p_messages.publish(event)
                    else:
                        counts["duplicates"] += 1
                case P2TMessage():
                    if target is not None and event.sequence <= target:
                        pulled = max(pulled or 0, event.sequence)
                    if seen.add(event.sequence):
                        counts["received"] += 1
                        streams.group_messages.publish(event)
                    else:
                        counts["duplicates"] += 1
                case ServerAck():
                    counts["acked"] += 1
                    self._acks.record(event)
                    streams.server_acks.publish(event)
                case StatusChange():
                    self._lifecycle.on_status(conn, event)
                case UCMessage():
                    streams.uc_messages.publish(event)
                case UCJoinResult():
                    if event.ok:
                        self.uc_topics.add(event.topic_id)
                    streams.uc_join_results.publish(event)
                case UCQuitResult():
                    if event.ok:
                        self.uc_topics.discard(event.topic_id)
                    streams.uc_quit_results.publish(event)
                case UCDismissed():
                    self.uc_topics.discard(event.topic_id)
                    streams.uc_dismissals.publish(event)
                case PullNotification():
                    streams.pull_notifications.publish(event)
                    if self.auto_pull:
                        self._pull_target = event.max_sequence
                        self._pull(conn)
                case Kicked():
                    self._lifecycle.on_kicked(conn, event)
                case ProtocolFailure():
                    self._lifecycle.on_protocol_failure(conn, event)
                case BadPacket():
                    log.warning("bad packet from server: %s %s", event.reason, event.detail)
        if pulled is not None and target is not None and self._pull_target == target:
            # A pulled batch arrived: pull again until the notified range is covered (a PULL
            # answers at most the server's page size). An empty answer ends it too.
            if pulled >= target:
                self._pull_target = None
            else:
                self._pull(conn)

    def _pull(self, conn: Connection) -> None:
        loop = self._lifecycle.loop
        if conn.usable and loop is not None:
            assert conn.transport is not None
            conn.session.pull(now=loop.time())
            conn.transport.wake()
        else:
            self._pull_target = None
