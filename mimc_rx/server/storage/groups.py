"""Group persistence: normal groups (docs/protocol.md 8.3) and unlimited groups (6.12, 8.2).

Groups and their members are small and read on every group message, so they live in memory as
well as on disk: loaded once at open and written through on the store's connection (in its open
transaction, committed by :meth:`Store.commit <mimc_rx.server.storage.store.Store.commit>`). The
one hot counter, an unlimited group's sequence, is only marked dirty and written at commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from mimc_rx.server.storage.records import Topic, UCTopic, next_sequence, random_id

__all__ = ["GroupStore"]


class GroupStore:
    """The groups half of the store: the group tables plus their in-memory indexes.

    A complete class on its own (it needs only a connection whose schema is up to date).
    :class:`~mimc_rx.server.storage.store.Store` extends it, so that the server keeps one store
    object, and drives it from its own lifecycle: :meth:`_write_groups` in ``commit``; in
    ``rollback``, clearing ``_dirty_uc`` and then :meth:`_resync_groups`.

    Args:
        db: the store's connection; the groups are loaded from it at once.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.topics: dict[int, Topic] = {}
        self.uc_topics: dict[int, UCTopic] = {}
        self._topics_of: dict[int, set[int]] = {}
        self._uc_topics_of: dict[int, set[int]] = {}
        self._dirty_uc: set[int] = set()
        self._load_groups()

    # ------------------------------------------------------------------ lifecycle hooks

    def _load_groups(self) -> None:
        db = self._db
        for topic_id, app_id, name, owner, bulletin in db.execute(
            "SELECT topic_id, app_id, name, owner_uuid, bulletin FROM topics"
        ):
            self.topics[topic_id] = Topic(
                topic_id=topic_id, app_id=app_id, name=name, owner_uuid=owner, bulletin=bulletin
            )
        for topic_id, uuid in db.execute(
            "SELECT topic_id, uuid FROM topic_members ORDER BY topic_id, joined_at"
        ):
            self.topics[topic_id].members[uuid] = None
            self._topics_of.setdefault(uuid, set()).add(topic_id)
        for topic_id, app_id, name, owner, last_seq in db.execute(
            "SELECT topic_id, app_id, name, owner_uuid, last_seq FROM uc_topics"
        ):
            self.uc_topics[topic_id] = UCTopic(
                topic_id=topic_id, app_id=app_id, name=name, owner_uuid=owner, last_seq=last_seq
            )
        for topic_id, uuid in db.execute("SELECT topic_id, uuid FROM uc_members"):
            self.uc_topics[topic_id].members[uuid] = None
            self._uc_topics_of.setdefault(uuid, set()).add(topic_id)

    def _write_groups(self) -> None:
        """Write the unlimited groups' sequence counters (part of a commit)."""
        if self._dirty_uc:
            self._db.executemany(
                "UPDATE uc_topics SET last_seq = ? WHERE topic_id = ?",
                [(self.uc_topics[t].last_seq, t) for t in self._dirty_uc if t in self.uc_topics],
            )
            self._dirty_uc.clear()

    def _resync_groups(self) -> None:
        """Reload the groups after a rollback, keeping the identity of those that survive.

        Groups and memberships made since the last commit disappear; sequence counters keep
        their higher in-memory value (see ``Store.rollback``).
        """
        topics, uc_topics = self.topics, self.uc_topics
        self.topics, self.uc_topics, self._topics_of, self._uc_topics_of = {}, {}, {}, {}
        self._load_groups()
        for topic_id, fresh_topic in self.topics.items():
            if (topic := topics.get(topic_id)) is not None:
                topic.name, topic.owner_uuid = fresh_topic.name, fresh_topic.owner_uuid
                topic.bulletin, topic.members = fresh_topic.bulletin, fresh_topic.members
                self.topics[topic_id] = topic
        for topic_id, fresh_uc in self.uc_topics.items():
            if (uc := uc_topics.get(topic_id)) is not None:
                uc.last_seq = max(uc.last_seq, fresh_uc.last_seq)
                uc.members = fresh_uc.members
                self.uc_topics[topic_id] = uc

    def _new_topic_id(self, chosen: int | None) -> int:
        # Normal and unlimited groups share one id space (both are "topicId" on the wire).
        if chosen is not None:
            if not 0 < chosen < 2**63:
                raise ValueError(f"topic id must be a positive 63-bit integer, not {chosen}")
            if chosen in self.topics or chosen in self.uc_topics:
                raise ValueError(f"topic id {chosen} is taken")
            return chosen
        topic_id = random_id()
        while topic_id in self.topics or topic_id in self.uc_topics:
            topic_id = random_id()
        return topic_id

    # ------------------------------------------------------------------ normal groups

    def create_topic(
        self,
        *,
        app_id: int,
        name: str,
        owner: int,
        members: Iterable[int],
        now_ms: int,
        topic_id: int | None = None,
    ) -> Topic:
        """Create a group owned by ``owner``; the owner is always its first member.

        ``topic_id`` is chosen at random unless given (seeding); a taken id is a ValueError.
        """
        topic_id = self._new_topic_id(topic_id)
        topic = Topic(topic_id=topic_id, app_id=app_id, name=name, owner_uuid=owner)
        self.topics[topic_id] = topic
        self._db.execute(
            "INSERT INTO topics VALUES (?, ?, ?, ?, '', ?)", (topic_id, app_id, name, owner, now_ms)
        )
        self.add_members(topic, [owner, *members], now_ms=now_ms)
        return topic

    def add_members(self, topic: Topic, uuids: Iterable[int], *, now_ms: int) -> list[int]:
        """Add users to a group; returns those who were not members yet."""
        added = [u for u in dict.fromkeys(uuids) if u not in topic.members]
        for uuid in added:
            topic.members[uuid] = None
            self._topics_of.setdefault(uuid, set()).add(topic.topic_id)
        self._db.executemany(
            "INSERT OR IGNORE INTO topic_members VALUES (?, ?, ?)",
            [(topic.topic_id, u, now_ms) for u in added],
        )
        return added

    def remove_members(self, topic: Topic, uuids: Iterable[int]) -> list[int]:
        """Remove users from a group; returns those who were members."""
        removed = [u for u in dict.fromkeys(uuids) if u in topic.members]
        for uuid in removed:
            del topic.members[uuid]
            self._topics_of.get(uuid, set()).discard(topic.topic_id)
        self._db.executemany(
            "DELETE FROM topic_members WHERE topic_id = ? AND uuid = ?",
            [(topic.topic_id, u) for u in removed],
        )
        return removed

    def update_topic(
        self,
        topic: Topic,
        *,
        name: str | None = None,
        bulletin: str | None = None,
        owner: int | None = None,
    ) -> None:
        """Change a group's name, bulletin or owner (the new owner must be a member)."""
        if name is not None:
            topic.name = name
        if bulletin is not None:
            topic.bulletin = bulletin
        if owner is not None:
            topic.owner_uuid = owner
        self._db.execute(
            "UPDATE topics SET name = ?, bulletin = ?, owner_uuid = ? WHERE topic_id = ?",
            (topic.name, topic.bulletin, topic.owner_uuid, topic.topic_id),
        )

    def delete_topic(self, topic: Topic) -> None:
        """Dismiss a group. Its stored messages stay in history."""
        self.remove_members(topic, list(topic.members))
        self.topics.pop(topic.topic_id, None)
        self._db.execute("DELETE FROM topics WHERE topic_id = ?", (topic.topic_id,))

    def topics_of(self, uuid: int) -> list[Topic]:
        """The groups a user is a member of."""
        return [self.topics[t] for t in sorted(self._topics_of.get(uuid, ())) if t in self.topics]

    # ------------------------------------------------------------------ unlimited groups

    def create_uc_topic(
        self, *, app_id: int, name: str, owner: int, now_ms: int, topic_id: int | None = None
    ) -> UCTopic:
        """Create an unlimited group; the owner joins it. ``topic_id``: see :meth:`create_topic`."""
        topic_id = self._new_topic_id(topic_id)
        topic = UCTopic(topic_id=topic_id, app_id=app_id, name=name, owner_uuid=owner)
        self.uc_topics[topic_id] = topic
        self._db.execute(
            "INSERT INTO uc_topics VALUES (?, ?, ?, ?, 0, ?)",
            (topic_id, app_id, name, owner, now_ms),
        )
        self.uc_join(topic, owner)
        return topic

    def uc_join(self, topic: UCTopic, uuid: int) -> bool:
        """Add a member; returns False when already a member."""
        if uuid in topic.members:
            return False
        topic.members[uuid] = None
        self._uc_topics_of.setdefault(uuid, set()).add(topic.topic_id)
        self._db.execute("INSERT OR IGNORE INTO uc_members VALUES (?, ?)", (topic.topic_id, uuid))
        return True

    def uc_quit(self, topic: UCTopic, uuid: int) -> bool:
        """Remove a member; returns False when not a member."""
        if uuid not in topic.members:
            return False
        del topic.members[uuid]
        self._uc_topics_of.get(uuid, set()).discard(topic.topic_id)
        self._db.execute(
            "DELETE FROM uc_members WHERE topic_id = ? AND uuid = ?", (topic.topic_id, uuid)
        )
        return True

    def delete_uc_topic(self, topic: UCTopic) -> None:
        """Dismiss an unlimited group."""
        for uuid in list(topic.members):
            self.uc_quit(topic, uuid)
        self.uc_topics.pop(topic.topic_id, None)
        self._dirty_uc.discard(topic.topic_id)
        self._db.execute("DELETE FROM uc_topics WHERE topic_id = ?", (topic.topic_id,))

    def uc_topics_of(self, uuid: int) -> list[UCTopic]:
        """The unlimited groups a user has joined."""
        return [
            self.uc_topics[t]
            for t in sorted(self._uc_topics_of.get(uuid, ()))
            if t in self.uc_topics
        ]

    def next_uc_sequence(self, topic: UCTopic, now_ms: int) -> int:
        """Allocate the next sequence of an unlimited group (per topic, 6.12)."""
        topic.last_seq = next_sequence(topic.last_seq, now_ms)
        self._dirty_uc.add(topic.topic_id)
        return topic.last_seq
