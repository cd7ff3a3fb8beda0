"""Stored messages read for one connection: BIND's backlog, PULL answers, LOOKs, sequence acks.

Each bound connection has a :class:`~mimc_rx.server.hub.feed.Feed` (the rules: what was sent
there, what waits). This module does the I/O around it:

* Reads are awaited in a task per request, chained per connection (:meth:`Backlog.in_order`),
  so each connection's order holds: BIND, PULL, the backlog after a dropped range, UC
  JOIN/QUIT. A read that fails closes its connection with one logged line; the client comes
  back and is served from its cursor.
* A pull answer (:meth:`Backlog.catch_up`) starts above ``sent_through`` and holds at most
  ``pull_limit`` messages; one that fills it is followed by a new pull notification (6.10), so
  auto-pull goes on until the backlog is drained. It also takes the live stored messages held
  back while a read was in flight, and those committed by another process (a LOOK).
* A SEQUENCE_ACK becomes a :class:`~mimc_rx.server.storage.interface.CursorWrite` clamped by
  the feed; it waits for the next tick that writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from mimc_rx.protocol.events import Delivery
from mimc_rx.protocol.server import delivery_of
from mimc_rx.server.config import ServerConfig
from mimc_rx.server.hub.feed import Feed
from mimc_rx.server.hub.outbox import Outbox
from mimc_rx.server.hub.registry import ClientLink, Registry
from mimc_rx.server.storage import StoredMessage
from mimc_rx.server.storage.interface import CursorWrite, Storage

__all__ = ["Backlog", "delivery_from_store"]

log = logging.getLogger(__name__)


def delivery_from_store(message: StoredMessage) -> Delivery:
    """The COMPOUND entry of a stored message, in its recipient's sequence space."""
    return delivery_of(
        message.as_sent(), sequence=message.seq, timestamp=message.ts, to_uuid=message.to_uuid
    )


