"""``SessionMemory``: what a client remembers from one connection to the next.

A ``ClientSession`` lives for one connection; a user lives longer. Some protocol rules need
facts that must survive a reconnect, so they are kept here, in one small object that the
driver creates once per user and hands to every new ``ClientSession`` of that user:

* ``seen``: the sequences already delivered. The server re-delivers what it has not seen
  acked, often on the next connection; a message whose sequence is in the window is acked
  but not emitted again (docs/protocol.md 6.8, 10.6). The web SDK's seen-set grows forever;
  this one is bounded.
* ``uc_topics``: the unlimited groups we are in. A fresh connection is in none, so the
  session joins them again once bound, and lists them in UC PING (6.12).
* ``outbox``: every stored (``isStore``) P2P/P2T send not acked yet, as the bytes that went
  out. A new session sends them again right after BIND, in order and under the same packet id,
  and the server answers a packet id it already stored with its first ack (its sender dedup),
  so a send whose ack was lost with a connection is neither lost nor stored twice. Bounded in
  count (``OutboxFull`` at the send) and age (an entry older than ``max_age`` is dropped with
  a ``SendExpired`` event instead of being sent again). Unstored sends never enter it: they
  keep their at-most-once meaning. The packets name the sender's resource, so one memory
  belongs to one (account, resource), as ``MIMCUser`` uses it.
* ``acked``: the packet ids whose ack was emitted, so a duplicated ack frame (a resend answered
  twice, a network duplicate) reaches the application once.

Only the core reads and writes it; the facade creates it and passes it along. Plain Python,
no I/O (STYLE.md 2).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from mimc_rx.errors import OutboxFull

__all__ = [
    "DEFAULT_DEDUP_WINDOW",
    "DEFAULT_OUTBOX_AGE",
    "DEFAULT_OUTBOX_SIZE",
    "Outbox",
    "OutboxEntry",
    "RecentWindow",
    "SessionMemory",
]

DEFAULT_DEDUP_WINDOW = 65536
"""How many delivered sequences are remembered by default to drop redeliveries."""

DEFAULT_OUTBOX_SIZE = 10_000
"""How many stored sends may wait for their ack by default."""

DEFAULT_OUTBOX_AGE = 3600.0
"""Seconds a stored send is resent for by default: well inside the server's sender dedup
retention (a day on the local server), so a resend is always recognised."""

K = TypeVar("K", bound=Hashable)


class RecentWindow(Generic[K]):
    """A bounded set of recently seen keys (sequences, packet ids): dedup with fixed memory.

    It remembers the last ``size`` keys in arrival order; older ones are forgotten, so a
    repeat older than the window would pass again (the price of a bound).
    """

    __slots__ = ("_order", "_seen", "size")

    def __init__(self, size: int = DEFAULT_DEDUP_WINDOW) -> None:
        if size < 1:
            raise ValueError("the window must hold at least one key")
        self.size = size
        self._seen: set[K] = set()
        self._order: deque[K] = deque()

    def add(self, key: K) -> bool:
        """Remember ``key``; return False if it was already in the window (a duplicate)."""
        seen = self._seen
        if key in seen:
            return False
        seen.add(key)
        order = self._order
        order.append(key)
        if len(order) > self.size:
            seen.discard(order.popleft())
        return True

    def __contains__(self, sequence: object) -> bool:
        return sequence in self._seen

    def __len__(self) -> int:
        return len(self._order)


@dataclass(slots=True)
class OutboxEntry:
    """One stored send waiting for its ack: the packet as it went out, and when."""

    packet_id: str
    plain: bytes
    """The encoded MIMCPacket (the SECMSG payload); the header id is the packet id (6.6)."""
    queued_at: float


class Outbox:
    """The stored sends not acked yet, oldest first (see the module docstring).

    Args:
        max_count: how many may wait; one more raises ``OutboxFull``.
        max_age: seconds an entry is sent again for; older ones are given up.
    """

    __slots__ = ("_entries", "max_age", "max_count")

    def __init__(
        self, max_count: int = DEFAULT_OUTBOX_SIZE, max_age: float = DEFAULT_OUTBOX_AGE
    ) -> None:
        if max_count < 1 or max_age <= 0:
            raise ValueError("the outbox needs room for one send and a positive age")
        self.max_count = max_count
        self.max_age = max_age
        self._entries: OrderedDict[str, OutboxEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(list(self._entries.values()))

    def __contains__(self, packet_id: object) -> bool:
        return packet_id in self._entries

    def check_room(self) -> None:
        """Raise ``OutboxFull`` unless one more send fits (call it before sending anything)."""
        if len(self._entries) >= self.max_count:
            raise OutboxFull(len(self._entries), self.max_count)

    def add(self, packet_id: str, plain: bytes, now: float) -> None:
        """Keep a stored send until its ack (``check_room`` first)."""
        self._entries[packet_id] = OutboxEntry(packet_id, plain, now)

    def settle(self, packet_id: str) -> bool:
        """Its ack came: forget the send. False if it was not waiting."""
        return self._entries.pop(packet_id, None) is not None

    def expire(self, now: float) -> list[OutboxEntry]:
        """Remove and return the entries older than ``max_age``."""
        entries = self._entries
        old: list[OutboxEntry] = []
        while entries:
            first = next(iter(entries.values()))
            if now - first.queued_at <= self.max_age:
                break
            old.append(entries.popitem(last=False)[1])
        return old


class SessionMemory:
    """The protocol state of one user that outlives each of its connections.

    Create one per user and pass it to every ``ClientSession`` of that user
    (``ClientSession(..., memory=memory)``); a session made without one gets a fresh memory
    of its own, which is what a single connection needs.

    Args:
        dedup_window: how many delivered sequences ``seen`` remembers (and acked packet ids
            ``acked`` remembers).
        outbox_size: how many stored sends may wait for their ack.
        outbox_age: seconds a stored send is sent again for.

    Attributes:
        seen: the delivered P2P/P2T sequences (one window for both kinds, 6.8).
        duplicates: how many redelivered messages were dropped so far.
        outbox: the stored sends not acked yet.
        acked: the packet ids whose ack was emitted.
        duplicate_acks: how many repeated acks were dropped so far.
    """

    __slots__ = ("_uc_topics", "acked", "duplicate_acks", "duplicates", "outbox", "seen")

    def __init__(
        self,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        *,
        outbox_size: int = DEFAULT_OUTBOX_SIZE,
        outbox_age: float = DEFAULT_OUTBOX_AGE,
    ) -> None:
        self.seen: RecentWindow[int] = RecentWindow(dedup_window)
        self.duplicates = 0
        self.outbox = Outbox(outbox_size, outbox_age)
        self.acked: RecentWindow[str] = RecentWindow(dedup_window)
        self.duplicate_acks = 0
        self._uc_topics: dict[int, None] = {}  # an insertion-ordered set

    def first_delivery(self, sequence: int) -> bool:
        """True the first time ``sequence`` is delivered; counts and refuses a repeat."""
        if self.seen.add(sequence):
            return True
        self.duplicates += 1
        return False

    def first_ack(self, packet_id: str) -> bool:
        """True the first time an ack of ``packet_id`` arrives (it settles the outbox entry)."""
        self.outbox.settle(packet_id)
        if self.acked.add(packet_id):
            return True
        self.duplicate_acks += 1
        return False

    @property
    def uc_topics(self) -> tuple[int, ...]:
        """The unlimited groups we are in, oldest first."""
        return tuple(self._uc_topics)

    def iter_uc_topics(self) -> Iterator[int]:
        """The unlimited groups we are in, without copying them (for UC PING)."""
        return iter(self._uc_topics)

    def remember_uc_topics(self, topic_ids: Iterable[int]) -> None:
        """We are in these unlimited groups (a join succeeded, or the REST list said so)."""
        for topic_id in topic_ids:
            self._uc_topics[int(topic_id)] = None

    def forget_uc_topic(self, topic_id: int) -> None:
        """We left this unlimited group (quit, dismissed); a reconnect must not rejoin it."""
        self._uc_topics.pop(int(topic_id), None)

    def forget_uc_topics(self) -> None:
        """We logged out: the next login starts in no unlimited group."""
        self._uc_topics.clear()

    def __repr__(self) -> str:
        return (
            f"<SessionMemory seen={len(self.seen)}/{self.seen.size} "
            f"duplicates={self.duplicates} outbox={len(self.outbox)}/{self.outbox.max_count} "
            f"uc_topics={len(self._uc_topics)}>"
        )
