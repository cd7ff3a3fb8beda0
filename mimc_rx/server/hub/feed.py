"""The delivery rules of one bound connection: what it was sent of its user's stored messages.

Theory of operation (docs/server.md, "Delivery guarantees")
-----------------------------------------------------------
A SEQUENCE_ACK is cumulative (docs/protocol.md 6.9), so the hub must never let one cover a stored
message that was not sent on that connection. Each bound connection has a :class:`Feed`:

* ``sent_through``: every stored message of the user up to it was sent here, or was below the
  cursor at BIND. A SEQUENCE_ACK moves the cursor at most to ``sent_through``.
* ``pending``: stored messages above ``sent_through`` wait to be read from the storage (the
  backlog at BIND, a pull, a LOOK from another process). Meanwhile live *stored* messages are
  not pushed: they wait in the store, behind the backlog, and come with the reads, oldest
  first; unstored ones are pushed (they are in no backlog).
* ``missed``: a live stored message was held back while ``pending``: the read starts again.
* ``notified``: the ``maxSequence`` of each pull notification sent (6.10). The one ack that may
  pass ``sent_through`` is the ack of a notified range's ``maxSequence``: that is how the
  official SDK says "I drop this range", and the range then counts as sent.

This module is sans-I/O: numbers in, decisions out. The reads themselves, and what is done with
the decisions, are :mod:`mimc_rx.server.hub.backlog`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mimc_rx.server.storage import StoredMessage

__all__ = ["Acked", "Feed"]


class Acked(NamedTuple):
    """What a SEQUENCE_ACK does to a feed."""

    cursor: int
    """The cursor to write: the acked sequence, clamped to what was sent here."""
    dropped: bool
    """The ack named a notified ``maxSequence``: that range is dropped (6.10)."""


@dataclass(slots=True)
class Feed:
    """What one bound connection was sent of its user's stored messages (module docstring)."""

    sent_through: int
    pending: bool = False
    notified: set[int] = field(default_factory=set)
    """The maxSequence of each pull notification sent here and not yet passed."""
    missed: bool = False
    """A live stored message was held back while ``pending``: read the storage again."""

    def admit(self, sequence: int, *, stored: bool) -> bool:
        """Whether a live message of ``sequence`` may be pushed on this connection now.

        Args:
            sequence: its sequence in this connection's user's space.
            stored: it has an inbox row for this user (it would come with a pull); False for
                unstored messages and a sender's own group messages.
        """
        if self.pending:
            # Stored: it waits behind the backlog and comes with a read, in order. Unstored:
            # pushed now, without raising sent_through past stored messages not sent yet.
            if stored:
                self.missed = True
            return not stored
        if sequence > self.sent_through:
            self.sent_through = sequence
        elif stored:
            return False  # already sent by a backlog read
        return True

    def begin_read(self) -> None:
        """A read of the storage above ``sent_through`` starts: hold live stored messages."""
        self.pending, self.missed = True, False

    def end_read(self) -> bool:
        """The read is handed out. True when done; False when a live stored message was held
        back meanwhile (``missed``) and the storage must be read again."""
        if self.missed:
            return False
        self.pending = False
        return True

    def take(self, messages: Sequence[StoredMessage]) -> list[StoredMessage]:
        """Of a read's messages (oldest first), those not sent here yet; they count as sent."""
        fresh = []
        for message in messages:
            if message.seq > self.sent_through:
                fresh.append(message)
                self.sent_through = message.seq
        return fresh

    def notify(self, high: int) -> None:
        """A pull notification up to ``high`` is sent (6.10): live stored messages wait behind
        the range until it is pulled or dropped."""
        self.pending = True
        self.notified.add(high)

    def look(self) -> bool:
        """Stored messages were committed for this user elsewhere (a LOOK, a resync).

        Returns:
            True when a read must start; False when the read in flight, or the next pull,
            takes them (they are marked ``missed``).
        """
        if self.pending:
            self.missed = True
            return False
        self.pending = True
        return True

    def ack(self, sequence: int) -> Acked:
        """A SEQUENCE_ACK of ``sequence`` (6.9): never past what this connection was sent,
        except the ack of a notified ``maxSequence``, which drops that range (6.10)."""
        if sequence > self.sent_through and sequence in self.notified:
            self.sent_through = sequence
            self.notified = {high for high in self.notified if high > sequence}
            return Acked(sequence, True)
        return Acked(min(sequence, self.sent_through), False)
