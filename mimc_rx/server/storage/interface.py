"""The async storage interface of the server: one :class:`Storage` protocol, two engines.

Why an interface
----------------
The embedded default keeps today's SQLite :class:`~mimc_rx.server.storage.store.Store` (one
process, state cached in memory). Scale-out (issue 14) runs several server processes on one
PostgreSQL database, where nothing that several processes write may be cached, and where every
call is a network round trip. Both are offered to the hub through this protocol:
:class:`~mimc_rx.server.storage.sqlite_async.SQLiteStorage` wraps the synchronous store,
:class:`~mimc_rx.server.storage.postgres.PostgresStorage` talks to PostgreSQL.

The tick
--------
The hub groups the work of one event-loop tick (docs: the commit-before-ack pipeline in
:mod:`mimc_rx.server.hub`). With this interface its handlers do not write: they validate what
needs no storage and queue an *intent* (:class:`P2PWrite`, :class:`P2TWrite`,
:class:`UCWrite`, :class:`CursorWrite`). One flush per tick calls :meth:`Storage.write_tick`
with the tick's intents, which in **one transaction** resolves recipients, checks group
membership, deduplicates ``(sender, resource, packet id)``, allocates every sequence, inserts the
messages and inbox rows, moves cursors, and **commits before it returns**. The hub then sends
the acks and deliveries built from the returned outcomes (one per intent, same order). If
``write_tick`` raises, nothing of the tick is stored and nothing may be acked: the senders time
out and send again, and the dedup keeps that at exactly once.

Meaning shared by both engines
------------------------------
* Sequences: per user (P2P and P2T share the space, docs/protocol.md 6.15) and per unlimited
  group, ``max(previous + 1, ts_ms * 1000)``, strictly increasing across restarts and, on
  PostgreSQL, across writer processes; per user, commit order is sequence order.
* Dedup: a stored message whose ``(sender uuid, sending resource, packet id)`` was already
  stored (issue 10: two devices of one account may make the same web packet id) is not stored
  or delivered again; its outcome is ``duplicate=True`` with the *original* sender sequence and
  timestamp, so the resent packet gets the original ack. Unstored (``persist=False``) messages
  are never deduplicated (at most once, as before).
* Cursors: the highest sequence a ``(uuid, resource)`` acknowledged; never backwards, never
  above the user's last issued sequence. (Never past what a *connection* was sent is the hub's
  rule: it clamps before writing, as it knows what it sent.)
* Everything outside ``write_tick`` that writes (users, tokens, groups, cursors, contacts)
  is committed when the call returns.
* Returned :class:`~mimc_rx.server.storage.records.User`, ``Topic`` and ``UCTopic`` objects
  are snapshots: mutating one changes nothing stored. A ``User.last_seq`` is informational.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.records import (
    Contact,
    MessageKind,
    StoredMessage,
    Topic,
    UCTopic,
    User,
)

__all__ = [
    "CursorMoved",
    "CursorWrite",
    "Intent",
    "Outcome",
    "P2PWrite",
    "P2PWritten",
    "P2TWrite",
    "P2TWritten",
    "Refusal",
    "Storage",
    "UCWrite",
    "UCWritten",
]


class Refusal(Enum):
    """Why a group intent was refused inside the tick (the hub maps it to an ``errorMsg``)."""

    NO_TOPIC = "no-topic"
    """The topic does not exist or belongs to another app."""
    NOT_MEMBER = "not-member"
    """The sender is not a member of the topic."""


# ---------------------------------------------------------------------------- intents


@dataclass(frozen=True, slots=True, kw_only=True)
class P2PWrite:
    """A one-to-one message to sequence and, if ``persist``, store (docs/protocol.md 6.6).

    The recipient is named by account: a recipient nobody used yet is created inside the tick,
    as the cloud does for app-defined accounts.
    """

    app: AppConfig
    packet_id: str
    sender: User
    from_resource: str
    to_account: str
    payload: bytes
    biz_type: str = ""
    to_resource: str = ""
    ts: int
    persist: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class P2TWrite:
    """A group message to sequence in every member's space and, if ``persist``, store (6.7)."""

    app: AppConfig
    packet_id: str
    sender: User
    from_resource: str
    topic_id: int
    payload: bytes
    biz_type: str = ""
    ts: int
    persist: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class UCWrite:
    """An unlimited-group message: allocate the topic's next sequence (6.12). Never stored."""

    app_id: int
    sender_uuid: int
    topic_id: int
    ts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorWrite:
    """A SEQUENCE_ACK, already clamped by the hub to what that connection was sent."""

    uuid: int
    resource: str
    sequence: int


