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

Work is grouped by event-loop tick. Handlers validate what needs no storage and *queue*
intents (``P2PWrite``, ``P2TWrite``, ``UCWrite``, ``CursorWrite``) in arrival order, with the
acks that need no write; the first of a tick starts one task. The task, under a lock (one
writer per process, ticks in order), awaits ``Storage.write_tick`` with the tick's intents,
which commits before it returns; then it builds the acks (a duplicate gets its original ack)
and the deliveries from the outcomes, issues the acks, one COMPOUND per receiving session with
everything that arrived for it, and lets each touched connection write its frames. So an ack is
never sent for an uncommitted message, and a burst of messages costs one transaction and few
frames (docs/protocol.md 6.6-6.9). If the write fails, one line is logged and nothing of it is
acked: the senders send again. The SQLite ``write_tick`` never suspends, so the default pays
one task per tick and nothing per message.

Reads (BIND's token, cursor and backlog; PULL; UC JOIN/QUIT) are awaited in a task per request,
serialised per connection so each connection's order holds. The backlog at BIND is read before
the BIND answer; while a read is in flight the feed is ``pending`` (below), and a live stored
message held back meanwhile makes the read start again (``missed``).

Several processes: a stored message reaches a connection held elsewhere as a LOOK signal (its
holder reads the storage from ``sent_through``, so a connection sees its stored messages in
sequence order whichever process committed them); with another node on the bus, local
connections read them the same way. Unstored messages, a sender's own group copy, UC messages
and DISMISS travel as DELIVER/FANOUT bodies (:mod:`mimc_rx.server.relay`). A KICK signal (the
same resource logged in on another process) kicks the local connection; after a broker outage
every bound connection looks again.

Routing rules (docs/protocol.md 6.6, 6.7, 6.12):

* P2P: every bound session of the recipient (only the named resource when ``to.resource`` is
  set). Unknown recipients are created on the fly, as the cloud does for app-defined accounts,
  so they find their stored messages at first login.
* P2T: every bound session of every member except the sending session; the sender's other
  resources get the message too, under the sender's sequence. Only members may send.
* UC: every bound session of every member except the sending session; per-topic sequences.
* ``isStore=false`` messages go to online sessions only; stored ones also wait in the inbox of
  each recipient (see :mod:`mimc_rx.server.storage.store` for cursors and redelivery).

Delivery feeds (docs/server.md, "Delivery guarantees")
------------------------------------------------------
A SEQUENCE_ACK is cumulative (docs/protocol.md 6.9), so the hub must never let one cover a stored
message that was not sent on that connection. Each bound connection has a ``_Feed``:
``sent_through`` (every stored message of the user up to it was sent here, or was below the
cursor at BIND) and ``pending`` (stored messages above it wait to be pulled). A SEQUENCE_ACK moves
the cursor at most to ``sent_through``. While a backlog is pending, live *stored* messages are not
pushed to that connection: they wait in the store, behind the backlog, and come with the pulls,
oldest first; unstored ones are pushed (they are in no backlog). A pull answer starts above
``sent_through``; one that fills ``pull_limit`` is followed by a new pull notification (6.10), so
auto-pull goes on until the backlog is drained. The one ack that may pass ``sent_through`` is the
ack of a notified range's ``maxSequence``: that is how the official SDK says "I drop this range"
(6.10), and the range then counts as sent.

Senders are deduplicated by (sender uuid, resource, packet id): a stored message sent again under
its packet id (the client's outbox after a reconnect) is acked with its first sequence and
timestamp and is not delivered twice; the store keeps that record for
``ServerConfig.dedup_retention``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mimc_rx.protocol.events import (
    BadPacket,
    BindRequested,
    Delivery,
    P2PReceived,
    P2TReceived,
    PacketId,
    Peer,
    Pinged,
    ProtocolFailure,
    PullRequested,
    SequenceAcked,
    ServerEvent,
    UCDelivery,
    UCJoinRequested,
    UCMessageReceived,
    UCPinged,
    UCQuitRequested,
    UCSequenceAcked,
    UnbindRequested,
)
from mimc_rx.protocol.server import GroupBodies, ServerSession, delivery_of
from mimc_rx.server.auth import TokenService, TokenStatus
from mimc_rx.server.broker import Broker, LocalBroker, Signal, SignalKind
from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.relay import DISMISS, decode_delivery, decode_uc, encode_delivery, encode_uc
from mimc_rx.server.storage import Store, StoredMessage, UCTopic, User
from mimc_rx.server.storage.interface import (
    CursorWrite,
    Intent,
    Outcome,
    P2PWrite,
    P2PWritten,
    P2TWrite,
    P2TWritten,
    Refusal,
    Storage,
    UCWrite,
    UCWritten,
)
from mimc_rx.server.validation import utf8_longer_than

__all__ = ["ClientLink", "Hub", "compound_chunks"]

log = logging.getLogger(__name__)

# Bytes counted for one packet beside its payload (ids, peers, sequence, biz type): generous, so
# a frame stays under the budget without encoding it twice.
_ENTRY_OVERHEAD = 512


class ClientLink(Protocol):
    """What the hub needs of one client connection; the gateway's connection is one.

    A protocol rather than the gateway's class, so the hub (and the push API) depend on no
    transport: the gateway imports the hub, never the other way round.

    Attributes:
        session: the sans-I/O server session the hub commands.
        user, app, resource, peer: who is bound here (None / "" before BIND).
        last_seen: loop time of the last message received, for the idle sweep.
        opened_at: loop time the connection was accepted, for the login timeout.
    """

    session: ServerSession
    user: User | None
    app: AppConfig | None
    resource: str
    peer: Peer
    last_seen: float
    opened_at: float

    @property
    def can_send(self) -> bool:
        """True while session commands may be issued (open and bound)."""
        ...

    def bound(self, user: User, app: AppConfig, resource: str) -> None:
        """Record the identity a successful BIND established."""

    def pump(self) -> None:
        """Move the session's frames to the writer (at the end of a tick)."""

    def kick(self, err_type: str, err_reason: str, err_desc: str) -> None:
        """Send KICK (docs/protocol.md 6.13) and close."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the queued frames are written. Idempotent."""

    def expire(self, now: float) -> None:
        """Run the session's timers if their deadline passed."""

    def check_writer(self, now: float) -> None:
        """Close the connection when one write has been blocked too long."""


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


# errorMsg texts of refused packets (PACKET_ACK, docs/protocol.md 4.3). Short and free of detail.
ERR_TOO_LARGE = "payload too large"
ERR_NO_RECIPIENT = "invalid recipient"
ERR_OTHER_APP = "recipient belongs to another app"
ERR_NO_TOPIC = "topic not found"
ERR_NOT_MEMBER = "not a member of the topic"
ERR_MALFORMED = "malformed packet"
ERR_LONG_PACKET_ID = "packetId too long"
ERR_LONG_BIZ_TYPE = "bizType too long"
ERR_LONG_ACCOUNT = "toAccount too long"
ERR_LONG_RESOURCE = "toResource too long"

# UC JOIN_RESP / QUIT_RESP codes; 0 is success (docs/protocol.md 4.4).
UC_OK = 0
UC_NOT_FOUND = 404

# How often the sweep forgets sender-dedup rows older than ServerConfig.dedup_retention.
_PRUNE_PERIOD = 600.0


@dataclass(slots=True)
class _Feed:
    """What one bound connection was sent of its user's stored messages (module docstring)."""

    sent_through: int
    pending: bool = False
    notified: set[int] = field(default_factory=set)
    """The maxSequence of each pull notification sent here and not yet passed."""
    missed: bool = False
    """A live stored message was held back while ``pending``: read the storage again."""


class _Relay:
    """What one tick hands to other nodes (several server processes only)."""

    __slots__ = ("bodies", "looks")

    def __init__(self) -> None:
        self.looks: set[int] = set()
        """Users with new stored messages: their holders read them from storage."""
        self.bodies: list[tuple[Signal, tuple[int, ...]]] = []
        """Signals with a body, and the users whose holders get them."""


class Hub:
    """Routing and storage logic shared by every connection and the HTTP APIs.

    Args:
        storage: the durable state (:class:`~mimc_rx.server.storage.interface.Storage`).
        apps: the configured apps, by id.
        config: limits and clock.
        tokens: the token service (also used by the HTTP APIs).
        broker: presence and signals between server processes; a private
            :class:`~mimc_rx.server.broker.LocalBroker` (one process) by default.
    """

    def __init__(
        self,
        storage: Storage,
        apps: dict[int, AppConfig],
        config: ServerConfig,
        tokens: TokenService,
        broker: Broker | None = None,
    ) -> None:
        self.storage = storage
        self.broker: Broker = broker if broker is not None else LocalBroker()
        self.apps = apps
        self.config = config
        self.tokens = tokens
        self.connections: set[ClientLink] = set()
        self.unbound: set[ClientLink] = set()
        """Connections not (yet) bound to a user: counted against max_pending_connections."""
        # Shared by every connection's session: the fan-out of a group message encodes its
        # body once (the hub itself never looks at bytes).
        self.group_bodies = GroupBodies()
        self._bound: dict[int, dict[str, ClientLink]] = {}
        # This tick's work in arrival order: (conn, event, intent) for a write, or
        # (conn, ack, None) for an ack that needs no write.
        self._ops: list[tuple[ClientLink | None, Any, Intent | None]] = []
        self._cursor_writes: list[CursorWrite] = []
        self._acks: list[tuple[ClientLink, PacketId, int, int, str]] = []
        self._deliveries: dict[ClientLink, list[Delivery]] = {}
        self._notices: dict[ClientLink, tuple[int, int]] = {}
        self._feeds: dict[ClientLink, _Feed] = {}
        self._uc_deliveries: dict[tuple[ClientLink, int], list[UCDelivery]] = {}
        self._touched: set[ClientLink] = set()
        self._scheduled = False
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serial: dict[ClientLink, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        """The SQLite store under the default storage (tests and SQLite-only tools).

        Raises:
            AttributeError: the storage is not the embedded SQLite one.
        """
        store = getattr(self.storage, "store", None)
        if not isinstance(store, Store):
            raise AttributeError(f"{self.storage!r} has no SQLite store")
        return store

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind to the running loop, join the broker and start the idle sweeper."""
        self._loop = asyncio.get_running_loop()
        await self.broker.start(self._on_signal, self._on_resync)
        self._sweeper = self._loop.create_task(self._sweep_forever(), name="mimc-rx idle sweeper")

    async def close(self) -> None:
        """Stop the sweeper, close every connection, write what is queued, close the engines."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for conn in list(self.connections):
            conn.close(1001, "server shutting down")
        await self.flush()
        pending = [*self._tasks, *self._serial.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.broker.close()
        await self.storage.close()

    def attach(self, conn: ClientLink) -> None:
        """A websocket was accepted."""
        self.connections.add(conn)
        self.unbound.add(conn)

    def detach(self, conn: ClientLink) -> None:
        """A websocket went away: forget it (its undelivered messages stay in the inbox)."""
        self.connections.discard(conn)
        self.unbound.discard(conn)
        self._touched.discard(conn)
        self._deliveries.pop(conn, None)
        self._notices.pop(conn, None)
        self._feeds.pop(conn, None)
        if conn.user is not None:
            sessions = self._bound.get(conn.user.uuid)
            if sessions is not None and sessions.get(conn.resource) is conn:
                del sessions[conn.resource]
                if not sessions:
                    del self._bound[conn.user.uuid]
                self._spawn(self._release(conn.user.uuid, conn.resource))

    async def _release(self, uuid: int, resource: str) -> None:
        if resource not in self._bound.get(uuid, {}):  # not logged in again meanwhile
            await self.broker.release(uuid, resource)

    def sessions_of(self, uuid: int) -> Iterable[ClientLink]:
        """The bound connections of a user."""
        return self._bound.get(uuid, {}).values()

    def online_resources(self, uuid: int) -> list[str]:
        """The resources a user is bound with right now (in this process)."""
        return list(self._bound.get(uuid, {}))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _single_node(self) -> bool:
        # One process and no other node: deliveries need no broker, and a live stored message
        # may be pushed at once (one writer, so commit order is the order of the pushes).
        broker = self.broker
        return isinstance(broker, LocalBroker) and len(broker.bus.nodes) <= 1

    # ------------------------------------------------------------------ per-connection reads

    def _in_order(self, conn: ClientLink, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` after the connection's previous read (BIND, PULL, backlog, UC join)."""
        previous = self._serial.get(conn)
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._after(conn, previous, coro))
        self._serial[conn] = task
        task.add_done_callback(lambda done: self._read_done(conn, done))

    def _read_done(self, conn: ClientLink, task: asyncio.Task[None]) -> None:
        if self._serial.get(conn) is task:
            del self._serial[conn]

    async def _after(
        self,
        conn: ClientLink,
        previous: asyncio.Task[None] | None,
        coro: Coroutine[Any, Any, None],
    ) -> None:
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await coro
        except Exception as exc:
            # A storage failure (an engine away): no traceback per connection; the client
            # reconnects and is served from the cursor.
            log.error("%s: storage read failed (%s: %s); closing", conn, type(exc).__name__, exc)
            conn.close(1011, "internal error")
            return
        finally:
            coro.close()
        self.touch(conn)

    # ------------------------------------------------------------------ the tick pipeline

    def touch(self, conn: ClientLink) -> None:
        """Ask for ``conn``'s frames to be written at the end of this tick."""
        self._touched.add(conn)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            task = loop.create_task(self._tick())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write what is queued and send this tick's acks and deliveries now."""
        await self._tick()

    async def _tick(self) -> None:
        """One tick: write the intents, then ack and deliver (see the module docstring)."""
        async with self._write_lock:
            self._scheduled = False
            ops, self._ops = self._ops, []
            cursors, self._cursor_writes = self._cursor_writes, []
            intents: list[Intent] = [op[2] for op in ops if op[2] is not None]
            intents += cursors
            outcomes: Sequence[Outcome] = ()
            if intents:
                try:
                    outcomes = await self.storage.write_tick(intents)
                except Exception as exc:
                    # Nothing of this tick is stored, so nothing of it is acked: the senders
                    # time out and send again (the dedup keeps that at exactly once).
                    log.error(
                        "storage write failed (%s: %s); %d writes of this tick not acked",
                        type(exc).__name__,
                        exc,
                        len(intents),
                    )
                    ops = [op for op in ops if op[2] is None]
            relay = None if self._single_node() else _Relay()
            self._route(ops, outcomes, relay)
            self._send()
            if relay is not None and (relay.looks or relay.bodies):
                await self._relay(relay)

    async def write_now(
        self, entries: Sequence[tuple[P2PReceived | P2TReceived, Intent]]
    ) -> list[Outcome]:
        """Write messages that no connection sent (the push API), then deliver them.

        What is queued goes first (lower sequences). Raises what the storage raised, with
        nothing of ``entries`` stored or delivered.
        """
        await self.flush()
        async with self._write_lock:
            outcomes = await self.storage.write_tick([intent for _, intent in entries])
            relay = None if self._single_node() else _Relay()
            self._route([(None, event, intent) for event, intent in entries], outcomes, relay)
            self._send()
        if relay is not None and (relay.looks or relay.bodies):
            await self._relay(relay)
        return outcomes

    def _route(
        self,
        ops: list[tuple[ClientLink | None, Any, Intent | None]],
        outcomes: Sequence[Outcome],
        relay: _Relay | None,
    ) -> None:
        acks = self._acks
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
                self._routed_p2p(conn, payload, intent, outcome, relay)
            elif isinstance(outcome, P2TWritten):
                assert isinstance(intent, P2TWrite)
                self._routed_p2t(conn, payload, intent, outcome, relay)
            elif isinstance(outcome, UCWritten):
                assert isinstance(intent, UCWrite)
                self._routed_uc(conn, payload, intent, outcome, relay)

    def _send(self) -> None:
        acks, self._acks = self._acks, []
        deliveries, self._deliveries = self._deliveries, {}
        notices, self._notices = self._notices, {}
        uc, self._uc_deliveries = self._uc_deliveries, {}
        for conn, packet_id, sequence, timestamp, error in acks:
            if conn.can_send:
                self._guarded(
                    conn,
                    conn.session.ack_packet,
                    packet_id,
                    sequence=sequence,
                    timestamp=timestamp,
                    error_msg=error,
                )
                self._touched.add(conn)
        count, budget = self.config.compound_size, self.config.max_compound_bytes
        for conn, items in deliveries.items():
            for chunk in compound_chunks(items, count, budget):
                if conn.can_send:
                    self._guarded(
                        conn, conn.session.deliver, chunk, max_sequence=chunk[-1].sequence
                    )
            self._touched.add(conn)
        for conn, (low, high) in notices.items():
            # After this tick's deliveries: a notice that follows a pull answer says "more".
            if conn.can_send:
                self._guarded(conn, conn.session.notify_backlog, low, high)
                self._touched.add(conn)
        for (conn, topic_id), uc_items in uc.items():
            for uc_chunk in compound_chunks(uc_items, count, budget):
                if conn.can_send:
                    self._guarded(
                        conn,
                        conn.session.deliver_uc,
                        topic_id,
                        uc_chunk,
                        max_sequence=uc_chunk[-1].sequence,
                    )
                    self._touched.add(conn)
        self.group_bodies.clear()  # this tick's fan-out is encoded
        touched, self._touched = self._touched, set()
        for conn in touched:
            conn.pump()

    @staticmethod
    def _guarded(conn: ClientLink, command: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        # One connection's failure (a bug of ours, a session that just closed) must not cost the
        # other connections their acks and deliveries.
        try:
            command(*args, **kwargs)
        except Exception:
            log.exception("%s: %s failed; closing", conn, getattr(command, "__name__", command))
            conn.close(1011, "internal error")

    def _ack(
        self, conn: ClientLink, packet_id: PacketId, sequence: int, ts: int, error: str = ""
    ) -> None:
        # Queued in order with the tick's writes, so a connection's acks keep its order.
        self._ops.append((conn, (packet_id, sequence, ts, error), None))
        self._touched.add(conn)
        self._schedule()

    def _deliver(self, conn: ClientLink, item: Delivery) -> None:
        queue = self._deliveries.get(conn)
        if queue is None:
            self._deliveries[conn] = [item]
        else:
            queue.append(item)

    # ------------------------------------------------------------------ other nodes

    async def _relay(self, relay: _Relay) -> None:
        """Hand this tick's messages for connections held by other nodes to those nodes."""
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

    def _on_signal(self, signal: Signal) -> None:
        """A signal from another node (docs/scale-out.md)."""
        match signal.kind:
            case SignalKind.DELIVER:
                self._signal_deliver(signal)
            case SignalKind.FANOUT:
                self._signal_fanout(signal)
            case SignalKind.KICK:
                for uuid in signal.uuids:
                    conn = self._bound.get(uuid, {}).get(signal.resource)
                    if conn is not None:
                        log.info("%s: kicked by a newer login of the same resource", conn)
                        conn.kick(
                            "kick", "same-resource-login", "the same resource logged in elsewhere"
                        )
            case SignalKind.LOOK:
                for uuid in signal.uuids:
                    self._look(uuid)
            case SignalKind.CHANGED:
                pass  # nothing of a group is cached here: every tick reads the storage

    def _on_resync(self) -> None:
        # Signals may have been lost: every bound connection looks for stored messages.
        for uuid in list(self._bound):
            self._look(uuid)

    def _targets(self, signal: Signal) -> Iterator[tuple[int, ClientLink]]:
        for uuid in signal.uuids:
            for resource, conn in self._bound.get(uuid, {}).items():
                if signal.resource and resource != signal.resource:
                    continue
                if signal.exclude is not None and signal.exclude == (uuid, resource):
                    continue
                yield uuid, conn

    def _signal_deliver(self, signal: Signal) -> None:
        try:
            item = decode_delivery(signal.body)
        except ValueError as exc:
            log.warning("DELIVER signal from %s dropped: %s", signal.origin, exc)
            return
        for _, conn in self._targets(signal):
            if self.admit(conn, item, stored=False):
                self._deliver(conn, item)
                self.touch(conn)

    def _signal_fanout(self, signal: Signal) -> None:
        if signal.body == DISMISS:
            for _, conn in self._targets(signal):
                if conn.can_send:
                    self._guarded(conn, conn.session.uc_dismiss, signal.topic_id)
                    self.touch(conn)
            return
        try:
            item = decode_uc(signal.body)
        except ValueError as exc:
            log.warning("FANOUT signal from %s dropped: %s", signal.origin, exc)
            return
        for _, conn in self._targets(signal):
            self._uc_deliveries.setdefault((conn, signal.topic_id), []).append(item)
            self.touch(conn)

    def _look(self, uuid: int) -> None:
        """Stored messages wait for ``uuid``: its connections read them from storage."""
        for conn in list(self.sessions_of(uuid)):
            feed = self._feeds.get(conn)
            if feed is None:
                continue
            if feed.pending:
                feed.missed = True  # the read in flight, or the next pull, takes them
            else:
                feed.pending = True
                self._in_order(conn, self._catch_up(conn, feed))

    # ------------------------------------------------------------------ events

    def handle(self, conn: ClientLink, event: ServerEvent) -> None:
        """Answer one event of ``conn``'s session."""
        match event:
            case P2PReceived():
                self._on_p2p(conn, event)
            case SequenceAcked(sequence=sequence):
                self._on_sequence_ack(conn, sequence)
            case P2TReceived():
                self._on_p2t(conn, event)
            case BindRequested():
                self._on_bind(conn, event)
            case PullRequested():
                feed = self._feeds.get(conn)
                if conn.user is not None and feed is not None:
                    # docs/protocol.md 6.11: ordinary COMPOUND lists of what is pending here.
                    self._in_order(conn, self._catch_up(conn, feed))
            case Pinged():
                pass
            case UCMessageReceived():
                self._on_uc_message(conn, event)
            case UCJoinRequested(topic_id=topic_id):
                self._in_order(conn, self._uc_join(conn, topic_id))
            case UCQuitRequested(topic_id=topic_id):
                self._in_order(conn, self._uc_quit(conn, topic_id))
            case UCPinged():
                # docs/protocol.md 10.10: the list may name left or unknown topics; only answer.
                conn.session.uc_pong()
            case UCSequenceAcked():
                pass
            case UnbindRequested():
                log.debug("%s logged out (UBND)", conn)
            case ProtocolFailure(reason=reason, detail=detail):
                log.info("%s: protocol failure %s (%s); closing", conn, reason, detail)
            case BadPacket(reason=reason, packet_id=packet_id, detail=detail):
                log.info("%s: bad packet %s (%s)", conn, reason, detail)
                if packet_id is not None and conn.user is not None:
                    self._ack(conn, packet_id, 0, self.config.now_ms(), ERR_MALFORMED)

    # ------------------------------------------------------------------ BIND (6.3)

    def _on_bind(self, conn: ClientLink, event: BindRequested) -> None:
        if utf8_longer_than(event.resource, self.config.max_field_bytes):
            # The resource names a cursor row; the SDKs use a few dozen bytes.
            conn.session.reject_bind("auto", "invalid-resource", "the resource is too long")
            log.info("%s: BIND refused, resource of %d characters", conn, len(event.resource))
            return
        self._in_order(conn, self._bind(conn, event))

    async def _bind(self, conn: ClientLink, event: BindRequested) -> None:
        session = conn.session
        status, user = await self.tokens.resolve(event.token)
        if conn not in self.connections:
            return  # gone while the token was looked up
        # docs/protocol.md 4.2: the TCP SDKs refetch a token on "token-expired" / "invalid-token".
        if status is TokenStatus.EXPIRED:
            session.reject_bind("token-expired", "token-expired", "the token has expired")
            log.info("%s: BIND refused, expired token", conn)
            return
        if user is None or status is not TokenStatus.VALID:
            session.reject_bind("auto", "invalid-token", "unknown token")
            log.info("%s: BIND refused, unknown token", conn)
            return
        app = self.apps.get(user.app_id)
        if user.uuid != event.uuid or app is None:
            session.reject_bind("auto", "invalid-token", "the token does not match the user")
            log.info("%s: BIND refused, token of uuid %s used by %s", conn, user.uuid, event.uuid)
            return
        # The backlog at login is read before the BIND answer: what the client sends after it
        # is live. Messages committed from here on are read again below (_catch_up).
        uuid, resource, limit = user.uuid, event.resource, self.config.backlog_limit
        cursor = await self.storage.open_cursor(uuid, resource)
        count, low, high = await self.storage.backlog_summary(uuid, cursor)
        backlog = await self.storage.backlog(uuid, cursor, count) if 0 < count <= limit else []
        if conn not in self.connections:
            return
        if not session.accept_bind(
            user.security_key, app_id=app.app_id, package=app.package, app_account=user.account
        ):
            log.info("%s: BIND refused, signature mismatch", conn)
            return
        conn.bound(user, app, resource)
        self.unbound.discard(conn)
        sessions = self._bound.setdefault(uuid, {})
        older = sessions.get(resource)
        sessions[resource] = conn
        if older is not None and older is not conn:
            # Same (uuid, resource) logged in again: the newer connection wins (issue 3).
            log.info("%s: kicked by a newer login of the same resource", older)
            older.kick("kick", "same-resource-login", "the same resource logged in elsewhere")
        log.info("%s: bound as %s/%s", conn, user.account, resource)
        feed = self._feeds[conn] = _Feed(sent_through=cursor, pending=True)
        self.touch(conn)  # the BIND answer, then the backlog
        if count > limit:
            # docs/protocol.md 6.10: too many to push; the client pulls or uses history.
            self._notify(conn, feed, low, high)
        else:
            self._push_stored(conn, feed, backlog)
        await self.broker.claim(uuid, resource)  # kicks a holder on another node
        if count <= limit and self._feeds.get(conn) is feed:
            await self._catch_up(conn, feed)

    async def _catch_up(self, conn: ClientLink, feed: _Feed) -> None:
        """Push the stored messages above ``feed.sent_through``, oldest first: a PULL's answer.

        Also for live stored messages held back (``feed.pending``) while the storage was read,
        or committed by another process. Up to ``pull_limit`` at once; when that fills, a new
        pull notification says more is waiting (6.10).
        """
        assert conn.user is not None
        uuid, limit = conn.user.uuid, self.config.pull_limit
        while True:
            feed.pending, feed.missed = True, False
            messages = await self.storage.backlog(uuid, feed.sent_through, limit)
            if self._feeds.get(conn) is not feed:
                return
            self._push_stored(conn, feed, messages)
            if len(messages) >= limit:
                count, low, high = await self.storage.backlog_summary(uuid, feed.sent_through)
                if self._feeds.get(conn) is not feed:
                    return
                if count:
                    self._notify(conn, feed, low, high)
                    return
            if not feed.missed:
                feed.pending = False
                return

    async def _send_backlog(self, conn: ClientLink, feed: _Feed) -> None:
        """Push what is stored above ``feed.sent_through``, or announce it when it is too much.

        ``feed.pending`` holds live stored messages back while the storage is read; one that
        was held back meanwhile (``feed.missed``) makes the read start again.
        """
        assert conn.user is not None
        uuid = conn.user.uuid
        while True:
            feed.pending, feed.missed = True, False
            count, low, high = await self.storage.backlog_summary(uuid, feed.sent_through)
            if self._feeds.get(conn) is not feed:
                return
            if count == 0:
                if feed.missed:
                    continue
                feed.pending = False
                return
            if count > self.config.backlog_limit:
                # docs/protocol.md 6.10: too many to push; the client pulls or uses history.
                self._notify(conn, feed, low, high)
                return
            messages = await self.storage.backlog(uuid, feed.sent_through, count)
            if self._feeds.get(conn) is not feed:
                return
            self._push_stored(conn, feed, messages)
            if not feed.missed:
                feed.pending = False
                return

    def _push_stored(
        self, conn: ClientLink, feed: _Feed, messages: Sequence[StoredMessage]
    ) -> None:
        for message in messages:
            if message.seq > feed.sent_through:
                self._deliver(conn, self._delivery_from_store(message))
                feed.sent_through = message.seq
        if messages:
            self.touch(conn)

    def _notify(self, conn: ClientLink, feed: _Feed, low: int, high: int) -> None:
        # 6.10: a pull notification; live stored messages wait behind the range until pulled.
        feed.pending = True
        feed.notified.add(high)
        self._notices[conn] = (low, high)
        self.touch(conn)

    def _on_sequence_ack(self, conn: ClientLink, sequence: int) -> None:
        # 6.9: "delivered up to here", but never past what this connection was sent.
        feed = self._feeds.get(conn)
        user = conn.user
        if user is None or feed is None:
            return
        if sequence > feed.sent_through and sequence in feed.notified:
            # 6.10: the ack of a notified maxSequence drops the range (the SDK's answer to a
            # pull notification); what was stored behind it comes next.
            feed.sent_through = sequence
            feed.notified = {high for high in feed.notified if high > sequence}
            self._cursor_writes.append(
                CursorWrite(uuid=user.uuid, resource=conn.resource, sequence=sequence)
            )
            if not feed.notified:
                self._in_order(conn, self._send_backlog(conn, feed))
            self.touch(conn)
        else:
            # No tick of its own: the cursor is written with the next tick that writes (a
            # message) or the sweep's. A crash loses at most those cursors, and their messages
            # are delivered again, which clients drop by sequence (6.9, 6.15). At a low rate
            # this saves a commit and a loop pass per delivered frame.
            acked = min(sequence, feed.sent_through)
            self._cursor_writes.append(
                CursorWrite(uuid=user.uuid, resource=conn.resource, sequence=acked)
            )

    def admit(self, conn: ClientLink, item: Delivery, *, stored: bool) -> bool:
        """Whether a live message may be pushed to ``conn`` now (module docstring, feeds).

        Args:
            conn: a bound connection of the recipient.
            item: the delivery, with its sequence in the recipient's space.
            stored: the message has an inbox row for this connection's user (it would come
                with a pull); False for unstored messages and a sender's own group messages.
        """
        feed = self._feeds.get(conn)
        if feed is None:
            return False
        if feed.pending:
            # Stored: it waits behind the backlog and comes with a pull, in order. Unstored:
            # pushed now, without raising sent_through past stored messages not sent yet.
            if stored:
                feed.missed = True
            return not stored
        if item.sequence > feed.sent_through:
            feed.sent_through = item.sequence
        elif stored:
            return False  # already sent by a backlog read
        return True

    @staticmethod
    def _delivery_from_store(message: StoredMessage) -> Delivery:
        return delivery_of(
            message.as_sent(), sequence=message.seq, timestamp=message.ts, to_uuid=message.to_uuid
        )

    # ------------------------------------------------------------------ P2P and P2T (6.6, 6.7)

    def _on_p2p(self, conn: ClientLink, event: P2PReceived) -> None:
        user, app = conn.user, conn.app
        now_ms = self.config.now_ms()
        if user is None or app is None:
            return
        error = self._p2p_error(event, app)
        if error:
            self._ack(conn, event.packet_id, 0, now_ms, error)
            return
        intent = P2PWrite(
            app=app,
            packet_id=event.packet_id,
            sender=user,
            from_resource=conn.resource,
            to_account=event.to_account,
            payload=event.payload,
            biz_type=event.biz_type,
            to_resource=event.to_resource,
            ts=now_ms,
            persist=event.is_store,
        )
        self._ops.append((conn, event, intent))
        self._touched.add(conn)
        self._schedule()

    def _routed_p2p(
        self,
        conn: ClientLink | None,
        event: P2PReceived,
        intent: P2PWrite,
        out: P2PWritten,
        relay: _Relay | None,
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
                self._look(recipient)
            else:
                item = delivery_of(
                    event,
                    sequence=out.recipient_seq,
                    timestamp=out.ts,
                    sender=conn.peer if conn is not None else _peer_of(intent),
                    package=intent.app.package,
                    to_uuid=recipient,
                )
                sessions = self._bound.get(recipient)
                if sessions:
                    for resource, target in sessions.items():
                        wanted = not intent.to_resource or resource == intent.to_resource
                        if wanted and self.admit(target, item, stored=stored):
                            self._deliver(target, item)
                if relay is not None:
                    signal = Signal(
                        kind=SignalKind.DELIVER,
                        resource=intent.to_resource,
                        body=encode_delivery(item),
                    )
                    relay.bodies.append((signal, (recipient,)))
        if conn is not None:
            self._acks.append((conn, event.packet_id, out.sender_seq, out.ts, ""))

    def _p2p_error(self, event: P2PReceived, app: AppConfig) -> str:
        limit = self.config.max_field_bytes
        if len(event.payload) > self.config.max_payload:
            return ERR_TOO_LARGE
        if not event.to_account:
            return ERR_NO_RECIPIENT
        if event.to_app_id not in (0, app.app_id):
            return ERR_OTHER_APP
        if utf8_longer_than(event.to_account, limit):
            return ERR_LONG_ACCOUNT
        if utf8_longer_than(event.to_resource, limit):
            return ERR_LONG_RESOURCE
        return self._field_error(event.packet_id, event.biz_type)

    def _field_error(self, packet_id: str, biz_type: str) -> str:
        # Everything stored is bounded (ServerConfig.max_field_bytes); the SDKs send a few
        # dozen bytes in these fields.
        limit = self.config.max_field_bytes
        if utf8_longer_than(packet_id, limit):
            return ERR_LONG_PACKET_ID
        if utf8_longer_than(biz_type, limit):
            return ERR_LONG_BIZ_TYPE
        return ""

    def _on_p2t(self, conn: ClientLink, event: P2TReceived) -> None:
        user, app = conn.user, conn.app
        now_ms = self.config.now_ms()
        if user is None or app is None:
            return
        error = ""
        if len(event.payload) > self.config.max_payload:
            error = ERR_TOO_LARGE
        error = error or self._field_error(event.packet_id, event.biz_type)
        if error:
            self._ack(conn, event.packet_id, 0, now_ms, error)
            return
        # The topic and the membership are checked in the tick (P2TWritten.refusal).
        intent = P2TWrite(
            app=app,
            packet_id=event.packet_id,
            sender=user,
            from_resource=conn.resource,
            topic_id=event.topic_id,
            payload=event.payload,
            biz_type=event.biz_type,
            ts=now_ms,
            persist=event.is_store,
        )
        self._ops.append((conn, event, intent))
        self._touched.add(conn)
        self._schedule()

    def _routed_p2t(
        self,
        conn: ClientLink | None,
        event: P2TReceived,
        intent: P2TWrite,
        out: P2TWritten,
        relay: _Relay | None,
    ) -> None:
        if out.refusal is not None:
            error = ERR_NO_TOPIC if out.refusal is Refusal.NO_TOPIC else ERR_NOT_MEMBER
            if conn is not None:
                self._acks.append((conn, event.packet_id, 0, intent.ts, error))
            return
        if out.duplicate:
            log.debug("%s: packet %s sent again; acked as before", conn, event.packet_id)
        else:
            self._fan_out_p2t(conn, event, intent, out, relay)
        if conn is not None:
            self._acks.append((conn, event.packet_id, out.sender_seq, out.ts, ""))

    def _fan_out_p2t(
        self,
        conn: ClientLink | None,
        event: P2TReceived,
        intent: P2TWrite,
        out: P2TWritten,
        relay: _Relay | None,
    ) -> None:
        bound, sender, own = self._bound, intent.sender.uuid, intent.from_resource
        peer = conn.peer if conn is not None else _peer_of(intent)
        for member, seq in out.sequences:
            # The sender's own copy has no inbox row: it comes with no pull.
            stored = intent.persist and member != sender
            if relay is not None:
                if stored:
                    relay.looks.add(member)
                    self._look(member)
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
                if self.admit(target, item, stored=stored):
                    self._deliver(target, item)

    # ------------------------------------------------------------------ unlimited groups (6.12)

    async def _uc_topic(self, conn: ClientLink, topic_id: int) -> UCTopic | None:
        topic = await self.storage.uc_topic(topic_id)
        if topic is None or conn.app is None or topic.app_id != conn.app.app_id:
            return None
        return topic

    async def _uc_join(self, conn: ClientLink, topic_id: int) -> None:
        # Under the tick's lock: a message that arrived after the JOIN is written after it, so
        # it reaches the new member (as in the order the process received them).
        async with self._write_lock:
            topic = await self._uc_topic(conn, topic_id)
            if topic is None or conn.user is None:
                conn.session.uc_join_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
                return
            await self.storage.uc_join(topic_id, conn.user.uuid)
        conn.session.uc_join_result(topic_id, code=UC_OK, message="success")

    async def _uc_quit(self, conn: ClientLink, topic_id: int) -> None:
        async with self._write_lock:
            topic = await self._uc_topic(conn, topic_id)
            if topic is None or conn.user is None:
                conn.session.uc_quit_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
                return
            await self.storage.uc_quit(topic_id, conn.user.uuid)
        conn.session.uc_quit_result(topic_id, code=UC_OK, message="success")

    def _on_uc_message(self, conn: ClientLink, event: UCMessageReceived) -> None:
        user, app = conn.user, conn.app
        if user is None or app is None:
            return
        if len(event.payload) > self.config.max_uc_payload:
            log.info("%s: UC message of %d bytes refused (too large)", conn, len(event.payload))
            return
        error = self._field_error(event.message_id, event.biz_type)
        if error:
            log.info("%s: UC message refused (%s)", conn, error)
            return
        intent = UCWrite(
            app_id=app.app_id,
            sender_uuid=user.uuid,
            topic_id=event.topic_id,
            ts=self.config.now_ms(),
        )
        self._ops.append((conn, event, intent))
        self._schedule()

    def _routed_uc(
        self,
        conn: ClientLink | None,
        event: UCMessageReceived,
        intent: UCWrite,
        out: UCWritten,
        relay: _Relay | None,
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
        queues = self._uc_deliveries
        for member in out.members:
            for target in self.sessions_of(member):
                if target is not conn:
                    queues.setdefault((target, event.topic_id), []).append(item)
                    self._touched.add(target)
        if relay is not None and out.members:
            signal = Signal(
                kind=SignalKind.FANOUT,
                topic_id=event.topic_id,
                exclude=(conn.peer.uuid, conn.resource),
                body=encode_uc(item),
            )
            relay.bodies.append((signal, out.members))

    async def dismiss_uc_topic(self, topic_id: int) -> None:
        """Dismiss an unlimited group and push DISMISS to its online members (6.12)."""
        members = await self.storage.delete_uc_topic(topic_id)
        for member in members:
            for target in self.sessions_of(member):
                if target.can_send:
                    self._guarded(target, target.session.uc_dismiss, topic_id)
                    self.touch(target)
        if members and not self._single_node():
            relay = _Relay()
            signal = Signal(kind=SignalKind.FANOUT, topic_id=topic_id, body=DISMISS)
            relay.bodies.append((signal, members))
            await self._relay(relay)
        await self.flush()

    # ------------------------------------------------------------------ keepalive

    async def _prune_sent(self) -> None:
        try:
            cutoff = self.config.now_ms() - int(self.config.dedup_retention * 1000)
            pruned = await self.storage.prune_dedup(cutoff)
        except Exception as exc:
            log.error("pruning the sender dedup record failed (%s: %s)", type(exc).__name__, exc)
            return
        if pruned:
            log.info(
                "forgot %d sender dedup records older than %g s",
                pruned,
                self.config.dedup_retention,
            )

    async def _sweep_forever(self) -> None:
        config = self.config
        idle, login = config.idle_timeout, config.login_timeout
        period = max(0.05, min(idle / 4, config.send_timeout / 2, login / 2, 30.0))
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            if now >= next_prune:
                next_prune = now + _PRUNE_PERIOD
                await self._prune_sent()
            if self._cursor_writes:
                self._schedule()  # writes the cursors that sequence acks advanced meanwhile
            for conn in list(self.connections):
                try:
                    conn.check_writer(now)
                    if now - conn.last_seen > idle:
                        log.info("%s: idle for %.0f s; closing", conn, now - conn.last_seen)
                        conn.close(1000, "idle timeout")
                    elif conn.user is None and now - conn.opened_at > login:
                        # Connected but never bound: a stuck or hostile client holding a slot
                        # of max_pending_connections.
                        log.info("%s: no BIND within %.0f s; closing", conn, login)
                        conn.close(1008, "login timeout")
                    else:
                        conn.expire(now)
                except Exception:
                    log.exception("%s: keepalive check failed; closing", conn)
                    conn.close(1011, "internal error")


def _peer_of(intent: P2PWrite | P2TWrite) -> Peer:
    sender = intent.sender
    return Peer(
        app_id=intent.app.app_id,
        app_account=sender.account,
        uuid=sender.uuid,
        resource=intent.from_resource,
    )
