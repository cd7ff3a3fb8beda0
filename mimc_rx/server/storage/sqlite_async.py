"""The embedded SQLite store behind the async :class:`~.interface.Storage` protocol.

The single-process default keeps its speed: :class:`SQLiteStorage` calls the synchronous
:class:`~mimc_rx.server.storage.store.Store` directly on the event loop (each call is
microseconds of in-memory work plus, at most, one SQLite commit), with no thread and no
``await`` inside a write. So a ``write_tick`` runs whole without another coroutine interleaving,
and every writing method commits before it returns, as the protocol says.

The dedup of a stored message is the store's own (issue 10's ``sent_packets`` through
:meth:`Store.find_sent`, which also sees the rows of the tick being written). Returned users and
groups are copies, as on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Final

from mimc_rx.protocol.codec_base import constructor
from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.interface import (
    CursorMoved,
    CursorWrite,
    Intent,
    Outcome,
    P2PWrite,
    P2PWritten,
    P2TWrite,
    P2TWritten,
    Refusal,
    UCWrite,
    UCWritten,
)
from mimc_rx.server.storage.records import (
    Contact,
    MessageKind,
    StoredMessage,
    Topic,
    UCTopic,
    User,
)
from mimc_rx.server.storage.store import Store

__all__ = ["SQLiteStorage"]


# A tick copies the recipient of every P2P message: field by field, without the generic
# dataclasses.replace (which looks the fields up and calls __init__ by keyword each time).
_USER_FIELDS: Final = tuple(field.name for field in dataclasses.fields(User))
_user_values: Final = attrgetter(*_USER_FIELDS)
_make_user: Final = constructor(User, _USER_FIELDS)


def _copy_user(user: User) -> User:
    return _make_user(*_user_values(user))


def _copy_topic(topic: Topic) -> Topic:
    return dataclasses.replace(topic, members=dict(topic.members))


def _copy_uc(topic: UCTopic) -> UCTopic:
    return dataclasses.replace(topic, members=dict(topic.members))


class SQLiteStorage:
    """:class:`Store` as a :class:`~mimc_rx.server.storage.interface.Storage`.

    Args:
        store: the store to wrap; it stays usable directly (``.store``) by code not yet moved
            to the async interface.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def at(cls, path: str | os.PathLike[str], *, sync_full: bool = False) -> SQLiteStorage:
        """Open (or create) the database file ``path``; ``":memory:"`` for a throw-away one."""
        return cls(Store(path, sync_full=sync_full))

    def __repr__(self) -> str:
        return f"<SQLiteStorage {self.store.path!r}>"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Nothing to do: the store opened (and migrated) its file when it was made."""

    async def close(self) -> None:
        """Commit what is pending and close the file."""
        self.store.close()

    def _commit(self) -> None:
        try:
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise

    # ------------------------------------------------------------------ the tick

    async def write_tick(self, intents: Sequence[Intent]) -> list[Outcome]:
        """Apply a tick's intents and commit; on failure roll back and raise."""
        try:
            outcomes = [self._apply(intent) for intent in intents]
        except BaseException:
            self.store.rollback()
            raise
        self._commit()
        return outcomes

    def _apply(self, intent: Intent) -> Outcome:
        store = self.store
        match intent:
            case P2PWrite():
                recipient = store.ensure_user(intent.app.app_id, intent.to_account)
                if intent.persist and (
                    found := store.find_sent(
                        intent.sender.uuid, intent.packet_id, intent.from_resource
                    )
                ):
                    return P2PWritten(
                        recipient=_copy_user(recipient),
                        sender_seq=found[0],
                        recipient_seq=0,
                        ts=found[1],
                        duplicate=True,
                    )
                sender = store.users[intent.sender.uuid]
                sender_seq, seq = store.record_p2p(
                    app=intent.app,
                    packet_id=intent.packet_id,
                    sender=sender,
                    from_resource=intent.from_resource,
                    recipient=recipient,
                    payload=intent.payload,
                    biz_type=intent.biz_type,
                    ts=intent.ts,
                    persist=intent.persist,
                    to_resource=intent.to_resource,
                )
                return P2PWritten(
                    recipient=_copy_user(recipient),
                    sender_seq=sender_seq,
                    recipient_seq=seq,
                    ts=intent.ts,
                )
            case P2TWrite():
                return self._p2t(intent)
            case UCWrite():
                uc = store.uc_topics.get(intent.topic_id)
                if uc is None or uc.app_id != intent.app_id:
                    return UCWritten(sequence=0, refusal=Refusal.NO_TOPIC)
                if intent.sender_uuid not in uc.members:
                    return UCWritten(sequence=0, refusal=Refusal.NOT_MEMBER)
                seq = store.next_uc_sequence(uc, intent.ts)
                return UCWritten(sequence=seq, members=tuple(uc.members))
            case CursorWrite():
                acked = store.advance_cursor(intent.uuid, intent.resource, intent.sequence)
                return CursorMoved(uuid=intent.uuid, resource=intent.resource, acked=acked)

    def _p2t(self, intent: P2TWrite) -> P2TWritten:
        store = self.store
        topic = store.topics.get(intent.topic_id)
        if topic is None or topic.app_id != intent.app.app_id:
            return P2TWritten(sender_seq=0, ts=intent.ts, refusal=Refusal.NO_TOPIC)
        if intent.sender.uuid not in topic.members:
            return P2TWritten(sender_seq=0, ts=intent.ts, refusal=Refusal.NOT_MEMBER)
        found = (
            store.find_sent(intent.sender.uuid, intent.packet_id, intent.from_resource)
            if intent.persist
            else None
        )
        if found:
            return P2TWritten(sender_seq=found[0], ts=found[1], duplicate=True)
        sender_seq, sequences = store.record_p2t(
            app=intent.app,
            packet_id=intent.packet_id,
            sender=store.users[intent.sender.uuid],
            from_resource=intent.from_resource,
            topic=topic,
            payload=intent.payload,
            biz_type=intent.biz_type,
            ts=intent.ts,
            persist=intent.persist,
        )
        return P2TWritten(sender_seq=sender_seq, ts=intent.ts, sequences=tuple(sequences))

    # ------------------------------------------------------------------ apps, users, tokens

    async def save_app(self, app: AppConfig) -> None:
        """Record a configured app."""
        self.store.save_app(app)
        self._commit()

    async def find_user(self, app_id: int, account: str) -> User | None:
        """The user of that account, or None."""
        user = self.store.find_user(app_id, account)
        return None if user is None else _copy_user(user)

    async def user(self, uuid: int) -> User | None:
        """The user of that uuid, or None."""
        user = self.store.users.get(uuid)
        return None if user is None else _copy_user(user)

    async def users(self, uuids: Iterable[int]) -> dict[int, User]:
        """The known users among ``uuids``."""
        known = self.store.users
        return {u: _copy_user(known[u]) for u in uuids if u in known}

    async def count_users(self) -> int:
        """How many users exist."""
        return len(self.store.users)

    async def ensure_user(self, app_id: int, account: str) -> User:
        """The user of that account, created if needed."""
        user = self.store.ensure_user(app_id, account)
        self._commit()
        return _copy_user(user)

    async def import_user(
        self, app_id: int, account: str, *, uuid: int, security_key: str, last_seq: int = 0
    ) -> User:
        """Create a user with a chosen identity (``Store.import_user``)."""
        user = self.store.import_user(
            app_id, account, uuid=uuid, security_key=security_key, last_seq=last_seq
        )
        self._commit()
        return _copy_user(user)

    async def add_token(self, token: str, uuid: int, expires_at: float) -> None:
        """Remember an issued token."""
        self.store.add_token(token, uuid, expires_at)
        self._commit()

    async def lookup_token(self, token: str) -> tuple[User, float] | None:
        """The user a token was issued to and its expiry, or None."""
        found = self.store.lookup_token(token)
        return None if found is None else (_copy_user(found[0]), found[1])

    async def prune_tokens(self, now: float) -> int:
        """Forget tokens that expired long ago."""
        count = self.store.prune_tokens(now)
        self._commit()
        return count

    # ------------------------------------------------------------------ cursors, backlog

    async def cursor(self, uuid: int, resource: str) -> int | None:
        """The highest sequence this resource acknowledged, or None."""
        return self.store.cursor(uuid, resource)

    async def open_cursor(self, uuid: int, resource: str) -> int:
        """The cursor of a resource, created at its first login."""
        acked = self.store.open_cursor(uuid, resource)
        self._commit()
        return acked

    async def advance_cursor(self, uuid: int, resource: str, sequence: int) -> int:
        """Record an ack outside a tick."""
        acked = self.store.advance_cursor(uuid, resource, sequence)
        self._commit()
        return acked

    async def backlog_summary(self, uuid: int, after: int) -> tuple[int, int, int]:
        """(count, min sequence, max sequence) above ``after``."""
        return self.store.backlog_summary(uuid, after)

    async def backlog(self, uuid: int, after: int, limit: int) -> list[StoredMessage]:
        """Stored messages above ``after``, oldest first."""
        return self.store.backlog(uuid, after, limit)

    # ------------------------------------------------------------------ history, contacts

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
        """One conversation seen from ``me`` (``Store.history``)."""
        return self.store.history(
            me,
            other=other,
            topic_id=topic_id,
            from_ts=from_ts,
            to_ts=to_ts,
            start_seq=start_seq,
            stop_seq=stop_seq,
            limit=limit,
            newest=newest,
        )

    async def recent_contacts(self, me: int, *, since_ts: int) -> list[Contact]:
        """``me``'s recent conversations (``Store.recent_contacts``)."""
        return self.store.recent_contacts(me, since_ts=since_ts)

    async def hide_contact(self, me: int, kind: MessageKind, peer: int) -> None:
        """Hide a conversation until its next message."""
        self.store.hide_contact(me, kind, peer)
        self._commit()

    async def prune_dedup(self, before_ts: int) -> int:
        """Forget dedup records older than ``before_ts`` (``Store.prune_sent``)."""
        count = self.store.prune_sent(before_ts)
        self._commit()
        return count

    # ------------------------------------------------------------------ normal groups

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
        """Create a group; the owner is its first member."""
        topic = self.store.create_topic(
            app_id=app_id,
            name=name,
            owner=owner,
            members=members,
            now_ms=now_ms,
            topic_id=topic_id,
        )
        self._commit()
        return _copy_topic(topic)

    async def topic(self, topic_id: int) -> Topic | None:
        """A group, or None."""
        topic = self.store.topics.get(topic_id)
        return None if topic is None else _copy_topic(topic)

    async def topics_of(self, uuid: int) -> list[Topic]:
        """The groups a user is a member of."""
        return [_copy_topic(t) for t in self.store.topics_of(uuid)]

    async def add_members(self, topic_id: int, uuids: Iterable[int], *, now_ms: int) -> list[int]:
        """Add users to a group."""
        topic = self.store.topics.get(topic_id)
        if topic is None:
            return []
        added = self.store.add_members(topic, uuids, now_ms=now_ms)
        self._commit()
        return added

    async def remove_members(self, topic_id: int, uuids: Iterable[int]) -> list[int]:
        """Remove users from a group."""
        topic = self.store.topics.get(topic_id)
        if topic is None:
            return []
        removed = self.store.remove_members(topic, uuids)
        self._commit()
        return removed

    async def update_topic(
        self,
        topic_id: int,
        *,
        name: str | None = None,
        bulletin: str | None = None,
        owner: int | None = None,
    ) -> Topic | None:
        """Change a group's name, bulletin or owner."""
        topic = self.store.topics.get(topic_id)
        if topic is None:
            return None
        self.store.update_topic(topic, name=name, bulletin=bulletin, owner=owner)
        self._commit()
        return _copy_topic(topic)

    async def delete_topic(self, topic_id: int) -> bool:
        """Dismiss a group."""
        topic = self.store.topics.get(topic_id)
        if topic is None:
            return False
        self.store.delete_topic(topic)
        self._commit()
        return True

    # ------------------------------------------------------------------ unlimited groups

    async def create_uc_topic(
        self, *, app_id: int, name: str, owner: int, now_ms: int, topic_id: int | None = None
    ) -> UCTopic:
        """Create an unlimited group; the owner joins it."""
        topic = self.store.create_uc_topic(
            app_id=app_id, name=name, owner=owner, now_ms=now_ms, topic_id=topic_id
        )
        self._commit()
        return _copy_uc(topic)

    async def uc_topic(self, topic_id: int) -> UCTopic | None:
        """An unlimited group, or None."""
        topic = self.store.uc_topics.get(topic_id)
        return None if topic is None else _copy_uc(topic)

    async def uc_topics_of(self, uuid: int) -> list[UCTopic]:
        """The unlimited groups a user has joined."""
        return [_copy_uc(t) for t in self.store.uc_topics_of(uuid)]

    async def uc_join(self, topic_id: int, uuid: int) -> bool:
        """Add a member."""
        topic = self.store.uc_topics.get(topic_id)
        if topic is None:
            return False
        joined = self.store.uc_join(topic, uuid)
        self._commit()
        return joined

    async def uc_quit(self, topic_id: int, uuid: int) -> bool:
        """Remove a member."""
        topic = self.store.uc_topics.get(topic_id)
        if topic is None:
            return False
        quit_ = self.store.uc_quit(topic, uuid)
        self._commit()
        return quit_

    async def delete_uc_topic(self, topic_id: int) -> tuple[int, ...]:
        """Dismiss an unlimited group; returns its members then."""
        topic = self.store.uc_topics.get(topic_id)
        if topic is None:
            return ()
        members = tuple(topic.members)
        self.store.delete_uc_topic(topic)
        self._commit()
        return members
