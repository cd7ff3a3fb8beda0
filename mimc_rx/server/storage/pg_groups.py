"""The group half of the PostgreSQL storage: normal groups (8.3) and unlimited groups (6.12, 8.2).

Nothing is cached: several server processes change memberships, so every read asks the
database (a group message reads its topic's members inside the tick's transaction anyway, see
:mod:`mimc_rx.server.storage.pg_tick`). Join order is kept by the ``pos`` identity column.
Each method is one short transaction, committed when it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mimc_rx.server.storage.records import Topic, UCTopic, random_id

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresGroups"]

_TOPIC_SELECT = (
    "SELECT t.topic_id, t.app_id, t.name, t.owner_uuid, t.bulletin, "
    "COALESCE(array_agg(m.uuid ORDER BY m.pos) FILTER (WHERE m.uuid IS NOT NULL), '{}') "
    "FROM topics t LEFT JOIN topic_members m ON m.topic_id = t.topic_id "
)
_UC_SELECT = (
    "SELECT t.topic_id, t.app_id, t.name, t.owner_uuid, t.last_seq, "
    "COALESCE(array_agg(m.uuid ORDER BY m.pos) FILTER (WHERE m.uuid IS NOT NULL), '{}') "
    "FROM uc_topics t LEFT JOIN uc_members m ON m.topic_id = t.topic_id "
)


def _topic(row: tuple[Any, ...]) -> Topic:
    topic_id, app_id, name, owner, bulletin, members = row
    return Topic(
        topic_id=topic_id,
        app_id=app_id,
        name=name,
        owner_uuid=owner,
        bulletin=bulletin,
        members=dict.fromkeys(members),
    )


def _uc_topic(row: tuple[Any, ...]) -> UCTopic:
    topic_id, app_id, name, owner, last_seq, members = row
    return UCTopic(
        topic_id=topic_id,
        app_id=app_id,
        name=name,
        owner_uuid=owner,
        last_seq=last_seq,
        members=dict.fromkeys(members),
    )


async def _new_topic_id(conn: AsyncConnection[Any], chosen: int | None) -> int:
    # Normal and unlimited groups share one id space (both are "topicId" on the wire).
    async def taken(topic_id: int) -> bool:
        cur = await conn.execute(
            "SELECT 1 FROM topics WHERE topic_id = %s UNION ALL "
            "SELECT 1 FROM uc_topics WHERE topic_id = %s",
            (topic_id, topic_id),
        )
        return await cur.fetchone() is not None

    if chosen is not None:
        if not 0 < chosen < 2**63:
            raise ValueError(f"topic id must be a positive 63-bit integer, not {chosen}")
        if await taken(chosen):
            raise ValueError(f"topic id {chosen} is taken")
        return chosen
    topic_id = random_id()
    while await taken(topic_id):
        topic_id = random_id()
    return topic_id


class PostgresGroups:
    """Group methods of :class:`~mimc_rx.server.storage.postgres.PostgresStorage`.

    A mixin: it needs only ``self._pool``, an open connection pool whose connections are in
    autocommit mode (each method opens its own transaction).
    """

    _pool: AsyncConnectionPool[Any]

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
        """Create a group owned by ``owner``, its first member (``Store.create_topic``)."""
        async with self._pool.connection() as conn, conn.transaction():
            topic_id = await _new_topic_id(conn, topic_id)
            await conn.execute(
                "INSERT INTO topics VALUES (%s, %s, %s, %s, '', %s)",
                (topic_id, app_id, name, owner, now_ms),
            )
            await self._insert_members(conn, topic_id, [owner, *members], now_ms)
        topic = await self.topic(topic_id)
        assert topic is not None
        return topic

    @staticmethod
    async def _insert_members(
        conn: AsyncConnection[Any], topic_id: int, uuids: Iterable[int], now_ms: int
    ) -> list[int]:
        wanted = list(dict.fromkeys(uuids))
        if not wanted:
            return []
        cur = await conn.execute(
            "INSERT INTO topic_members (topic_id, uuid, joined_at) "
            "SELECT %s, w.u, %s FROM unnest(%s::bigint[]) WITH ORDINALITY AS w(u, o) "
            "ORDER BY w.o ON CONFLICT DO NOTHING RETURNING uuid",
            (topic_id, now_ms, wanted),
        )
        added = {row[0] for row in await cur.fetchall()}
        return [u for u in wanted if u in added]

    async def topic(self, topic_id: int) -> Topic | None:
        """A group with its members in join order, or None."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _TOPIC_SELECT + "WHERE t.topic_id = %s GROUP BY t.topic_id", (topic_id,)
            )
            row = await cur.fetchone()
        return None if row is None else _topic(row)

    async def topics_of(self, uuid: int) -> list[Topic]:
        """The groups a user is a member of, by topic id."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _TOPIC_SELECT + "WHERE t.topic_id IN "
                "(SELECT topic_id FROM topic_members WHERE uuid = %s) "
                "GROUP BY t.topic_id ORDER BY t.topic_id",
                (uuid,),
            )
            return [_topic(row) for row in await cur.fetchall()]

    async def add_members(self, topic_id: int, uuids: Iterable[int], *, now_ms: int) -> list[int]:
        """Add users to a group; returns those who were not members yet ([] if no group)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT 1 FROM topics WHERE topic_id = %s FOR SHARE", (topic_id,)
            )
            if await cur.fetchone() is None:
                return []
            return await self._insert_members(conn, topic_id, uuids, now_ms)

    async def remove_members(self, topic_id: int, uuids: Iterable[int]) -> list[int]:
        """Remove users from a group; returns those who were members."""
        wanted = list(dict.fromkeys(uuids))
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM topic_members WHERE topic_id = %s AND uuid = ANY(%s) RETURNING uuid",
                (topic_id, wanted),
            )
            removed = {row[0] for row in await cur.fetchall()}
        return [u for u in wanted if u in removed]

    async def update_topic(
        self,
        topic_id: int,
        *,
        name: str | None = None,
        bulletin: str | None = None,
        owner: int | None = None,
    ) -> Topic | None:
        """Change a group's name, bulletin or owner; the group after, or None if unknown."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE topics SET name = COALESCE(%s, name), bulletin = COALESCE(%s, bulletin), "
                "owner_uuid = COALESCE(%s, owner_uuid) WHERE topic_id = %s",
                (name, bulletin, owner, topic_id),
            )
        return await self.topic(topic_id)

    async def delete_topic(self, topic_id: int) -> bool:
        """Dismiss a group; its stored messages stay in history."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM topic_members WHERE topic_id = %s", (topic_id,))
            cur = await conn.execute(
                "DELETE FROM topics WHERE topic_id = %s RETURNING 1", (topic_id,)
            )
            return await cur.fetchone() is not None

    # ------------------------------------------------------------------ unlimited groups

    async def create_uc_topic(
        self, *, app_id: int, name: str, owner: int, now_ms: int, topic_id: int | None = None
    ) -> UCTopic:
        """Create an unlimited group; the owner joins it."""
        async with self._pool.connection() as conn, conn.transaction():
            topic_id = await _new_topic_id(conn, topic_id)
            await conn.execute(
                "INSERT INTO uc_topics VALUES (%s, %s, %s, %s, 0, %s)",
                (topic_id, app_id, name, owner, now_ms),
            )
            await conn.execute(
                "INSERT INTO uc_members (topic_id, uuid) VALUES (%s, %s)", (topic_id, owner)
            )
        topic = await self.uc_topic(topic_id)
        assert topic is not None
        return topic

    async def uc_topic(self, topic_id: int) -> UCTopic | None:
        """An unlimited group with its members, or None."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _UC_SELECT + "WHERE t.topic_id = %s GROUP BY t.topic_id", (topic_id,)
            )
            row = await cur.fetchone()
        return None if row is None else _uc_topic(row)

    async def uc_topics_of(self, uuid: int) -> list[UCTopic]:
        """The unlimited groups a user has joined, by topic id."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _UC_SELECT + "WHERE t.topic_id IN "
                "(SELECT topic_id FROM uc_members WHERE uuid = %s) "
                "GROUP BY t.topic_id ORDER BY t.topic_id",
                (uuid,),
            )
            return [_uc_topic(row) for row in await cur.fetchall()]

    async def uc_join(self, topic_id: int, uuid: int) -> bool:
        """Add a member; False when already a member or the topic is unknown."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO uc_members (topic_id, uuid) SELECT topic_id, %s FROM uc_topics "
                "WHERE topic_id = %s ON CONFLICT DO NOTHING RETURNING 1",
                (uuid, topic_id),
            )
            return await cur.fetchone() is not None

    async def uc_quit(self, topic_id: int, uuid: int) -> bool:
        """Remove a member; False when not a member."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM uc_members WHERE topic_id = %s AND uuid = %s RETURNING 1",
                (topic_id, uuid),
            )
            return await cur.fetchone() is not None

    async def delete_uc_topic(self, topic_id: int) -> tuple[int, ...]:
        """Dismiss an unlimited group; returns who its members were (for DISMISS)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT uuid FROM uc_members WHERE topic_id = %s ORDER BY pos", (topic_id,)
            )
            members = tuple(row[0] for row in await cur.fetchall())
            await conn.execute("DELETE FROM uc_members WHERE topic_id = %s", (topic_id,))
            await conn.execute("DELETE FROM uc_topics WHERE topic_id = %s", (topic_id,))
        return members
