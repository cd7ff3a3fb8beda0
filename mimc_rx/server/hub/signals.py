"""The hub's side of the broker: what a tick hands to other server processes, and what they send.

Theory of operation (docs/scale-out.md)
---------------------------------------
A stored message reaches a connection held elsewhere as a LOOK signal: its holder reads the
storage from the feed's ``sent_through``, so a connection sees its stored messages in sequence
order whichever process committed them; with another node on the bus, local connections read
them the same way. Unstored messages, a sender's own group copy, UC messages and DISMISS travel
as DELIVER/FANOUT bodies (:mod:`mimc_rx.server.relay`). A KICK signal (the same resource logged
in on another process) kicks the local connection. After a broker outage signals may have been
lost, so every bound connection looks again (:meth:`Signals.on_resync`).

With one process and no other node on the bus, nothing goes through the broker: deliveries
are pushed at once (one writer, so commit order is the order of the pushes).
"""

from __future__ import annotations

import dataclasses
import logging

from mimc_rx.server.broker import Broker, LocalBroker, Signal, SignalKind
from mimc_rx.server.hub.backlog import Backlog
from mimc_rx.server.hub.outbox import Outbox, guarded
from mimc_rx.server.hub.registry import Registry
from mimc_rx.server.relay import DISMISS, decode_delivery, decode_uc

__all__ = ["Relay", "Signals"]

log = logging.getLogger(__name__)


class Relay:
    """What one tick hands to other nodes (several server processes only)."""

    __slots__ = ("bodies", "looks")

    def __init__(self) -> None:
        self.looks: set[int] = set()
        """Users with new stored messages: their holders read them from storage."""
        self.bodies: list[tuple[Signal, tuple[int, ...]]] = []
        """Signals with a body, and the users whose holders get them."""

    def __bool__(self) -> bool:
        return bool(self.looks or self.bodies)


class Signals:
    """Signals to and from the other nodes on the broker.

    Args:
        broker: presence and signals between server processes.
        registry, backlog, outbox: where a received signal lands.
    """

    def __init__(
        self, broker: Broker, registry: Registry, backlog: Backlog, outbox: Outbox
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.backlog = backlog
        self.outbox = outbox

    def single_node(self) -> bool:
        """One process and no other node: deliveries need no broker, and a live stored message
        may be pushed at once (one writer, so commit order is the order of the pushes)."""
        broker = self.broker
        return isinstance(broker, LocalBroker) and len(broker.bus.nodes) <= 1

    def new_relay(self) -> Relay | None:
        """A relay for one tick, or None when there is no other node to relay to."""
        return None if self.single_node() else Relay()

    # ------------------------------------------------------------------ to other nodes

    async def send(self, relay: Relay) -> None:
        """Hand a tick's messages for connections held by other nodes to those nodes."""
        broker, me = self.broker, self.broker.node_id
        wanted = set(relay.looks)
        for _, uuids in relay.bodies:
            wanted.update(uuids)
        holders = await broker.holders(wanted)
        looks: dict[str, list[int]] = {}
        for uuid in relay.looks:
            for node in set(holders.get(uuid, {}).values()):
                if node != me:
                    looks.setdefault(node, []).append(uuid)
        for node, waiting in looks.items():
            await broker.send(node, Signal(kind=SignalKind.LOOK, uuids=tuple(waiting)))
        for signal, uuids in relay.bodies:
            by_node: dict[str, list[int]] = {}
            for uuid in uuids:
                held = holders.get(uuid, {})
                if not signal.resource:
                    nodes = set(held.values())
                elif signal.resource in held:
                    nodes = {held[signal.resource]}
                else:
                    nodes = set()
                for node in nodes:
                    if node != me:
                        by_node.setdefault(node, []).append(uuid)
            for node, members in by_node.items():
                await broker.send(node, dataclasses.replace(signal, uuids=tuple(members)))

    # ------------------------------------------------------------------ from other nodes

    def on_signal(self, signal: Signal) -> None:
        """A signal from another node (docs/scale-out.md)."""
        match signal.kind:
            case SignalKind.DELIVER:
                self._deliver(signal)
            case SignalKind.FANOUT:
                self._fanout(signal)
            case SignalKind.KICK:
                for uuid in signal.uuids:
                    conn = self.registry.holder(uuid, signal.resource)
                    if conn is not None:
                        log.info("%s: kicked by a newer login of the same resource", conn)
                        conn.kick(
                            "kick", "same-resource-login", "the same resource logged in elsewhere"
                        )
            case SignalKind.LOOK:
                for uuid in signal.uuids:
                    self.backlog.look(uuid)
            case SignalKind.CHANGED:
                pass  # nothing of a group is cached here: every tick reads the storage

    def on_resync(self) -> None:
        """Signals may have been lost: every bound connection looks for stored messages."""
        for uuid in list(self.registry.bound):
            self.backlog.look(uuid)

    def _deliver(self, signal: Signal) -> None:
        try:
            item = decode_delivery(signal.body)
        except ValueError as exc:
            log.warning("DELIVER signal from %s dropped: %s", signal.origin, exc)
            return
        for conn in self.registry.targets(signal.uuids, signal.resource, signal.exclude):
            if self.backlog.admit(conn, item, stored=False):
                self.outbox.deliver(conn, item)
                self.outbox.touch(conn)

    def _fanout(self, signal: Signal) -> None:
        targets = self.registry.targets(signal.uuids, signal.resource, signal.exclude)
        if signal.body == DISMISS:
            for conn in targets:
                if conn.can_send:
                    guarded(conn, conn.session.uc_dismiss, signal.topic_id)
                    self.outbox.touch(conn)
            return
        try:
            item = decode_uc(signal.body)
        except ValueError as exc:
            log.warning("FANOUT signal from %s dropped: %s", signal.origin, exc)
            return
        for conn in targets:
            self.outbox.deliver_uc(conn, signal.topic_id, item)
            self.outbox.touch(conn)