class Backlog:
    """The feeds of the bound connections and the storage reads that serve them.

    Attributes:
        feeds: the feed of each bound connection.
        cursor_writes: the clamped SEQUENCE_ACKs waiting for the next tick that writes.
        loop: the hub's loop once started (tasks are created on it).
    """

    def __init__(
        self, storage: Storage, config: ServerConfig, registry: Registry, outbox: Outbox
    ) -> None:
        self.storage = storage
        self.config = config
        self.registry = registry
        self.outbox = outbox
        self.feeds: dict[ClientLink, Feed] = {}
        self.cursor_writes: list[CursorWrite] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._serial: dict[ClientLink, asyncio.Task[None]] = {}

    def tasks(self) -> list[asyncio.Task[None]]:
        """The reads in flight (the last of each connection's chain)."""
        return list(self._serial.values())

    # ------------------------------------------------------------------ per-connection reads

    def in_order(self, conn: ClientLink, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` after the connection's previous read (BIND, PULL, backlog, UC join)."""
        previous = self._serial.get(conn)
        loop = self.loop or asyncio.get_running_loop()
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
        self.outbox.touch(conn)

    # ------------------------------------------------------------------ feeds

    def open(self, conn: ClientLink, cursor: int) -> Feed:
        """A connection is bound with ``cursor``: its feed, pending until the backlog is read."""
        feed = self.feeds[conn] = Feed(sent_through=cursor, pending=True)
        return feed

    def forget(self, conn: ClientLink) -> None:
        """``conn`` went away: reads still in flight for it find no feed and stop."""
        self.feeds.pop(conn, None)

    def admit(self, conn: ClientLink, item: Delivery, *, stored: bool) -> bool:
        """Whether a live message may be pushed to ``conn`` now (:meth:`Feed.admit`)."""
        feed = self.feeds.get(conn)
        if feed is None:
            return False
        return feed.admit(item.sequence, stored=stored)

    def pull(self, conn: ClientLink) -> None:
        """A PULL (docs/protocol.md 6.11): ordinary COMPOUND lists of what is pending here."""
        feed = self.feeds.get(conn)
        if conn.user is not None and feed is not None:
            self.in_order(conn, self.catch_up(conn, feed))

    def look(self, uuid: int) -> None:
        """Stored messages wait for ``uuid``: its connections read them from storage."""
        for conn in list(self.registry.sessions_of(uuid)):
            feed = self.feeds.get(conn)
            if feed is not None and feed.look():
                self.in_order(conn, self.catch_up(conn, feed))

    def sequence_acked(self, conn: ClientLink, sequence: int) -> None:
        """A SEQUENCE_ACK (6.9): "delivered up to here", but never past what was sent here."""
        feed = self.feeds.get(conn)
        user = conn.user
        if user is None or feed is None:
            return
        cursor, dropped = feed.ack(sequence)
        self.cursor_writes.append(
            CursorWrite(uuid=user.uuid, resource=conn.resource, sequence=cursor)
        )
        if dropped:
            # 6.10: the ack of a notified maxSequence drops the range (the SDK's answer to a
            # pull notification); what was stored behind it comes next.
            if not feed.notified:
                self.in_order(conn, self.send_backlog(conn, feed))
            self.outbox.touch(conn)
        # Otherwise no tick of its own: the cursor is written with the next tick that writes
        # (a message) or the sweep's. A crash loses at most those cursors, and their messages
        # are delivered again, which clients drop by sequence (6.9, 6.15). At a low rate this
        # saves a commit and a loop pass per delivered frame.

    # ------------------------------------------------------------------ reads

    async def catch_up(self, conn: ClientLink, feed: Feed) -> None:
        """Push the stored messages above ``feed.sent_through``, oldest first: a PULL's answer.

        Also for live stored messages held back (``feed.pending``) while the storage was read,
        or committed by another process. Up to ``pull_limit`` at once; when that fills, a new
        pull notification says more is waiting (6.10).
        """
        assert conn.user is not None
        uuid, limit = conn.user.uuid, self.config.pull_limit
        while True:
            feed.begin_read()
            messages = await self.storage.backlog(uuid, feed.sent_through, limit)
            if self.feeds.get(conn) is not feed:
                return
            self.push_stored(conn, feed, messages)
            if len(messages) >= limit:
                count, low, high = await self.storage.backlog_summary(uuid, feed.sent_through)
                if self.feeds.get(conn) is not feed:
                    return
                if count:
                    self.notify(conn, feed, low, high)
                    return
            if feed.end_read():
                return

    async def send_backlog(self, conn: ClientLink, feed: Feed) -> None:
        """Push what is stored above ``feed.sent_through``, or announce it when it is too much.

        ``feed.pending`` holds live stored messages back while the storage is read; one that
        was held back meanwhile (``feed.missed``) makes the read start again.
        """
        assert conn.user is not None
        uuid = conn.user.uuid
        while True:
            feed.begin_read()
            count, low, high = await self.storage.backlog_summary(uuid, feed.sent_through)
            if self.feeds.get(conn) is not feed:
                return
            if count == 0:
                if feed.end_read():
                    return
                continue
            if count > self.config.backlog_limit:
                # docs/protocol.md 6.10: too many to push; the client pulls or uses history.
                self.notify(conn, feed, low, high)
                return
            messages = await self.storage.backlog(uuid, feed.sent_through, count)
            if self.feeds.get(conn) is not feed:
                return
            self.push_stored(conn, feed, messages)
            if feed.end_read():
                return

    def push_stored(self, conn: ClientLink, feed: Feed, messages: Sequence[StoredMessage]) -> None:
        """Queue a read's messages not yet sent on ``conn``."""
        for message in feed.take(messages):
            self.outbox.deliver(conn, delivery_from_store(message))
        if messages:
            self.outbox.touch(conn)

    def notify(self, conn: ClientLink, feed: Feed, low: int, high: int) -> None:
        """Send a pull notification (6.10); live stored messages wait behind the range."""
        feed.notify(high)
        self.outbox.notice(conn, low, high)
