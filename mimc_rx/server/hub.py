"""The hub: bound sessions, routing, and the commit-before-ack pipeline.

Theory of operation
-------------------
Every websocket connection drives one ``ServerSession`` (the sans-I/O core). The session turns
bytes into events; the gateway hands each event to :meth:`Hub.handle`, which makes the business
decisions (who is this token, who receives this message, what is stored) and answers with
session commands. The hub never touches bytes.

Work is grouped by event-loop tick. Handlers write to the store and *queue* their answers
(PACKET_ACKs, deliveries); the first handler of a tick schedules :meth:`Hub.flush` with
``call_soon``. ``flush`` commits once, then issues the queued acks, then one COMPOUND per
receiving session carrying everything that arrived for it in that tick, then lets each touched
connection write its frames. So an ack is never sent for an uncommitted message, and a burst of
messages costs one commit and few frames (docs/protocol.md 6.6-6.9).

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
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.storage import Store, StoredMessage, UCTopic, User
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

# A tick that accumulates this many queued answers is flushed at once, so a flooding client
# cannot make the others wait for its whole burst.
_FLUSH_EARLY = 1024


# How often the sweep forgets sender-dedup rows older than ServerConfig.dedup_retention.
_PRUNE_PERIOD = 600.0


@dataclass(slots=True)
class _Feed:
    """What one bound connection was sent of its user's stored messages (module docstring)."""

    sent_through: int
    pending: bool = False
    notified: set[int] = field(default_factory=set)
    """The maxSequence of each pull notification sent here and not yet passed."""


