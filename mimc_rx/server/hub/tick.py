"""The commit-before-ack pipeline: a tick's intents, one ``write_tick``, then acks and deliveries.

Theory of operation
-------------------
Work is grouped by event-loop tick. Handlers validate what needs no storage and *queue* ops
in arrival order: intents (``P2PWrite``, ``P2TWrite``, ``UCWrite``) with their event, and the
acks that need no write; the first of a tick starts one task. The task, under a lock (one
writer per process, ticks in order), awaits ``Storage.write_tick`` with the tick's intents and
the cursors that sequence acks moved, which commits before it returns; then the router builds
the acks (a duplicate gets its original ack) and the deliveries from the outcomes, and the
outbox issues the acks, one COMPOUND per receiving session with everything that arrived for it,
and lets each touched connection write its frames. So an ack is never sent for an uncommitted
message, and a burst of messages costs one transaction and few frames (docs/protocol.md
6.6-6.9). If the write fails, one line is logged and nothing of it is acked: the senders send
again. The SQLite ``write_tick`` never suspends, so the default pays one task per tick and
nothing per message.

A tick takes at most ``ServerConfig.max_tick_items`` ops; what is left (one socket read of a
flooding client can hold thousands of messages) goes to the next tick, a task of its own, so a
burst is written and acked in several bounded transactions and other work runs in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from mimc_rx.protocol.events import P2PReceived, P2TReceived, PacketId
from mimc_rx.server.config import ServerConfig
from mimc_rx.server.hub.backlog import Backlog
from mimc_rx.server.hub.outbox import Outbox
from mimc_rx.server.hub.registry import ClientLink
from mimc_rx.server.hub.routing import Op, Router
from mimc_rx.server.hub.signals import Signals
from mimc_rx.server.storage.interface import Intent, Outcome, Storage

__all__ = ["TickPipeline"]

log = logging.getLogger(__name__)


class TickPipeline:
    """The queue of one tick's ops and the task that writes, acks and delivers them.

    Attributes:
        write_lock: held while a tick writes and sends; UC JOIN/QUIT take it too, so a message
            written after a JOIN is taken up is written after the membership (the JOIN_RESP
            follows its commit).
        loop: the hub's loop once started (tasks are created on it).
    """

    def __init__(
        self,
        storage: Storage,
        config: ServerConfig,
        outbox: Outbox,
        backlog: Backlog,
        router: Router,
        signals: Signals,
    ) -> None:
        self.storage = storage
        self.config = config
        self.outbox = outbox
        self.backlog = backlog
        self.router = router
        self.signals = signals
        self.write_lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ops: list[Op] = []
        self._scheduled = False
        self._now_ms: int | None = None  # this tick's clock, once read (now_ms)
        self._tasks: set[asyncio.Task[Any]] = set()

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The ticks and other tasks in flight."""
        return list(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the hub cancels when it closes."""
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ queueing

    def write(self, conn: ClientLink, event: Any, intent: Intent) -> None:
        """Queue a message to write; its ack and deliveries follow the commit."""
        self._ops.append((conn, event, intent))
        self.outbox.touched.add(conn)
        self.schedule()

    def write_unacked(self, conn: ClientLink, event: Any, intent: Intent) -> None:
        """Queue a write whose sender gets no answer (an unlimited-group message, 6.12)."""
        self._ops.append((conn, event, intent))
        self.schedule()

    def ack(
        self, conn: ClientLink, packet_id: PacketId, sequence: int, ts: int, error: str = ""
    ) -> None:
        """Queue an ack that needs no write (a refusal), in order with the tick's writes, so
        a connection's acks keep its order."""
        self._ops.append((conn, (packet_id, sequence, ts, error), None))
        self.outbox.touched.add(conn)
        self.schedule()

    def now_ms(self) -> int:
        """The time of the messages queued for this tick, in milliseconds: the clock is read
        once per tick (by its first message), not once per message."""
        now = self._now_ms
        if now is None or not self._scheduled:
            now = self._now_ms = self.config.now_ms()
        return now

    def schedule(self) -> None:
        """Start this tick's task unless it is started."""
        if not self._scheduled:
            self._scheduled = True
            self.spawn(self._tick())

    # ------------------------------------------------------------------ ticks

    async def flush(self) -> None:
        """Write everything queued and send the acks and deliveries now."""
        await self._tick()
        while self._ops:
            await self._tick()

    async def _tick(self) -> None:
        """One tick: write the intents, then ack and deliver (module docstring)."""
        async with self.write_lock:
            self._scheduled = False
            self._now_ms = None
            limit = max(1, self.config.max_tick_items)
            if len(self._ops) <= limit:
                ops, self._ops = self._ops, []
            else:
                ops, self._ops = self._ops[:limit], self._ops[limit:]
            backlog = self.backlog
            cursors, backlog.cursor_writes = backlog.cursor_writes, []
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
            relay = self.signals.new_relay()
            self.router.route(ops, outcomes, relay)
            self.outbox.send()
            if self._ops:
                self.schedule()  # the rest of a burst: the next tick
            if relay:
                await self.signals.send(relay)

    async def write_now(
        self, entries: Sequence[tuple[P2PReceived | P2TReceived, Intent]]
    ) -> list[Outcome]:
        """Write messages that no connection sent (the push API), then deliver them.

        What is queued goes first (lower sequences). Raises what the storage raised, with
        nothing of ``entries`` stored or delivered.
        """
        await self.flush()
        async with self.write_lock:
            outcomes = await self.storage.write_tick([intent for _, intent in entries])
            relay = self.signals.new_relay()
            self.router.route([(None, event, intent) for event, intent in entries], outcomes, relay)
            self.outbox.send()
        if relay:
            await self.signals.send(relay)
        return outcomes
