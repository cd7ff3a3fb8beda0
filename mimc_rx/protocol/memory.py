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

Only the core reads and writes it; the facade creates it and passes it along. Plain Python,
no I/O (STYLE.md 2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_DEDUP_WINDOW", "SequenceWindow", "SessionMemory"]

DEFAULT_DEDUP_WINDOW = 65536
"""How many delivered sequences are remembered by default to drop redeliveries."""


class SequenceWindow:
    """A bounded set of recently delivered sequences (dedup with fixed memory).

    It remembers the last ``size`` sequences in arrival order; older ones are forgotten, so
    a redelivery older than the window would be emitted again (the price of a bound).
    """

    __slots__ = ("_order", "_seen", "size")

    def __init__(self, size: int = DEFAULT_DEDUP_WINDOW) -> None:
        if size < 1:
            raise ValueError("the window must hold at least one sequence")
        self.size = size
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def add(self, sequence: int) -> bool:
        """Remember ``sequence``; return False if it was already in the window (a duplicate)."""
        seen = self._seen
        if sequence in seen:
            return False
        seen.add(sequence)
        order = self._order
        order.append(sequence)
        if len(order) > self.size:
            seen.discard(order.popleft())
        return True

    def __contains__(self, sequence: object) -> bool:
        return sequence in self._seen

    def __len__(self) -> int:
        return len(self._order)


class SessionMemory:
    """The protocol state of one user that outlives each of its connections.

    Create one per user and pass it to every ``ClientSession`` of that user
    (``ClientSession(..., memory=memory)``); a session made without one gets a fresh memory
    of its own, which is what a single connection needs.

    Args:
        dedup_window: how many delivered sequences ``seen`` remembers.

    Attributes:
        seen: the delivered P2P/P2T sequences (one window for both kinds, 6.8).
        duplicates: how many redelivered messages were dropped so far.
    """

    __slots__ = ("_uc_topics", "duplicates", "seen")

    def __init__(self, dedup_window: int = DEFAULT_DEDUP_WINDOW) -> None:
        self.seen = SequenceWindow(dedup_window)
        self.duplicates = 0
        self._uc_topics: dict[int, None] = {}  # an insertion-ordered set

    def first_delivery(self, sequence: int) -> bool:
        """True the first time ``sequence`` is delivered; counts and refuses a repeat."""
        if self.seen.add(sequence):
            return True
        self.duplicates += 1
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
            f"duplicates={self.duplicates} uc_topics={len(self._uc_topics)}>"
        )
