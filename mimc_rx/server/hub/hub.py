"""The :class:`Hub`: what the gateway and the HTTP APIs talk to; it wires the hub's parts.

Every websocket connection drives one ``ServerSession`` (the sans-I/O core). The session turns
bytes into events; the gateway hands each event to :meth:`Hub.handle`, which passes it to the
part that decides (who is this token, who receives this message, what is stored) and answers
with session commands. The hub never touches bytes. Besides dispatching, the hub owns the
lifecycle (start, close), the connections' arrival and departure, and the sweep that closes
idle, never-bound and stalled connections and prunes the sender dedup record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from mimc_rx.protocol.events import (
    BadPacket,
    BindRequested,
    P2PReceived,
    P2TReceived,
    Pinged,
    ProtocolFailure,
    PullRequested,
    SequenceAcked,
    ServerEvent,
    UCJoinRequested,
    UCMessageReceived,
    UCPinged,
    UCQuitRequested,
    UCSequenceAcked,
    UnbindRequested,
)
from mimc_rx.protocol.server import GroupBodies
from mimc_rx.server.auth import TokenService
from mimc_rx.server.broker import Broker, LocalBroker
from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.hub.backlog import Backlog
from mimc_rx.server.hub.login import Login
from mimc_rx.server.hub.messages import ERR_MALFORMED, Messages
from mimc_rx.server.hub.outbox import Outbox
from mimc_rx.server.hub.registry import ClientLink, Registry
from mimc_rx.server.hub.routing import Router
from mimc_rx.server.hub.signals import Signals
from mimc_rx.server.hub.tick import TickPipeline
from mimc_rx.server.storage import Store
from mimc_rx.server.storage.interface import Intent, Outcome, Storage

__all__ = ["Hub"]

log = logging.getLogger(__name__)

# How often the sweep forgets sender-dedup rows older than ServerConfig.dedup_retention.
_PRUNE_PERIOD = 600.0


class Hub:
    """Routing and storage logic shared by every connection and the HTTP APIs.

    Args:
        storage: the durable state (:class:`~mimc_rx.server.storage.interface.Storage`).
        apps: the configured apps, by id.
        config: limits and clock.
        tokens: the token service (also used by the HTTP APIs).
        broker: presence and signals between server processes; a private
            :class:`~mimc_rx.server.broker.LocalBroker` (one process) by default.

    Attributes:
        connections: every accepted websocket not yet gone.
        unbound: connections not (yet) bound to a user: counted against
            ``ServerConfig.max_pending_connections``.
        group_bodies: shared by every connection's session: the fan-out of a group message
            encodes its body once (the hub itself never looks at bytes).
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
        self.registry = Registry()
        self.connections = self.registry.connections
        self.unbound = self.registry.unbound
        self.group_bodies = GroupBodies()
        self.outbox = Outbox(config, self.group_bodies, wake=self._wake)
        self.backlog = Backlog(storage, config, self.registry, self.outbox)
        self.signals = Signals(self.broker, self.registry, self.backlog, self.outbox)
        router = Router(self.registry, self.backlog, self.outbox)
        self.pipeline = TickPipeline(
            storage, config, self.outbox, self.backlog, router, self.signals
        )
        self.messages = Messages(
            storage, config, self.registry, self.outbox, self.pipeline, self.signals
        )
        self.login = Login(
            storage=storage,
            apps=apps,
            config=config,
            tokens=tokens,
            broker=self.broker,
            registry=self.registry,
            backlog=self.backlog,
            outbox=self.outbox,
        )
        self._sweeper: asyncio.Task[None] | None = None

    def _wake(self) -> None:
        self.pipeline.schedule()

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
        loop = asyncio.get_running_loop()
        self.pipeline.loop = self.backlog.loop = loop
        await self.broker.start(self.signals.on_signal, self.signals.on_resync)
        self._sweeper = loop.create_task(self._sweep_forever(), name="mimc-rx idle sweeper")

    async def close(self) -> None:
        """Stop the sweeper, close every connection, write what is queued, close the engines."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for conn in list(self.connections):
            conn.close(1001, "server shutting down")
        await self.flush()
        pending = [*self.pipeline.tasks(), *self.backlog.tasks()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.broker.close()
        await self.storage.close()

    # ------------------------------------------------------------------ connections

    def attach(self, conn: ClientLink) -> None:
        """A websocket was accepted."""
        self.registry.attach(conn)

    def detach(self, conn: ClientLink) -> None:
        """A websocket went away: forget it (its undelivered messages stay in the inbox)."""
        self.outbox.forget(conn)
        self.backlog.forget(conn)
        if self.registry.detach(conn):
            assert conn.user is not None
            self.pipeline.spawn(self._release(conn.user.uuid, conn.resource))

    async def _release(self, uuid: int, resource: str) -> None:
        if resource not in self.registry.bound.get(uuid, {}):  # not logged in again meanwhile
            await self.broker.release(uuid, resource)

    def sessions_of(self, uuid: int) -> Iterable[ClientLink]:
        """The bound connections of a user."""
        return self.registry.sessions_of(uuid)

    def online_resources(self, uuid: int) -> list[str]:
        """The resources a user is bound with right now (in this process)."""
        return self.registry.online_resources(uuid)

    # ------------------------------------------------------------------ the tick

    def touch(self, conn: ClientLink) -> None:
        """Ask for ``conn``'s frames to be written at the end of this tick."""
        self.outbox.touch(conn)

    async def flush(self) -> None:
        """Write what is queued and send its acks and deliveries now."""
        await self.pipeline.flush()

    async def write_now(
        self, entries: Sequence[tuple[P2PReceived | P2TReceived, Intent]]
    ) -> list[Outcome]:
        """Write messages that no connection sent (the push API), then deliver them.

        What is queued goes first (lower sequences). Raises what the storage raised, with
        nothing of ``entries`` stored or delivered.
        """
        return await self.pipeline.write_now(entries)

    async def dismiss_uc_topic(self, topic_id: int) -> None:
        """Dismiss an unlimited group and push DISMISS to its online members (6.12)."""
        await self.messages.dismiss_uc_topic(topic_id)

    # ------------------------------------------------------------------ events

    def handle(self, conn: ClientLink, event: ServerEvent) -> None:
        """Answer one event of ``conn``'s session."""
        match event:
            case P2PReceived():
                self.messages.on_p2p(conn, event)
            case SequenceAcked(sequence=sequence):
                self.backlog.sequence_acked(conn, sequence)
            case P2TReceived():
                self.messages.on_p2t(conn, event)
            case BindRequested():
                self.login.on_bind(conn, event)
            case PullRequested():
                self.backlog.pull(conn)
            case Pinged():
                pass
            case UCMessageReceived():
                self.messages.on_uc_message(conn, event)
            case UCJoinRequested(topic_id=topic_id):
                self.backlog.in_order(conn, self.messages.uc_join(conn, topic_id))
            case UCQuitRequested(topic_id=topic_id):
                self.backlog.in_order(conn, self.messages.uc_quit(conn, topic_id))
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
                    self.pipeline.ack(conn, packet_id, 0, self.config.now_ms(), ERR_MALFORMED)

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
            if self.backlog.cursor_writes:
                self.pipeline.schedule()  # writes the cursors that sequence acks advanced
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
