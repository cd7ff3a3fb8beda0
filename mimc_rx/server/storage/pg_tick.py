"""One tick of the hub as one PostgreSQL transaction: sequences, messages, dedup, cursors.

Theory of operation
-------------------
Several server processes write to the same database. What must hold for every user U:

    the order in which U's inbox rows become visible (commit order) is the order of their
    sequences.

Otherwise a client could receive and acknowledge sequence 12 (committed by process B) while
sequence 11 (allocated earlier by process A) is still uncommitted; its cursor moves to 12, and
11, committed a moment later, sits below the cursor for good: a lost message (issue 10's loss,
across processes).

It holds because a sequence of U is only ever allocated while holding **U's row lock**
(``SELECT ... FOR UPDATE`` on ``users``), which is kept until the transaction ends. A second
transaction that needs a sequence of U blocks on the lock until the first has committed (or
rolled back), and only then reads ``last_seq`` (under READ COMMITTED the locking read returns
the newest committed row version), so it allocates above everything the first one allocated, and
commits after it. A reader that sees sequence s of U therefore sees every lower sequence that
will ever exist, and a cursor can never pass over one that commits later. A rolled-back
allocation only leaves a gap, never a late arrival.

Deadlocks are avoided by taking every user lock of the tick in one statement in uuid order
(``ORDER BY uuid FOR UPDATE``), then the unlimited-group locks in topic order, and the cursor
rows in key order; unknown recipients are created before the transaction, in a short one of their
own, so the tick itself inserts no user row. (PostgreSQL would detect a deadlock anyway and the
caller retries the tick; the order makes that a non-event.)

Dedup: the ``(sender, resource, packet id)`` record is read after the sender's row lock is held,
so two processes receiving the same resent packet at once are serialised by that lock; the
second sees the first one's committed record and answers with its original ack.

Allocation itself is done in Python on the locked ``last_seq`` values (``records.next_sequence``,
the SQLite rule) and written back with one ``UPDATE`` per tick: the same effect as one
``UPDATE users SET last_seq = GREATEST(last_seq + 1, now_us) RETURNING`` per message, at one
round trip per tick instead of one per recipient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from mimc_rx.server.storage.records import MessageKind, User, next_sequence

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["apply_cursor_writes", "run_tick"]

_MESSAGE_INSERT = (
    "INSERT INTO messages (id, kind, app_id, packet_id, package, from_uuid, from_account, "
    "from_resource, to_uuid, to_account, to_resource, topic_id, payload, biz_type, ts, "
    "sender_seq) SELECT * FROM unnest(%s::bigint[], %s::smallint[], %s::bigint[], %s::text[], "
    "%s::text[], %s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], "
    "%s::bigint[], %s::bytea[], %s::text[], %s::bigint[], %s::bigint[])"
)


@dataclass(slots=True)
class _Rows:
    """The rows a tick inserts, column by column (for ``unnest``); message ids come last."""

    messages: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(16)])
    inbox: list[tuple[int, int, int]] = field(default_factory=list)
    """(uuid, seq, message index)"""
    sent: list[tuple[int, str, str, int, int, int]] = field(default_factory=list)
    """(sender uuid, sender resource, packet id, message index, sender seq, ts)"""

    def add_message(self, *values: Any) -> int:
        index = len(self.messages[0])
        self.messages[0].append(index)  # replaced by the real id before the insert
        for column, value in zip(self.messages[1:], values, strict=True):
            column.append(value)
        return index


async def _fetch(conn: AsyncConnection[Any], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, args)
    return list(await cur.fetchall())


async def run_tick(
    conn: AsyncConnection[Any], intents: Sequence[Intent], recipients: dict[tuple[int, str], User]
) -> list[Outcome]:
    """Apply ``intents`` on ``conn``, inside the caller's open transaction.

    Args:
        conn: a connection with a transaction open; the caller commits.
        intents: the tick's intents.
        recipients: every P2P recipient ``(app id, account)`` already resolved to its user.
    """
    p2t_ids = sorted({i.topic_id for i in intents if isinstance(i, P2TWrite)})
    uc_ids = sorted({i.topic_id for i in intents if isinstance(i, UCWrite)})
    topics: dict[int, tuple[int, tuple[int, ...]]] = {}
    if p2t_ids:
        for topic_id, app_id, members in await _fetch(
            conn,
            "SELECT t.topic_id, t.app_id, COALESCE(array_agg(m.uuid ORDER BY m.pos) "
            "FILTER (WHERE m.uuid IS NOT NULL), '{}') FROM topics t "
            "LEFT JOIN topic_members m ON m.topic_id = t.topic_id "
            "WHERE t.topic_id = ANY(%s) GROUP BY t.topic_id, t.app_id",
            p2t_ids,
        ):
            topics[topic_id] = (app_id, tuple(members))

    # Every user whose sequence space this tick touches, locked in uuid order.
    touched: set[int] = set()
    for intent in intents:
        if isinstance(intent, P2PWrite):
            touched.add(intent.sender.uuid)
            touched.add(recipients[(intent.app.app_id, intent.to_account)].uuid)
        elif isinstance(intent, P2TWrite):
            found = topics.get(intent.topic_id)
            if found is not None and intent.sender.uuid in found[1]:
                touched.update(found[1])
    last: dict[int, int] = {}
    if touched:
        rows = await _fetch(
            conn,
            "SELECT uuid, last_seq FROM users WHERE uuid = ANY(%s) ORDER BY uuid FOR UPDATE",
            sorted(touched),
        )
        last = {uuid: seq for uuid, seq in rows}
    before = dict(last)

    uc: dict[int, tuple[int, int, tuple[int, ...]]] = {}
    if uc_ids:
        locked = await _fetch(
            conn,
            "SELECT topic_id, app_id, last_seq FROM uc_topics WHERE topic_id = ANY(%s) "
            "ORDER BY topic_id FOR UPDATE",
            uc_ids,
        )
        members_of: dict[int, tuple[int, ...]] = {
            topic_id: tuple(members)
            for topic_id, members in await _fetch(
                conn,
                "SELECT topic_id, array_agg(uuid ORDER BY pos) FROM uc_members "
                "WHERE topic_id = ANY(%s) GROUP BY topic_id",
                uc_ids,
            )
        }
        uc = {t: (app, seq, members_of.get(t, ())) for t, app, seq in locked}
    uc_before = {t: v[1] for t, v in uc.items()}

    # Dedup: read after the senders' locks are held (see the module docstring).
    keys = [
        (i.sender.uuid, i.from_resource, i.packet_id)
        for i in intents
        if isinstance(i, P2PWrite | P2TWrite) and i.persist
    ]
    originals: dict[tuple[int, str, str], tuple[int, int, int]] = {}
    if keys:
        for sender, resource, packet_id, sender_seq, ts, to_uuid in await _fetch(
            conn,
            "SELECT s.sender_uuid, s.sender_resource, s.packet_id, s.sender_seq, s.ts, m.to_uuid "
            "FROM sent_packets s JOIN messages m ON m.id = s.message_id "
            "WHERE (s.sender_uuid, s.sender_resource, s.packet_id) IN "
            "(SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]))",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        ):
            originals[(sender, resource, packet_id)] = (sender_seq, ts, to_uuid)

    def allocate(uuid: int, ts: int) -> int:
        seq = last[uuid] = next_sequence(last[uuid], ts)
        return seq

    rows_out = _Rows()
    outcomes: list[Outcome | None] = []
    cursor_writes: list[tuple[int, CursorWrite]] = []
    for intent in intents:
        match intent:
            case P2PWrite():
                outcomes.append(_p2p(intent, recipients, originals, allocate, rows_out))
            case P2TWrite():
                outcomes.append(_p2t(intent, topics, originals, allocate, rows_out))
            case UCWrite():
                found_uc = uc.get(intent.topic_id)
                if found_uc is None or found_uc[0] != intent.app_id:
                    outcomes.append(UCWritten(sequence=0, refusal=Refusal.NO_TOPIC))
                elif intent.sender_uuid not in found_uc[2]:
                    outcomes.append(UCWritten(sequence=0, refusal=Refusal.NOT_MEMBER))
                else:
                    seq = next_sequence(found_uc[1], intent.ts)
                    uc[intent.topic_id] = (found_uc[0], seq, found_uc[2])
                    outcomes.append(UCWritten(sequence=seq, members=found_uc[2]))
            case CursorWrite():
                cursor_writes.append((len(outcomes), intent))
                outcomes.append(None)

    await _insert(conn, rows_out)
    changed = [(u, s) for u, s in last.items() if s != before.get(u)]
    if changed:
        await conn.execute(
            "UPDATE users SET last_seq = u.s FROM unnest(%s::bigint[], %s::bigint[]) AS u(id, s) "
            "WHERE users.uuid = u.id",
            ([u for u, _ in changed], [s for _, s in changed]),
        )
    uc_changed = [(t, v[1]) for t, v in uc.items() if v[1] != uc_before.get(t)]
    if uc_changed:
        await conn.execute(
            "UPDATE uc_topics SET last_seq = u.s FROM unnest(%s::bigint[], %s::bigint[]) "
            "AS u(id, s) WHERE uc_topics.topic_id = u.id",
            ([t for t, _ in uc_changed], [s for _, s in uc_changed]),
        )
    if cursor_writes:
        moved = await apply_cursor_writes(conn, [w for _, w in cursor_writes])
        for index, write in cursor_writes:
            key = (write.uuid, write.resource)
            acked = moved[key]
            outcomes[index] = CursorMoved(uuid=write.uuid, resource=write.resource, acked=acked)
    return [o for o in outcomes if o is not None]


def _p2p(
    intent: P2PWrite,
    recipients: dict[tuple[int, str], User],
    originals: dict[tuple[int, str, str], tuple[int, int, int]],
    allocate: Callable[[int, int], int],
    rows: _Rows,
) -> P2PWritten:
    recipient = recipients[(intent.app.app_id, intent.to_account)]
    key = (intent.sender.uuid, intent.from_resource, intent.packet_id)
    if intent.persist and key in originals:
        sender_seq, ts, _ = originals[key]
        return P2PWritten(
            recipient=recipient, sender_seq=sender_seq, recipient_seq=0, ts=ts, duplicate=True
        )
    sender_seq = allocate(intent.sender.uuid, intent.ts)
    to_self = recipient.uuid == intent.sender.uuid
    seq = sender_seq if to_self else allocate(recipient.uuid, intent.ts)
    if intent.persist:
        index = rows.add_message(
            int(MessageKind.P2P),
            intent.app.app_id,
            intent.packet_id,
            intent.app.package,
            intent.sender.uuid,
            intent.sender.account,
            intent.from_resource,
            recipient.uuid,
            recipient.account,
            intent.to_resource,
            0,
            intent.payload,
            intent.biz_type,
            intent.ts,
            sender_seq,
        )
        rows.inbox.append((recipient.uuid, seq, index))
        rows.sent.append(
            (
                intent.sender.uuid,
                intent.from_resource,
                intent.packet_id,
                index,
                sender_seq,
                intent.ts,
            )
        )
        # A second copy in the same tick is a duplicate of this one.
        originals[key] = (sender_seq, intent.ts, recipient.uuid)
    return P2PWritten(recipient=recipient, sender_seq=sender_seq, recipient_seq=seq, ts=intent.ts)


def _p2t(
    intent: P2TWrite,
    topics: dict[int, tuple[int, tuple[int, ...]]],
    originals: dict[tuple[int, str, str], tuple[int, int, int]],
    allocate: Callable[[int, int], int],
    rows: _Rows,
) -> P2TWritten:
    found = topics.get(intent.topic_id)
    if found is None or found[0] != intent.app.app_id:
        return P2TWritten(sender_seq=0, ts=intent.ts, refusal=Refusal.NO_TOPIC)
    members = found[1]
    if intent.sender.uuid not in members:
        return P2TWritten(sender_seq=0, ts=intent.ts, refusal=Refusal.NOT_MEMBER)
    key = (intent.sender.uuid, intent.from_resource, intent.packet_id)
    if intent.persist and key in originals:
        sender_seq, ts, _ = originals[key]
        return P2TWritten(sender_seq=sender_seq, ts=ts, duplicate=True)
    sender_seq = allocate(intent.sender.uuid, intent.ts)
    index = -1
    if intent.persist:
        index = rows.add_message(
            int(MessageKind.P2T),
            intent.app.app_id,
            intent.packet_id,
            intent.app.package,
            intent.sender.uuid,
            intent.sender.account,
            intent.from_resource,
            0,
            "",
            "",
            intent.topic_id,
            intent.payload,
            intent.biz_type,
            intent.ts,
            sender_seq,
        )
        rows.sent.append(
            (
                intent.sender.uuid,
                intent.from_resource,
                intent.packet_id,
                index,
                sender_seq,
                intent.ts,
            )
        )
        originals[key] = (sender_seq, intent.ts, 0)
    sequences: list[tuple[int, int]] = []
    for member in members:
        if member == intent.sender.uuid:
            seq = sender_seq
        else:
            seq = allocate(member, intent.ts)
            if intent.persist:
                rows.inbox.append((member, seq, index))
        sequences.append((member, seq))
    return P2TWritten(sender_seq=sender_seq, ts=intent.ts, sequences=tuple(sequences))


async def _insert(conn: AsyncConnection[Any], rows: _Rows) -> None:
    count = len(rows.messages[0])
    if not count:
        return
    ids = [
        r[0]
        for r in await _fetch(
            conn,
            "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, %s)",
            count,
        )
    ]
    rows.messages[0] = ids
    await conn.execute(_MESSAGE_INSERT, rows.messages)
    if rows.inbox:
        await conn.execute(
            "INSERT INTO inbox (uuid, seq, message_id) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])",
            (
                [u for u, _, _ in rows.inbox],
                [s for _, s, _ in rows.inbox],
                [ids[i] for _, _, i in rows.inbox],
            ),
        )
    await conn.execute(
        "INSERT INTO sent_packets "
        "(sender_uuid, sender_resource, packet_id, message_id, sender_seq, ts) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], "
        "%s::bigint[])",
        (
            [r[0] for r in rows.sent],
            [r[1] for r in rows.sent],
            [r[2] for r in rows.sent],
            [ids[r[3]] for r in rows.sent],
            [r[4] for r in rows.sent],
            [r[5] for r in rows.sent],
        ),
    )


async def apply_cursor_writes(
    conn: AsyncConnection[Any], writes: Sequence[CursorWrite]
) -> dict[tuple[int, str], int]:
    """Move cursors (never backwards, never above the user's ``last_seq``); the values after.

    Several writes to one key keep the highest. Keys are written in sorted order (no deadlock
    between two ticks acking the same cursors). An unknown user's cursor stays absent (0).
    """
    wanted: dict[tuple[int, str], int] = {}
    for w in writes:
        key = (w.uuid, w.resource)
        wanted[key] = max(w.sequence, wanted.get(key, w.sequence))
    ordered = sorted(wanted.items())
    result: dict[tuple[int, str], int] = {}
    for uuid, resource, acked in await _fetch(
        conn,
        "INSERT INTO cursors (uuid, resource, acked_seq) "
        "SELECT w.uuid, w.res, LEAST(w.seq, u.last_seq) "
        "FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) "
        "WITH ORDINALITY AS w(uuid, res, seq, o) "
        "JOIN users u ON u.uuid = w.uuid WHERE LEAST(w.seq, u.last_seq) > 0 ORDER BY w.o "
        "ON CONFLICT (uuid, resource) DO UPDATE "
        "SET acked_seq = GREATEST(cursors.acked_seq, EXCLUDED.acked_seq) "
        "RETURNING uuid, resource, acked_seq",
        [k[0] for k, _ in ordered],
        [k[1] for k, _ in ordered],
        [s for _, s in ordered],
    ):
        result[(uuid, resource)] = acked
    missing = [k for k in wanted if k not in result]
    if missing:
        for uuid, resource, acked in await _fetch(
            conn,
            "SELECT c.uuid, c.resource, c.acked_seq FROM cursors c "
            "JOIN unnest(%s::bigint[], %s::text[]) AS w(uuid, res) "
            "ON c.uuid = w.uuid AND c.resource = w.res",
            [k[0] for k in missing],
            [k[1] for k in missing],
        ):
            result[(uuid, resource)] = acked
    return {k: result.get(k, 0) for k in wanted}