class Hub:
    """Routing and storage logic shared by every connection and the HTTP APIs.

    Args:
        store: the durable state.
        apps: the configured apps, by id.
        config: limits and clock.
        tokens: the token service (also used by the HTTP APIs).
    """

    def __init__(
        self,
        store: Store,
        apps: dict[int, AppConfig],
        config: ServerConfig,
        tokens: TokenService,
    ) -> None:
        self.store = store
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
        self._acks: list[tuple[ClientLink, PacketId, int, int, str]] = []
        self._deliveries: dict[ClientLink, list[Delivery]] = {}
        self._notices: dict[ClientLink, tuple[int, int]] = {}
        self._feeds: dict[ClientLink, _Feed] = {}
        self._uc_deliveries: dict[tuple[ClientLink, int], list[UCDelivery]] = {}
        self._touched: set[ClientLink] = set()
        self._queued = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind to the running loop and start the idle sweeper."""
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep_forever(), name="mimc-rx idle sweeper")

    async def close(self) -> None:
        """Stop the sweeper, close every connection, flush and close the store."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for conn in list(self.connections):
            conn.close(1001, "server shutting down")
        self.flush()
        self.store.close()

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

    def sessions_of(self, uuid: int) -> Iterable[ClientLink]:
        """The bound connections of a user."""
        return self._bound.get(uuid, {}).values()

    def online_resources(self, uuid: int) -> list[str]:
        """The resources a user is bound with right now."""
        return list(self._bound.get(uuid, {}))

    # ------------------------------------------------------------------ the tick pipeline

    def touch(self, conn: ClientLink) -> None:
        """Ask for ``conn``'s frames to be written at the end of this tick."""
        self._touched.add(conn)
        self._schedule()

    def _schedule(self) -> None:
        self._queued += 1
        if self._queued >= _FLUSH_EARLY:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit, then send this tick's acks and deliveries (see the module docstring)."""
        self._scheduled = False
        self._queued = 0
        acks, self._acks = self._acks, []
        deliveries, self._deliveries = self._deliveries, {}
        notices, self._notices = self._notices, {}
        uc, self._uc_deliveries = self._uc_deliveries, {}
        try:
            self.store.commit()
        except Exception:
            # Nothing of this tick is acked: senders time out and send again (at-least-once).
            log.exception("commit failed; dropping this tick's acks and deliveries")
            self.store.rollback()
            for conn in {*deliveries, *notices}:
                # Their feeds counted these deliveries as sent: start again from the cursor.
                conn.close(1011, "internal error")
            acks, deliveries, notices, uc = [], {}, {}, {}
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
        self._acks.append((conn, packet_id, sequence, ts, error))
        self._touched.add(conn)
        self._schedule()

    def _deliver(self, conn: ClientLink, item: Delivery) -> None:
        queue = self._deliveries.get(conn)
        if queue is None:
            self._deliveries[conn] = [item]
        else:
            queue.append(item)

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
                self._on_pull(conn)
            case Pinged():
                pass
            case UCMessageReceived():
                self._on_uc_message(conn, event)
            case UCJoinRequested(topic_id=topic_id):
                self._on_uc_join(conn, topic_id)
            case UCQuitRequested(topic_id=topic_id):
                self._on_uc_quit(conn, topic_id)
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
        session = conn.session
        if utf8_longer_than(event.resource, self.config.max_field_bytes):
            # The resource names a cursor row; the SDKs use a few dozen bytes.
            session.reject_bind("auto", "invalid-resource", "the resource is too long")
            log.info("%s: BIND refused, resource of %d characters", conn, len(event.resource))
            return
        status, user = self.tokens.resolve(event.token)
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
        if not session.accept_bind(
            user.security_key, app_id=app.app_id, package=app.package, app_account=user.account
        ):
            log.info("%s: BIND refused, signature mismatch", conn)
            return
        conn.bound(user, app, event.resource)
        self.unbound.discard(conn)
        sessions = self._bound.setdefault(user.uuid, {})
        older = sessions.get(event.resource)
        sessions[event.resource] = conn
        if older is not None and older is not conn:
            # Same (uuid, resource) logged in again: the newer connection wins (issue 3).
            log.info("%s: kicked by a newer login of the same resource", older)
            older.kick("kick", "same-resource-login", "the same resource logged in elsewhere")
        cursor = self.store.open_cursor(user.uuid, event.resource)
        log.info("%s: bound as %s/%s", conn, user.account, event.resource)
        feed = self._feeds[conn] = _Feed(sent_through=cursor)
        self._send_backlog(conn, feed)

    def _send_backlog(self, conn: ClientLink, feed: _Feed) -> None:
        """Push what is stored above ``feed.sent_through``, or announce it when it is too much."""
        assert conn.user is not None
        count, low, high = self.store.backlog_summary(conn.user.uuid, feed.sent_through)
        if count == 0:
            feed.pending = False
            return
        if count > self.config.backlog_limit:
            # docs/protocol.md 6.10: too many to push; the client pulls or uses the history API.
            self._notify(conn, feed, low, high)
            return
        for message in self.store.backlog(conn.user.uuid, feed.sent_through, count):
            self._deliver(conn, self._delivery_from_store(message))
            feed.sent_through = message.seq
        feed.pending = False

    def _notify(self, conn: ClientLink, feed: _Feed, low: int, high: int) -> None:
        # 6.10: a pull notification; live stored messages wait behind the range until pulled.
        feed.pending = True
        feed.notified.add(high)
        self._notices[conn] = (low, high)
        self._touched.add(conn)
        self._schedule()

    def _on_pull(self, conn: ClientLink) -> None:
        # docs/protocol.md 6.11: answer with ordinary COMPOUND lists of what is pending: the
        # stored messages not sent on this connection yet, oldest first.
        feed = self._feeds.get(conn)
        if conn.user is None or feed is None:
            return
        limit = self.config.pull_limit
        messages = self.store.backlog(conn.user.uuid, feed.sent_through, limit)
        for message in messages:
            self._deliver(conn, self._delivery_from_store(message))
        if messages:
            feed.sent_through = messages[-1].seq
            self._touched.add(conn)
            self._schedule()
        if len(messages) < limit:
            feed.pending = False
            return
        count, low, high = self.store.backlog_summary(conn.user.uuid, feed.sent_through)
        if count:
            self._notify(conn, feed, low, high)  # 6.10: more is waiting; pull again
        else:
            feed.pending = False

    def _on_sequence_ack(self, conn: ClientLink, sequence: int) -> None:
        # 6.9: "delivered up to here", but never past what this connection was sent.
        feed = self._feeds.get(conn)
        if conn.user is None or feed is None:
            return
        if sequence > feed.sent_through and sequence in feed.notified:
            # 6.10: the ack of a notified maxSequence drops the range (the SDK's answer to a
            # pull notification); what was stored behind it comes next.
            feed.sent_through = sequence
            feed.notified = {high for high in feed.notified if high > sequence}
            self.store.advance_cursor(conn.user.uuid, conn.resource, sequence)
            if not feed.notified:
                self._send_backlog(conn, feed)
            self._touched.add(conn)
            self._schedule()
        else:
            # No commit of its own: the cursor is written with the next tick that commits (a
            # message, a BIND) or the sweep's flush. A crash loses at most those cursors, and
            # their messages are delivered again, which clients drop by sequence (6.9, 6.15).
            # At a low rate this saves a commit and a loop pass per delivered frame.
            acked = min(sequence, feed.sent_through)
            self.store.advance_cursor(conn.user.uuid, conn.resource, acked)

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
            return not stored
        if item.sequence > feed.sent_through:
            feed.sent_through = item.sequence
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
        if event.is_store and self._ack_duplicate(conn, event.packet_id):
            return
        recipient = self.store.ensure_user(app.app_id, event.to_account)
        sender_seq, seq = self.store.record_p2p(
            app=app,
            packet_id=event.packet_id,
            sender=user,
            from_resource=conn.resource,
            recipient=recipient,
            payload=event.payload,
            biz_type=event.biz_type,
            ts=now_ms,
            persist=event.is_store,
            to_resource=event.to_resource,
        )
        sessions = self._bound.get(recipient.uuid)
        if sessions:
            item = delivery_of(
                event,
                sequence=seq,
                timestamp=now_ms,
                sender=conn.peer,
                package=app.package,
                to_uuid=recipient.uuid,
            )
            for resource, target in sessions.items():
                wanted = not event.to_resource or resource == event.to_resource
                if wanted and self.admit(target, item, stored=event.is_store):
                    self._deliver(target, item)
        self._ack(conn, event.packet_id, sender_seq, now_ms)

    def _ack_duplicate(self, conn: ClientLink, packet_id: PacketId) -> bool:
        """Ack a stored packet sent again under its packet id with its first ack; True if so.

        The client's outbox resends what was not acked when a connection ended, with the same
        packet id (docs/server.md, delivery guarantees): the first copy is stored and delivered
        already, so only the ack is repeated, with the original sequence and timestamp.
        """
        assert conn.user is not None
        original = self.store.find_sent(conn.user.uuid, packet_id, conn.resource)
        if original is None:
            return False
        sequence, timestamp = original
        log.debug("%s: packet %s sent again; acked as before", conn, packet_id)
        self._ack(conn, packet_id, sequence, timestamp)
        return True

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
        topic = self.store.topics.get(event.topic_id)
        error = ""
        if len(event.payload) > self.config.max_payload:
            error = ERR_TOO_LARGE
        elif topic is None or topic.app_id != app.app_id:
            error = ERR_NO_TOPIC
        elif user.uuid not in topic.members:
            error = ERR_NOT_MEMBER
        error = error or self._field_error(event.packet_id, event.biz_type)
        if error or topic is None:
            self._ack(conn, event.packet_id, 0, now_ms, error)
            return
        if event.is_store and self._ack_duplicate(conn, event.packet_id):
            return
        sender_seq, sequences = self.store.record_p2t(
            app=app,
            packet_id=event.packet_id,
            sender=user,
            from_resource=conn.resource,
            topic=topic,
            payload=event.payload,
            biz_type=event.biz_type,
            ts=now_ms,
            persist=event.is_store,
        )
        bound = self._bound
        for member, seq in sequences:
            sessions = bound.get(member)
            if not sessions:
                continue
            item = delivery_of(
                event, sequence=seq, timestamp=now_ms, sender=conn.peer, package=app.package
            )
            # The sender's own copy has no inbox row: it comes with no pull.
            stored = event.is_store and member != user.uuid
            for target in sessions.values():
                if target is not conn and self.admit(target, item, stored=stored):
                    self._deliver(target, item)
        self._ack(conn, event.packet_id, sender_seq, now_ms)

    # ------------------------------------------------------------------ unlimited groups (6.12)

    def _uc_topic(self, conn: ClientLink, topic_id: int) -> UCTopic | None:
        topic = self.store.uc_topics.get(topic_id)
        if topic is None or conn.app is None or topic.app_id != conn.app.app_id:
            return None
        return topic

    def _on_uc_join(self, conn: ClientLink, topic_id: int) -> None:
        topic = self._uc_topic(conn, topic_id)
        if topic is None or conn.user is None:
            conn.session.uc_join_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
            return
        self.store.uc_join(topic, conn.user.uuid)
        conn.session.uc_join_result(topic_id, code=UC_OK, message="success")

    def _on_uc_quit(self, conn: ClientLink, topic_id: int) -> None:
        topic = self._uc_topic(conn, topic_id)
        if topic is None or conn.user is None:
            conn.session.uc_quit_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
            return
        self.store.uc_quit(topic, conn.user.uuid)
        conn.session.uc_quit_result(topic_id, code=UC_OK, message="success")

    def _on_uc_message(self, conn: ClientLink, event: UCMessageReceived) -> None:
        topic = self._uc_topic(conn, event.topic_id)
        user = conn.user
        if topic is None or user is None or user.uuid not in topic.members:
            # No reply is defined for a refused UC message (docs/protocol.md 6.12, 10.19).
            log.info("%s: UC message to topic %s refused (not a member)", conn, event.topic_id)
            return
        if len(event.payload) > self.config.max_uc_payload:
            log.info("%s: UC message of %d bytes refused (too large)", conn, len(event.payload))
            return
        error = self._field_error(event.message_id, event.biz_type)
        if error:
            log.info("%s: UC message refused (%s)", conn, error)
            return
        now_ms = self.config.now_ms()
        item = UCDelivery(
            packet_id=event.message_id,
            sequence=self.store.next_uc_sequence(topic, now_ms),
            timestamp=now_ms,
            sender=conn.peer,
            payload=event.payload,
            is_store=event.is_store,
            biz_type=event.biz_type,
        )
        queues = self._uc_deliveries
        for member in topic.members:
            for target in self.sessions_of(member):
                if target is not conn:
                    queues.setdefault((target, topic.topic_id), []).append(item)
        self._schedule()

    def dismiss_uc_topic(self, topic: UCTopic) -> None:
        """Dismiss an unlimited group and push DISMISS to its online members (6.12)."""
        for member in list(topic.members):
            for target in self.sessions_of(member):
                if target.can_send:
                    self._guarded(target, target.session.uc_dismiss, topic.topic_id)
                    self._touched.add(target)
        self.store.delete_uc_topic(topic)
        self.flush()

    # ------------------------------------------------------------------ keepalive

    def _prune_sent(self) -> None:
        try:
            cutoff = self.config.now_ms() - int(self.config.dedup_retention * 1000)
            pruned = self.store.prune_sent(cutoff)
        except Exception:
            log.exception("pruning the sender dedup record failed")
            return
        if pruned:
            log.info(
                "forgot %d sender dedup records older than %g s",
                pruned,
                self.config.dedup_retention,
            )
            self._schedule()  # committed with the next tick

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
                self._prune_sent()
            self._schedule()  # commits the cursors that sequence acks advanced meanwhile
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