Intent = P2PWrite | P2TWrite | UCWrite | CursorWrite
"""What a handler queues for the tick's transaction."""


# ---------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True, kw_only=True)
class P2PWritten:
    """What a :class:`P2PWrite` became: the ack's sequence and timestamp, who receives it."""

    recipient: User
    sender_seq: int
    recipient_seq: int
    """0 when ``duplicate``: nothing is delivered again."""
    ts: int
    """The timestamp to ack and deliver with (the original one for a duplicate)."""
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class P2TWritten:
    """What a :class:`P2TWrite` became."""

    sender_seq: int
    ts: int
    sequences: tuple[tuple[int, int], ...] = ()
    """``(member uuid, member sequence)`` for every member, the sender included, in membership
    order; empty for a duplicate or a refusal."""
    duplicate: bool = False
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UCWritten:
    """What a :class:`UCWrite` became: the topic sequence and the members to fan out to."""

    sequence: int
    members: tuple[int, ...] = ()
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorMoved:
    """The cursor after a :class:`CursorWrite` (unchanged when the ack was old)."""

    uuid: int
    resource: str
    acked: int


Outcome = P2PWritten | P2TWritten | UCWritten | CursorMoved
"""One per intent, in the same order."""


# ---------------------------------------------------------------------------- the protocol


