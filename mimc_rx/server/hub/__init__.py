"""The hub: bound sessions, routing, and the commit-before-ack pipeline.

Theory of operation
-------------------
Every websocket connection drives one ``ServerSession`` (the sans-I/O core). The session turns
bytes into events; the gateway hands each event to :meth:`Hub.handle`, which makes the business
decisions (who is this token, who receives this message, what is stored) and answers with
session commands. The hub never touches bytes.

The durable state is a :class:`~mimc_rx.server.storage.interface.Storage` (the embedded SQLite
one by default, or PostgreSQL) and other server processes are reached through a
:class:`~mimc_rx.server.broker.Broker` (in-process by default, or Redis); docs/scale-out.md.

Handlers queue intents; one task per tick writes them with ``Storage.write_tick``, which
commits before it returns, and only then are the acks and deliveries sent: an ack is never
sent for an uncommitted message (:mod:`.tick`). Reads (BIND's token, cursor and backlog; PULL;
UC JOIN/QUIT) are awaited in a task per request, chained per connection (:mod:`.backlog`).
Each bound connection's :class:`~.feed.Feed` keeps a cumulative SEQUENCE_ACK from ever
covering a stored message not sent on that connection (:mod:`.feed`, docs/server.md "Delivery
guarantees"). Senders are deduplicated by (sender uuid, resource, packet id) in the storage: a
stored message sent again under its packet id is acked with its first sequence and timestamp
and not delivered twice, for ``ServerConfig.dedup_retention``.

The parts, each importing only those above it:

=================  ============================================================================
``registry``       :class:`ClientLink` (what the hub needs of a connection) and the connections
``feed``           the sans-I/O delivery rules of one connection (sent_through, pending, clamp)
``outbox``         a tick's acks, deliveries, notifications by connection; ``compound_chunks``
``backlog``        storage reads per connection: BIND backlog, PULL, LOOK, sequence acks
``signals``        the broker: relay a tick to other nodes, receive LOOK/DELIVER/FANOUT/KICK
``routing``        a tick's outcomes to acks, deliveries and signals (who receives what)
``tick``           the pipeline: queued ops, ``write_tick``, then route and send
``messages``       P2P/P2T/UC packets checked and queued as intents; UC JOIN/QUIT/dismiss
``login``          BIND: token, signature, one connection per resource, backlog first
``hub``            :class:`Hub`: wires the parts, dispatches events, lifecycle and sweep
=================  ============================================================================
"""

from __future__ import annotations

from mimc_rx.server.hub.hub import Hub
from mimc_rx.server.hub.registry import ClientLink

__all__ = ["ClientLink", "Hub"]
