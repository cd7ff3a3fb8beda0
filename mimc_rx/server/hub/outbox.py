"""What one tick sends: acks, deliveries, pull notifications and UC message lists, by connection.

The hub's handlers and the routing of a tick's outcomes *queue* here; :meth:`Outbox.send`, at
the end of the tick and after its commit, turns the queues into session commands in a fixed
order (acks, then one COMPOUND per receiving connection with everything that arrived for it,
then notifications, then UC lists) and lets each touched connection write its frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from mimc_rx.protocol.events import Delivery, PacketId, UCDelivery
from mimc_rx.protocol.server import GroupBodies
from mimc_rx.server.config import ServerConfig
from mimc_rx.server.hub.registry import ClientLink

__all__ = ["Outbox", "compound_chunks", "guarded"]

log = logging.getLogger(__name__)

# Bytes counted for one packet beside its payload (ids, peers, sequence, biz type): generous, so
# a frame stays under the budget without encoding it twice.
_ENTRY_OVERHEAD = 512


class _HasPayload(Protocol):
    @property
    def payload(self) -> bytes: ...


_D = TypeVar("_D", bound=_HasPayload)


def compound_chunks(items: Sequence[_D], max_count: int, max_bytes: int) -> Iterator[Sequence[_D]]:
    """Split one session's deliveries into frames of at most ``max_count`` packets and about
    ``max_bytes`` bytes.

    Why: a client refuses a websocket message above its size limit and reconnects, so one
    oversized frame of stored messages would be resent, and refused, forever. A single
    message always goes alone in a frame, whatever its size.
    """
    start, size = 0, 0
    for index, item in enumerate(items):
        cost = len(item.payload) + _ENTRY_OVERHEAD
        if index > start and (index - start >= max_count or size + cost > max_bytes):
            yield items[start:index]
            start, size = index, 0
        size += cost
    if start < len(items):
        yield items[start:]


def guarded(conn: ClientLink, command: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Issue one session command; a failure closes that connection only.

    One connection's failure (a bug of ours, a session that just closed) must not cost the
    other connections their acks and deliveries.
    """
    try:
        command(*args, **kwargs)
    except Exception:
        log.exception("%s: %s failed; closing", conn, getattr(command, "__name__", command))
        conn.close(1011, "internal error")


class Outbox:
    """The tick's queues of answers, by connection.

    Args:
        config: ``compound_size`` and ``max_compound_bytes`` cut the COMPOUND frames.
        group_bodies: the fan-out's shared encodings, cleared once a tick is sent.
        wake: asks for a tick (the pipeline's ``schedule``); called by :meth:`touch`.
    """

    def __init__(
        self, config: ServerConfig, group_bodies: GroupBodies, wake: Callable[[], None]
    ) -> None:
        self.config = config
        self.group_bodies = group_bodies
        self.wake = wake
        self.acks: list[tuple[ClientLink, PacketId, int, int, str]] = []
        self.deliveries: dict[ClientLink, list[Delivery]] = {}
        self.notices: dict[ClientLink, tuple[int, int]] = {}
        self.uc_deliveries: dict[tuple[ClientLink, int], list[UCDelivery]] = {}
        self.touched: set[ClientLink] = set()

    def touch(self, conn: ClientLink) -> None:
        """Ask for ``conn``'s frames to be written at the end of this tick."""
        self.touched.add(conn)
        self.wake()

    def forget(self, conn: ClientLink) -> None:
        """``conn`` went away: drop what was queued for it (its stored messages stay)."""
        self.touched.discard(conn)
        self.deliveries.pop(conn, None)
        self.notices.pop(conn, None)

    def deliver(self, conn: ClientLink, item: Delivery) -> None:
        """Queue one P2P/P2T delivery for ``conn``'s COMPOUND of this tick."""
        queue = self.deliveries.get(conn)
        if queue is None:
            self.deliveries[conn] = [item]
        else:
            queue.append(item)

    def deliver_uc(self, conn: ClientLink, topic_id: int, item: UCDelivery) -> None:
        """Queue one unlimited-group message for ``conn``'s MESSAGE_LIST of this tick."""
        self.uc_deliveries.setdefault((conn, topic_id), []).append(item)
        self.touched.add(conn)

    def notice(self, conn: ClientLink, low: int, high: int) -> None:
        """Queue a pull notification (6.10), sent after this tick's deliveries."""
        self.notices[conn] = (low, high)
        self.touch(conn)

    def send(self) -> None:
        """Issue the queued answers as session commands and pump every touched connection."""
        acks, self.acks = self.acks, []
        deliveries, self.deliveries = self.deliveries, {}
        notices, self.notices = self.notices, {}
        uc, self.uc_deliveries = self.uc_deliveries, {}
        touched = self.touched
        for conn, packet_id, sequence, timestamp, error in acks:
            if conn.can_send:
                guarded(
                    conn,
                    conn.session.ack_packet,
                    packet_id,
                    sequence=sequence,
                    timestamp=timestamp,
                    error_msg=error,
                )
                touched.add(conn)
        count, budget = self.config.compound_size, self.config.max_compound_bytes
        for conn, items in deliveries.items():
            for chunk in compound_chunks(items, count, budget):
                if conn.can_send:
                    guarded(conn, conn.session.deliver, chunk, max_sequence=chunk[-1].sequence)
            touched.add(conn)
        for conn, (low, high) in notices.items():
            # After this tick's deliveries: a notice that follows a pull answer says "more".
            if conn.can_send:
                guarded(conn, conn.session.notify_backlog, low, high)
                touched.add(conn)
        for (conn, topic_id), uc_items in uc.items():
            for uc_chunk in compound_chunks(uc_items, count, budget):
                if conn.can_send:
                    guarded(
                        conn,
                        conn.session.deliver_uc,
                        topic_id,
                        uc_chunk,
                        max_sequence=uc_chunk[-1].sequence,
                    )
                    touched.add(conn)
        self.group_bodies.clear()  # this tick's fan-out is encoded
        touched, self.touched = self.touched, set()
        for conn in touched:
            conn.pump()
