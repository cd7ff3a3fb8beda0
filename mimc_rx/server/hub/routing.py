"""Who receives what: a tick's outcomes become acks, deliveries and signals to other nodes.

Routing rules (docs/protocol.md 6.6, 6.7, 6.12):

* P2P: every bound session of the recipient (only the named resource when ``to.resource`` is
  set). Unknown recipients were created in the tick, as the cloud does for app-defined
  accounts, so they find their stored messages at first login.
* P2T: every bound session of every member except the sending session; the sender's other
  resources get the message too, under the sender's sequence. Only members may send (a
  refusal is an ack with an ``errorMsg``).
* UC: every bound session of every member except the sending session; per-topic sequences.
* ``isStore=false`` messages go to online sessions only; stored ones also wait in the inbox of
  each recipient, and a connection with a backlog pending gets them with its reads
  (:meth:`~mimc_rx.server.hub.feed.Feed.admit`).
* A duplicate (the sender's outbox resent a stored packet whose ack was lost) gets its
  original ack and is delivered to nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mimc_rx.protocol.events import (
    P2PReceived,
    P2TReceived,
    PacketId,
    Peer,
    UCDelivery,
    UCMessageReceived,
)
from mimc_rx.protocol.server import delivery_of
from mimc_rx.server.broker import Signal, SignalKind
from mimc_rx.server.hub.backlog import Backlog
from mimc_rx.server.hub.outbox import Outbox
from mimc_rx.server.hub.registry import ClientLink, Registry
from mimc_rx.server.hub.signals import Relay
from mimc_rx.server.relay import encode_delivery, encode_uc
from mimc_rx.server.storage.interface import (
    Intent,
    Outcome,
    P2PWrite,
    P2PWritten,
    P2TWrite,
    P2TWritten,
    Refusal,
    UCWrite,
    UCWritten,
)

__all__ = ["ERR_NOT_MEMBER", "ERR_NO_TOPIC", "Op", "Router"]

log = logging.getLogger(__name__)

# errorMsg texts of refused group packets (PACKET_ACK, docs/protocol.md 4.3).
ERR_NO_TOPIC = "topic not found"
ERR_NOT_MEMBER = "not a member of the topic"

Op = tuple[ClientLink | None, Any, Intent | None]
"""One entry of a tick, in arrival order: ``(conn, event, intent)`` for a write (``conn`` is
None for the push API), or ``(conn, (packet_id, sequence, ts, error), None)`` for an ack that
needs no write."""


class Router:
    """Turns a tick's outcomes into the outbox's acks and deliveries and a relay's signals."""

    def __init__(self, registry: Registry, backlog: Backlog, outbox: Outbox) -> None:
        self.registry = registry
        self.backlog = backlog
        self.outbox = outbox

    def route(self, ops: Sequence[Op], outcomes: Sequence[Outcome], relay: Relay | None) -> None:
        """Route each op with its outcome (one per op with an intent, in order)."""
        acks = self.outbox.acks
        index = 0
        for conn, payload, intent in ops:
            if intent is None:
                if conn is not None:
                    acks.append((conn, *payload))
                continue
            outcome = outcomes[index]
            index += 1
            if isinstance(outcome, P2PWritten):
                assert isinstance(intent, P2PWrite)
                self._p2p(conn, payload, intent, outcome, relay)
            elif isinstance(outcome, P2TWritten):
                assert isinstance(intent, P2TWrite)
                self._p2t(conn, payload, intent, outcome, relay)
            elif isinstance(outcome, UCWritten):
                assert isinstance(intent, UCWrite)
                self._uc(conn, payload, intent, outcome, relay)

    def _ack(self, conn: ClientLink, packet_id: PacketId, seq: int, ts: int, error: str) -> None:
        self.outbox.acks.append((conn, packet_id, seq, ts, error))

    # ------------------------------------------------------------------ P2P (6.6)

    def _p2p(
        self,
        conn: ClientLink | None,
        event: P2PReceived,
        intent: P2PWrite,
        out: P2PWritten,
        relay: Relay | None,
    ) -> None:
        if out.duplicate:
            # The client's outbox resent a stored packet whose ack was lost (docs/server.md,
            # delivery guarantees): the first copy is stored and delivered already.
            log.debug("%s: packet %s sent again; acked as before", conn, event.packet_id)
        else:
            recipient = out.recipient.uuid
            stored = intent.persist
            if relay is not None and stored:
                relay.looks.add(recipient)
                self.backlog.look(recipient)
            else:
                item = delivery_of(
                    event,
                    sequence=out.recipient_seq,
                    timestamp=out.ts,
                    sender=conn.peer if conn is not None else peer_of(intent),
                    package=intent.app.package,
                    to_uuid=recipient,
                )
                sessions = self.registry.bound.get(recipient)
                if sessions:
                    admit, deliver = self.backlog.admit, self.outbox.deliver
                    for resource, target in sessions.items():
                        wanted = not intent.to_resource or resource == intent.to_resource
                        if wanted and admit(target, item, stored=stored):
                            deliver(target, item)
                if relay is not None:
                    signal = Signal(
                        kind=SignalKind.DELIVER,
                        resource=intent.to_resource,
                        body=encode_delivery(item),
                    )
                    relay.bodies.append((signal, (recipient,)))
        if conn is not None:
            self._ack(conn, event.packet_id, out.sender_seq, out.ts, "")

    # ------------------------------------------------------------------ P2T (6.7)

    def _p2t(
        self,
        conn: ClientLink | None,
        event: P2TReceived,
        intent: P2TWrite,
        out: P2TWritten,
        relay: Relay | None,
    ) -> None:
        if out.refusal is not None:
            error = ERR_NO_TOPIC if out.refusal is Refusal.NO_TOPIC else ERR_NOT_MEMBER
            if conn is not None:
                self._ack(conn, event.packet_id, 0, intent.ts, error)
            return
        if out.duplicate:
            log.debug("%s: packet %s sent again; acked as before", conn, event.packet_id)
        else:
            self._fan_out_p2t(conn, event, intent, out, relay)
        if conn is not None:
            self._ack(conn, event.packet_id, out.sender_seq, out.ts, "")

    def _fan_out_p2t(
        self,
        conn: ClientLink | None,
        event: P2TReceived,
        intent: P2TWrite,
        out: P2TWritten,
        relay: Relay | None,
    ) -> None:
        bound, sender, own = self.registry.bound, intent.sender.uuid, intent.from_resource
        admit, deliver = self.backlog.admit, self.outbox.deliver
        peer = conn.peer if conn is not None else peer_of(intent)
        for member, seq in out.sequences:
            # The sender's own copy has no inbox row: it comes with no pull.
            stored = intent.persist and member != sender
            if relay is not None:
                if stored:
                    relay.looks.add(member)
                    self.backlog.look(member)
                    continue
                item = delivery_of(
                    event, sequence=seq, timestamp=out.ts, sender=peer, package=intent.app.package
                )
                signal = Signal(
                    kind=SignalKind.DELIVER, exclude=(sender, own), body=encode_delivery(item)
                )
                relay.bodies.append((signal, (member,)))
            sessions = bound.get(member)
            if not sessions:
                continue
            item = delivery_of(
                event, sequence=seq, timestamp=out.ts, sender=peer, package=intent.app.package
            )
            for resource, target in sessions.items():
                if member == sender and resource == own:
                    continue
                if admit(target, item, stored=stored):
                    deliver(target, item)

    # ------------------------------------------------------------------ UC (6.12)

    def _uc(
        self,
        conn: ClientLink | None,
        event: UCMessageReceived,
        intent: UCWrite,
        out: UCWritten,
        relay: Relay | None,
    ) -> None:
        if out.refusal is not None or conn is None:
            # No reply is defined for a refused UC message (docs/protocol.md 6.12, 10.19).
            log.info("%s: UC message to topic %s refused (%s)", conn, event.topic_id, out.refusal)
            return
        item = UCDelivery(
            packet_id=event.message_id,
            sequence=out.sequence,
            timestamp=intent.ts,
            sender=conn.peer,
            payload=event.payload,
            is_store=event.is_store,
            biz_type=event.biz_type,
        )
        for member in out.members:
            for target in self.registry.sessions_of(member):
                if target is not conn:
                    self.outbox.deliver_uc(target, event.topic_id, item)
        if relay is not None and out.members:
            signal = Signal(
                kind=SignalKind.FANOUT,
                topic_id=event.topic_id,
                exclude=(conn.peer.uuid, conn.resource),
                body=encode_uc(item),
            )
            relay.bodies.append((signal, out.members))


def peer_of(intent: P2PWrite | P2TWrite) -> Peer:
    """The sender of a message no connection sent (the push API), as its recipients see it."""
    sender = intent.sender
    return Peer(
        app_id=intent.app.app_id,
        app_account=sender.account,
        uuid=sender.uuid,
        resource=intent.from_resource,
    )