@runtime_checkable
class Storage(Protocol):
    """Durable state of the server, async. See the module docstring for the shared meaning."""

    # lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations). Called once before use."""

    async def close(self) -> None:
        """Commit what is pending and release the connections."""

    # the tick ----------------------------------------------------------------

    async def write_tick(self, intents: Sequence[Intent]) -> list[Outcome]:
        """Apply a tick's intents in one transaction and commit before returning.

        Raises whatever the engine raised, with nothing of the tick stored.
        """
        ...

    # apps, users, tokens -----------------------------------------------------

    async def save_app(self, app: AppConfig) -> None:
        """Record a configured app (informational: the running config is authoritative)."""

    async def find_user(self, app_id: int, account: str) -> User | None:
        """The user of that account, or None if nobody ever used it."""
        ...

    async def user(self, uuid: int) -> User | None:
        """The user of that uuid, or None."""
        ...

    async def users(self, uuids: Iterable[int]) -> dict[int, User]:
        """The known users among ``uuids``, by uuid (REST pages naming group members)."""
        ...

    async def count_users(self) -> int:
        """How many users exist (the status page)."""
        ...

    async def ensure_user(self, app_id: int, account: str) -> User:
        """The user of that account, created with a fresh uuid and security key if needed.

        Safe when several processes create the same account at once: one identity wins.
        """
        ...

    async def import_user(
        self, app_id: int, account: str, *, uuid: int, security_key: str, last_seq: int = 0
    ) -> User:
        """Create a user with a chosen identity; as ``Store.import_user`` (ValueError too)."""
        ...

    async def add_token(self, token: str, uuid: int, expires_at: float) -> None:
        """Remember an issued token."""

    async def lookup_token(self, token: str) -> tuple[User, float] | None:
        """The user a token was issued to and its expiry time, or None if unknown."""
        ...

    async def prune_tokens(self, now: float) -> int:
        """Forget tokens that expired long ago; returns how many."""
        ...

    # cursors and backlog -----------------------------------------------------

    async def cursor(self, uuid: int, resource: str) -> int | None:
        """The highest sequence this resource acknowledged, or None if never seen."""
        ...

    async def open_cursor(self, uuid: int, resource: str) -> int:
        """The cursor of a resource; a new one starts at the user's highest other cursor."""
        ...

    async def advance_cursor(self, uuid: int, resource: str, sequence: int) -> int:
        """Record an ack outside a tick; never backwards, never beyond the last issued."""
        ...

    async def backlog_summary(self, uuid: int, after: int) -> tuple[int, int, int]:
        """(count, min sequence, max sequence) of a user's stored messages above ``after``."""
        ...

    async def backlog(self, uuid: int, after: int, limit: int) -> list[StoredMessage]:
        """A user's stored messages above sequence ``after``, oldest first."""
        ...

    # history and contacts ----------------------------------------------------

    async def history(
        self,
        me: int,
        *,
        other: int | None = None,
        topic_id: int | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        start_seq: int | None = None,
        stop_seq: int | None = None,
        limit: int = 1000,
        newest: bool = False,
    ) -> list[StoredMessage]:
        """One conversation seen from ``me``; the meaning of ``Store.history``."""
        ...

    async def recent_contacts(self, me: int, *, since_ts: int) -> list[Contact]:
        """``me``'s conversations with a message at or after ``since_ts``, newest first."""
        ...

    async def hide_contact(self, me: int, kind: MessageKind, peer: int) -> None:
        """Take a conversation off ``me``'s recent contacts until its next message (8.5)."""

    async def prune_dedup(self, before_ts: int) -> int:
        """Forget the dedup records older than ``before_ts`` (ms); how many."""
        ...

    # normal groups -----------------------------------------------------------

    async def create_topic(
        self,
        *,
        app_id: int,
        name: str,
        owner: int,
        members: Iterable[int],
        now_ms: int,
        topic_id: int | None = None,
    ) -> Topic:
        """Create a group; the owner is its first member. A taken ``topic_id``: ValueError."""
        ...

    async def topic(self, topic_id: int) -> Topic | None:
        """A group with its members in join order, or None."""
        ...

    async def topics_of(self, uuid: int) -> list[Topic]:
        """The groups a user is a member of, by topic id."""
        ...

    async def add_members(self, topic_id: int, uuids: Iterable[int], *, now_ms: int) -> list[int]:
        """Add users to a group; returns those who were not members yet."""
        ...

    async def remove_members(self, topic_id: int, uuids: Iterable[int]) -> list[int]:
        """Remove users from a group; returns those who were members."""
        ...

    async def update_topic(
        self,
        topic_id: int,
        *,
        name: str | None = None,
        bulletin: str | None = None,
        owner: int | None = None,
    ) -> Topic | None:
        """Change a group's name, bulletin or owner; the group after, or None if unknown."""
        ...

    async def delete_topic(self, topic_id: int) -> bool:
        """Dismiss a group (its stored messages stay in history); False if unknown."""
        ...

    # unlimited groups --------------------------------------------------------

    async def create_uc_topic(
        self, *, app_id: int, name: str, owner: int, now_ms: int, topic_id: int | None = None
    ) -> UCTopic:
        """Create an unlimited group; the owner joins it."""
        ...

    async def uc_topic(self, topic_id: int) -> UCTopic | None:
        """An unlimited group with its members, or None."""
        ...

    async def uc_topics_of(self, uuid: int) -> list[UCTopic]:
        """The unlimited groups a user has joined, by topic id."""
        ...

    async def uc_join(self, topic_id: int, uuid: int) -> bool:
        """Add a member; False when already a member or the topic is unknown."""
        ...

    async def uc_quit(self, topic_id: int, uuid: int) -> bool:
        """Remove a member; False when not a member or the topic is unknown."""
        ...

    async def delete_uc_topic(self, topic_id: int) -> tuple[int, ...]:
        """Dismiss an unlimited group; returns its members then (for DISMISS), () if unknown."""
        ...
