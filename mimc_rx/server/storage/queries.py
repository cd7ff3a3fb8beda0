"""The message SQL both storages share: history and backlog queries, and reading message rows.

The SQLite store (``sqlite3``) and the PostgreSQL storage (psycopg) ask the same questions of
the same ``messages`` and ``inbox`` tables; only the spelling of a named parameter differs
(``:name`` against ``%(name)s``). Each builder here takes a :data:`Param`, the function that
spells one, and returns ``(sql, args)`` with ``args`` keyed by name, which both drivers take.
Nothing here opens a connection: the storages execute the result and keep their own
transaction rules.

Queries that must differ stay with their engine: recent contacts pick a conversation's latest
message with SQLite's bare-column rule there and with ``DISTINCT ON`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mimc_rx.server.storage.records import Contact, MessageKind, StoredMessage

__all__ = [
    "MESSAGE_COLUMNS",
    "Param",
    "backlog_query",
    "contact_from_row",
    "history_query",
    "message_from_row",
    "psycopg_param",
    "sqlite_param",
]

Param = Callable[[str], str]
"""Spells the named parameter ``name`` in a driver's SQL."""


def sqlite_param(name: str) -> str:
    """``sqlite3``'s named style: ``:name``."""
    return f":{name}"


def psycopg_param(name: str) -> str:
    """psycopg's named style: ``%(name)s``."""
    return f"%({name})s"


MESSAGE_COLUMNS = (
    "m.id, m.kind, m.app_id, m.packet_id, m.package, m.from_uuid, m.from_account, "
    "m.from_resource, m.to_uuid, m.to_account, m.to_resource, m.topic_id, m.payload, "
    "m.biz_type, m.ts, m.sender_seq"
)
"""The columns of a ``messages m`` row, in :func:`message_from_row`'s order (``seq`` follows)."""


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    """A :data:`MESSAGE_COLUMNS` row followed by the reader's ``seq``."""
    return StoredMessage(
        id=row[0],
        kind=MessageKind(row[1]),
        app_id=row[2],
        packet_id=row[3],
        package=row[4],
        from_uuid=row[5],
        from_account=row[6],
        from_resource=row[7],
        to_uuid=row[8],
        to_account=row[9],
        to_resource=row[10],
        topic_id=row[11],
        payload=bytes(row[12]),
        biz_type=row[13],
        ts=row[14],
        sender_seq=row[15],
        seq=row[16],
    )


def contact_from_row(row: Sequence[Any]) -> Contact:
    """A recent-contacts row: :data:`MESSAGE_COLUMNS`, then ``seq``, ``kind`` and ``peer``."""
    return Contact(kind=MessageKind(row[17]), peer=row[18], last=message_from_row(row[:17]))


def backlog_query(p: Param, uuid: int, after: int, limit: int) -> tuple[str, dict[str, Any]]:
    """A user's stored messages above sequence ``after``, oldest first, at most ``limit``."""
    sql = (
        f"SELECT {MESSAGE_COLUMNS}, i.seq FROM inbox i JOIN messages m ON m.id = i.message_id "
        f"WHERE i.uuid = {p('uuid')} AND i.seq > {p('after')} ORDER BY i.seq LIMIT {p('limit')}"
    )
    return sql, {"uuid": uuid, "after": after, "limit": limit}


def history_query(
    p: Param,
    me: int,
    *,
    other: int | None,
    topic_id: int | None,
    from_ts: int | None,
    to_ts: int | None,
    start_seq: int | None,
    stop_seq: int | None,
    limit: int,
    newest: bool,
) -> tuple[str, dict[str, Any]]:
    """One conversation seen from ``me`` (``Store.history``'s meaning), ``seq`` in ``me``'s space.

    The rows come oldest first, or with ``newest`` newest first (the ``limit`` newest: the
    caller reverses them). A group's conversation is the messages ``me`` sent to it or has an
    inbox row for; a P2P one, every message between ``me`` and ``other``. Ranges are half-open.
    """
    args: dict[str, Any] = {"me": me, "limit": limit}
    where: list[str] = []
    if topic_id is not None:
        # Sequences start at 1, so a joined inbox row is exactly a non-null i.seq.
        where.append(
            f"m.kind = {int(MessageKind.P2T)} AND m.topic_id = {p('topic')} "
            f"AND (m.from_uuid = {p('me')} OR i.seq IS NOT NULL)"
        )
        args["topic"] = topic_id
    else:
        where.append(
            f"m.kind = {int(MessageKind.P2P)} "
            f"AND ((m.from_uuid = {p('me')} AND m.to_uuid = {p('other')}) "
            f"OR (m.from_uuid = {p('other')} AND m.to_uuid = {p('me')}))"
        )
        args["other"] = other
    if from_ts is not None:
        where.append(f"m.ts >= {p('from_ts')}")
        args["from_ts"] = from_ts
    if to_ts is not None:
        where.append(f"m.ts < {p('to_ts')}")
        args["to_ts"] = to_ts
    inner = (
        f"SELECT {MESSAGE_COLUMNS}, CASE WHEN m.from_uuid = {p('me')} THEN m.sender_seq "
        "ELSE i.seq END AS seq FROM messages m "
        f"LEFT JOIN inbox i ON i.uuid = {p('me')} AND i.message_id = m.id "
        f"WHERE {' AND '.join(where)}"
    )
    outer: list[str] = []
    if start_seq is not None:
        outer.append(f"h.seq >= {p('start_seq')}")
        args["start_seq"] = start_seq
    if stop_seq is not None:
        outer.append(f"h.seq < {p('stop_seq')}")
        args["stop_seq"] = stop_seq
    order = "DESC" if newest else "ASC"
    sql = f"SELECT * FROM ({inner}) AS h"
    if outer:
        sql += f" WHERE {' AND '.join(outer)}"
    sql += f" ORDER BY h.ts {order}, h.id {order} LIMIT {p('limit')}"
    return sql, args
