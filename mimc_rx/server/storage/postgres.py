"""The scale-out storage: PostgreSQL through psycopg 3's async pool, shared by server processes.

Theory of operation
-------------------
:class:`PostgresStorage` implements :class:`~mimc_rx.server.storage.interface.Storage` with the
meaning of the SQLite store, for several server processes writing one database at once:

* **Nothing several processes write is cached.** Sequences live in ``users.last_seq`` and
  ``uc_topics.last_seq`` and are allocated inside the writing transaction under the row lock
  (:mod:`mimc_rx.server.storage.pg_tick` explains why commit order is then sequence order per
  user, so a cursor never skips a sequence that commits later). Groups, memberships, cursors and
  tokens are read from the database each time. Only a user's identity (uuid, app, account,
  security key: never changed once created) is cached per process.
* **Commit before ack.** :meth:`PostgresStorage.write_tick` commits before it returns; the hub
  acks and delivers only then. A tick that fails (deadlock, serialisation failure, a lost
  connection) is retried whole a few times and otherwise raises with nothing stored.
* **Durability** is PostgreSQL's: a commit with the server's default ``synchronous_commit=on``
  survives the death of any server process and of the database server.
* Recipients nobody used yet are created before the tick's transaction, in a short transaction
  of their own (``ON CONFLICT DO NOTHING``: two processes creating one account agree on one
  identity). A user without messages is harmless if the tick then fails.

The group methods are in :mod:`mimc_rx.server.storage.pg_groups`; the schema and its migrations
in :mod:`mimc_rx.server.storage.pg_schema`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.interface import CursorWrite, Intent, Outcome, P2PWrite
from mimc_rx.server.storage.pg_groups import PostgresGroups
from mimc_rx.server.storage.pg_schema import migrate
from mimc_rx.server.storage.pg_tick import apply_cursor_writes, run_tick
from mimc_rx.server.storage.queries import (
    MESSAGE_COLUMNS,
    backlog_query,
    contact_from_row,
    history_query,
    message_from_row,
    psycopg_param,
)
from mimc_rx.server.storage.records import (
    Contact,
    MessageKind,
    StoredMessage,
    User,
    check_identity,
    new_security_key,
    random_id,
)

__all__ = ["PostgresStorage"]

log = logging.getLogger(__name__)

# As in the SQLite store: stale tokens are kept a while so BIND can say "token-expired".
_EXPIRED_TOKEN_GRACE = 7 * 24 * 3600.0
_TICK_ATTEMPTS = 5
_RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)

_USER_COLUMNS = "uuid, app_id, account, security_key, last_seq"


def _user(row: Sequence[Any]) -> User:
    return User(uuid=row[0], app_id=row[1], account=row[2], security_key=row[3], last_seq=row[4])


class PostgresStorage(PostgresGroups):
    """PostgreSQL storage for one server process among several (see the module docstring).

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        min_size: connections the pool keeps open.
        max_size: connections the pool may open; one tick uses one connection, REST calls
            others, so a handful per process is plenty.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self.dsn = dsn
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            open=False,
            name="mimc-rx",
        )
        self._by_uuid: dict[int, User] = {}
        self._by_account: dict[tuple[int, str], User] = {}

    def __repr__(self) -> str:
        return f"<PostgresStorage {self._pool.name} max_size={self._pool.max_size}>"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the pool and apply the migrations the database lacks."""
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn:
            before = await migrate(conn)
        log.debug("postgres storage open (schema was version %d)", before)

    async def close(self) -> None:
        """Close every connection (each write committed already)."""
        await self._pool.close()

    # ------------------------------------------------------------------ the tick

    async def write_tick(self, intents: Sequence[Intent]) -> list[Outcome]:
        """Apply a tick's intents in one transaction; committed when this returns.

        See :mod:`mimc_rx.server.storage.pg_tick` for the ordering argument.
        """
        if not intents:
            return []
        wanted = {(i.app.app_id, i.to_account) for i in intents if isinstance(i, P2PWrite)}
        recipients = await self._ensure_accounts(wanted)
        for attempt in range(1, _TICK_ATTEMPTS + 1):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await run_tick(conn, intents, recipients)
            except _RETRIED as exc:
                if attempt == _TICK_ATTEMPTS:
                    raise
                log.info("tick retried (%s, attempt %d)", type(exc).__name__, attempt)
                await asyncio.sleep(0.001 * attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ apps, users, tokens

    async def save_app(self, app: AppConfig) -> None:
        """Record a configured app (informational)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO apps VALUES (%s, %s, %s, %s) ON CONFLICT (app_id) DO UPDATE "
                "SET app_key = EXCLUDED.app_key, app_secret = EXCLUDED.app_secret, "
                "package = EXCLUDED.package",
                (app.app_id, app.app_key, app.app_secret, app.package),
            )

    def _remember(self, user: User) -> User:
        self._by_uuid[user.uuid] = user
        self._by_account[(user.app_id, user.account)] = user
        return user

    async def find_user(self, app_id: int, account: str) -> User | None:
        """The user of that account, or None."""
        if (cached := self._by_account.get((app_id, account))) is not None:
            return cached
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE app_id = %s AND account = %s",
                (app_id, account),
            )
            row = await cur.fetchone()
        return None if row is None else self._remember(_user(row))

    async def user(self, uuid: int) -> User | None:
        """The user of that uuid, or None."""
        return (await self.users([uuid])).get(uuid)

    async def users(self, uuids: Iterable[int]) -> dict[int, User]:
        """The known users among ``uuids``."""
        wanted = set(uuids)
        found = {u: self._by_uuid[u] for u in wanted if u in self._by_uuid}
        missing = sorted(wanted - found.keys())
        if missing:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE uuid = ANY(%s)", (missing,)
                )
                for row in await cur.fetchall():
                    found[row[0]] = self._remember(_user(row))
        return found

    async def count_users(self) -> int:
        """How many users exist."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM users")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def ensure_user(self, app_id: int, account: str) -> User:
        """The user of that account, created if needed (one identity wins a race)."""
        return (await self._ensure_accounts({(app_id, account)}))[(app_id, account)]

    async def _ensure_accounts(self, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], User]:
        found = {k: self._by_account[k] for k in wanted if k in self._by_account}
        missing = sorted(wanted - found.keys())
        while missing:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE (app_id, account) IN "
                    "(SELECT * FROM unnest(%s::bigint[], %s::text[]))",
                    ([a for a, _ in missing], [n for _, n in missing]),
                )
                for row in await cur.fetchall():
                    user = self._remember(_user(row))
                    found[(user.app_id, user.account)] = user
                fresh = [k for k in missing if k not in found]
                if fresh:
                    # Sorted by (app, account): two processes inserting the same new accounts
                    # wait on each other in one order.
                    cur = await conn.execute(
                        f"INSERT INTO users ({_USER_COLUMNS}) SELECT *, 0 FROM unnest("
                        "%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
                        f"ON CONFLICT DO NOTHING RETURNING {_USER_COLUMNS}",
                        (
                            [random_id() for _ in fresh],
                            [a for a, _ in fresh],
                            [n for _, n in fresh],
                            [new_security_key() for _ in fresh],
                        ),
                    )
                    for row in await cur.fetchall():
                        user = self._remember(_user(row))
                        found[(user.app_id, user.account)] = user
            # Whatever is still missing lost a race (read it next round) or drew a taken uuid.
            missing = [k for k in missing if k not in found]
        return found

    async def import_user(
        self, app_id: int, account: str, *, uuid: int, security_key: str, last_seq: int = 0
    ) -> User:
        """Create a user with a chosen identity (``Store.import_user``'s rules)."""
        check_identity(uuid, security_key, last_seq)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE (app_id = %s AND account = %s) "
                "OR uuid = %s FOR UPDATE",
                (app_id, account, uuid),
            )
            rows = await cur.fetchall()
            if rows:
                existing = _user(rows[0])
                if (
                    len(rows) > 1
                    or existing.uuid != uuid
                    or (existing.app_id, existing.account) != (app_id, account)
                    or existing.security_key != security_key
                ):
                    raise ValueError(
                        f"account {account!r} or uuid {uuid} already belongs to another identity"
                    )
                cur = await conn.execute(
                    "UPDATE users SET last_seq = GREATEST(last_seq, %s) WHERE uuid = %s "
                    f"RETURNING {_USER_COLUMNS}",
                    (last_seq, uuid),
                )
            else:
                cur = await conn.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
                    f"RETURNING {_USER_COLUMNS}",
                    (uuid, app_id, account, security_key, last_seq),
                )
            row = await cur.fetchone()
        assert row is not None
        return self._remember(_user(row))

    async def add_token(self, token: str, uuid: int, expires_at: float) -> None:
        """Remember an issued token."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tokens VALUES (%s, %s, %s) ON CONFLICT (token) DO UPDATE "
                "SET uuid = EXCLUDED.uuid, expires_at = EXCLUDED.expires_at",
                (token, uuid, expires_at),
            )

    async def lookup_token(self, token: str) -> tuple[User, float] | None:
        """The user a token was issued to and its expiry time, or None."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT u.uuid, u.app_id, u.account, u.security_key, u.last_seq, t.expires_at "
                "FROM tokens t JOIN users u ON u.uuid = t.uuid WHERE t.token = %s",
                (token,),
            )
            row = await cur.fetchone()
        return None if row is None else (self._remember(_user(row)), float(row[5]))

    async def prune_tokens(self, now: float) -> int:
        """Forget tokens that expired long ago; returns how many."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM tokens WHERE expires_at < %s", (now - _EXPIRED_TOKEN_GRACE,)
            )
            return cur.rowcount

    # ------------------------------------------------------------------ cursors, backlog

    async def cursor(self, uuid: int, resource: str) -> int | None:
        """The highest sequence this resource acknowledged, or None if never seen."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT acked_seq FROM cursors WHERE uuid = %s AND resource = %s",
                (uuid, resource),
            )
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def open_cursor(self, uuid: int, resource: str) -> int:
        """The cursor of a resource, created at its first login at the user's highest one."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO cursors (uuid, resource, acked_seq) SELECT %s, %s, "
                "COALESCE((SELECT MAX(acked_seq) FROM cursors WHERE uuid = %s), 0) "
                "ON CONFLICT DO NOTHING",
                (uuid, resource, uuid),
            )
            cur = await conn.execute(
                "SELECT acked_seq FROM cursors WHERE uuid = %s AND resource = %s",
                (uuid, resource),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def advance_cursor(self, uuid: int, resource: str, sequence: int) -> int:
        """Record an ack outside a tick; never backwards, never beyond the last issued."""
        async with self._pool.connection() as conn, conn.transaction():
            moved = await apply_cursor_writes(
                conn, [CursorWrite(uuid=uuid, resource=resource, sequence=sequence)]
            )
        return moved[(uuid, resource)]

    async def backlog_summary(self, uuid: int, after: int) -> tuple[int, int, int]:
        """(count, min sequence, max sequence) of a user's stored messages above ``after``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT COUNT(*), MIN(seq), MAX(seq) FROM inbox WHERE uuid = %s AND seq > %s",
                (uuid, after),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1] or 0), int(row[2] or 0)

    async def backlog(self, uuid: int, after: int, limit: int) -> list[StoredMessage]:
        """A user's stored messages above sequence ``after``, oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(*backlog_query(psycopg_param, uuid, after, limit))
            return [message_from_row(r) for r in await cur.fetchall()]

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
        """One conversation seen from ``me``, oldest first (``Store.history``'s meaning)."""
        sql, args = history_query(
            psycopg_param,
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
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, args)
            rows = [message_from_row(r) for r in await cur.fetchall()]
        if newest:
            rows.reverse()
        return rows

    async def recent_contacts(self, me: int, *, since_ts: int) -> list[Contact]:
        """``me``'s conversations with a message at or after ``since_ts``, newest first.

        ``Store.recent_contacts``'s meaning; the latest message of each conversation is picked
        with ``DISTINCT ON`` (SQLite's bare-column rule has no PostgreSQL twin).
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH x AS (SELECT id, sender_seq AS seq FROM messages WHERE from_uuid = %(me)s "
                "UNION ALL SELECT message_id AS id, seq FROM inbox WHERE uuid = %(me)s), "
                "c AS (SELECT DISTINCT ON (kind, peer) m.kind AS kind, "
                "CASE WHEN m.kind = 2 THEN m.topic_id WHEN m.from_uuid = %(me)s THEN m.to_uuid "
                "ELSE m.from_uuid END AS peer, m.id AS last_id, x.seq AS seq "
                "FROM x JOIN messages m ON m.id = x.id WHERE m.ts >= %(since)s "
                "ORDER BY kind, peer, m.id DESC) "
                f"SELECT {MESSAGE_COLUMNS}, c.seq, c.kind, c.peer FROM c "
                "JOIN messages m ON m.id = c.last_id "
                "LEFT JOIN contact_hidden h ON h.uuid = %(me)s AND h.kind = c.kind "
                "AND h.peer = c.peer WHERE h.upto_id IS NULL OR c.last_id > h.upto_id "
                "ORDER BY m.ts DESC, m.id DESC",
                {"me": me, "since": since_ts},
            )
            rows = await cur.fetchall()
        return [contact_from_row(row) for row in rows]

    async def hide_contact(self, me: int, kind: MessageKind, peer: int) -> None:
        """Hide a conversation until a message newer than the newest stored now (8.5).

        With several writers, a message whose id was allocated before this call but committed
        after it is hidden too (message ids are not commit-ordered); the next one shows it.
        """
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO contact_hidden VALUES (%s, %s, %s, "
                "(SELECT COALESCE(MAX(id), 0) FROM messages)) "
                "ON CONFLICT (uuid, kind, peer) DO UPDATE SET upto_id = EXCLUDED.upto_id",
                (me, int(kind), peer),
            )

    async def prune_dedup(self, before_ts: int) -> int:
        """Forget ``(sender, resource, packet id)`` records older than ``before_ts`` (ms)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM sent_packets WHERE ts < %s", (before_ts,))
            return cur.rowcount
