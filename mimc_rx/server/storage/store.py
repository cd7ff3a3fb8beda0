"""Durable state of the local server, in SQLite (the standard library's ``sqlite3``).

Theory of operation
-------------------
The server runs on one event loop, so the store is plain synchronous code with one connection.
Small, hot state (users and their sequence counters, tokens, delivery cursors, groups and their
members) lives in memory as well as on disk: it is loaded once at open and written through.
Messages are only on disk; reads (backlog, history) query SQLite, which sees the writes of the
open transaction.

Writes are **not** committed one by one. The caller (the hub) groups the work of one event-loop
tick and calls :meth:`Store.commit` once, *before* it sends the acks and deliveries of that
tick. An acked stored message has therefore been committed. With ``synchronous=NORMAL`` in WAL
mode a commit survives the death of the server process (kill -9), not necessarily a power loss
(``ServerConfig.sync_full`` gives that, at the price of an fsync per commit).

Sender dedup
------------
Each stored message leaves a ``packet_dedup`` row keyed by (sender uuid, resource, packet id)
with its sender sequence and timestamp, written in the same commit as the message.
:meth:`Store.find_sent` finds it, so a packet sent again (a client's outbox after a lost ack,
even across a server restart) gets its first ack back instead of a second copy.
:meth:`Store.prune_sent` forgets the rows older than the retention (the hub's sweep calls it).

Nearly every stored packet is new, so :meth:`Store.find_sent` first asks an in-memory *negative
filter*: the hashes of the (sender uuid, packet id) of every ``packet_dedup`` row, loaded at
open and added to as packets are recorded (before their rows are written). A key whose hash is
not in the filter has no row and is answered without SQL; a hash in it (a real resend, or a rare
collision) is looked up as before. The filter must be a superset of the table, not exact: an
``INSERT OR IGNORE`` leaves a hash in it harmlessly; pruning removes a hash only when every row
under it is older than the cutoff (each hash keeps the newest timestamp recorded under it); a
rollback reloads it, since it may undo a prune. It holds ``Store.SENT_FILTER_LIMIT`` hashes at
most (about 100 bytes each); beyond that it is dropped and every lookup goes to SQLite again,
until a prune leaves few enough rows to reload it. Like the other caches, this relies on the
store being the only writer of its file. tests/server/test_dedup_filter.py checks every answer
against the SQL lookup alone.

Delivery state
--------------
A stored message gets one *inbox* row per recipient user, keyed by the recipient's sequence.
Each (uuid, resource) has a *cursor*: the highest sequence that resource acknowledged. Its backlog
is every inbox row above the cursor, so whatever was delivered but not acked is delivered again on
the next login (at-least-once). A resource seen for the first time starts at the highest cursor of
the user's other resources (or 0), so a new device gets what no device has received yet.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from typing import Any

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.groups import GroupStore
from mimc_rx.server.storage.queries import (
    MESSAGE_COLUMNS,
    backlog_query,
    contact_from_row,
    history_query,
    message_from_row,
    sqlite_param,
)
from mimc_rx.server.storage.records import (
    Contact,
    MessageKind,
    StoredMessage,
    Topic,
    User,
    check_identity,
    new_security_key,
    next_sequence,
    random_id,
)
from mimc_rx.server.storage.schema import open_database

__all__ = ["Store"]

log = logging.getLogger(__name__)

# Stale tokens are kept a while after expiry so BIND can say "token-expired" rather than
# "invalid-token" (docs/protocol.md 4.2: the TCP SDKs refetch on either).
_EXPIRED_TOKEN_GRACE = 7 * 24 * 3600.0


class Store(GroupStore):
    """The server's state: an SQLite file (or ``":memory:"``) plus in-memory indexes.

    Users, tokens, sequences, cursors, messages and recent contacts are here; the group methods
    (``create_topic``, ``uc_join``, ``next_uc_sequence``...) and ``topics`` / ``uc_topics``
    come from :class:`~mimc_rx.server.storage.groups.GroupStore`, on the same connection.

    Args:
        path: the database file, created if missing; ``":memory:"`` for a throw-away store.
        sync_full: fsync every commit (see the module docstring).
    """

    SENT_FILTER_LIMIT: int = 500_000
    """The most dedup keys the in-memory negative filter of :meth:`find_sent` holds."""

    def __init__(self, path: str | os.PathLike[str], *, sync_full: bool = False) -> None:
        self.path = os.fspath(path)
        super().__init__(open_database(self.path, sync_full=sync_full))
        self.users: dict[int, User] = {}
        self._by_account: dict[tuple[int, str], User] = {}
        self._tokens: dict[str, tuple[int, float]] = {}
        self._cursors: dict[tuple[int, str], int] = {}
        self._dirty_users: set[int] = set()
        self._dirty_cursors: set[tuple[int, str]] = set()
        # Message and inbox rows are buffered and written with executemany (one call per tick
        # instead of one per message); every read of those tables writes the buffer first.
        self._pending_messages: list[tuple[Any, ...]] = []
        self._pending_inbox: list[tuple[int, int, int]] = []
        # (sender uuid, resource, packet id) -> (message id, sender seq, ts), written with the
        # messages.
        self._pending_sent: dict[tuple[int, str, str], tuple[int, int, int]] = {}
        self._next_message_id = 1
        # The negative filter of find_sent (module docstring): hash((sender uuid, packet id))
        # -> the newest ts recorded under it, in insertion order (about the order of ts).
        self._sent_keys: dict[int, int] | None = None
        self._load()
        self._load_sent_keys()

    # ------------------------------------------------------------------ lifecycle

    def _load(self) -> None:
        # The groups are loaded by GroupStore (at open, and again by _resync_groups).
        db = self._db
        for uuid, app_id, account, key, last_seq in db.execute(
            "SELECT uuid, app_id, account, security_key, last_seq FROM users"
        ):
            user = User(
                uuid=uuid, app_id=app_id, account=account, security_key=key, last_seq=last_seq
            )
            self.users[uuid] = user
            self._by_account[(app_id, account)] = user
        for token, uuid, expires_at in db.execute("SELECT token, uuid, expires_at FROM tokens"):
            self._tokens[token] = (uuid, expires_at)
        for uuid, resource, acked in db.execute("SELECT uuid, resource, acked_seq FROM cursors"):
            self._cursors[(uuid, resource)] = acked
        (last_id,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
        self._next_message_id = last_id + 1
        log.debug(
            "store %s: %d users, %d topics, %d unlimited topics",
            self.path,
            len(self.users),
            len(self.topics),
            len(self.uc_topics),
        )

    def _load_sent_keys(self) -> None:
        db = self._db
        (count,) = db.execute("SELECT COUNT(*) FROM packet_dedup").fetchone()
        if count > self.SENT_FILTER_LIMIT:
            self._sent_keys = None
            log.info("store %s: %d dedup records, looked up in SQLite", self.path, count)
            return
        keys: dict[int, int] = {}
        for uuid, packet_id, ts in db.execute(
            "SELECT sender_uuid, packet_id, ts FROM packet_dedup ORDER BY ts"
        ):
            h = hash((uuid, packet_id))
            keys.pop(h, None)  # keep the newest ts, at the end of the order
            keys[h] = ts
        self._sent_keys = keys

    def _note_sent(self, uuid: int, packet_id: str, ts: int) -> None:
        """Add a recorded packet's key to the negative filter of :meth:`find_sent`."""
        keys = self._sent_keys
        if keys is None:
            return
        h = hash((uuid, packet_id))
        old = keys.pop(h, None)
        keys[h] = ts if old is None or old < ts else old
        if len(keys) > self.SENT_FILTER_LIMIT:
            self._sent_keys = None
            log.info(
                "store %s: over %d dedup records in memory; SQLite lookups from now on",
                self.path,
                self.SENT_FILTER_LIMIT,
            )

    def _write_pending(self) -> None:
        db = self._db
        if self._pending_messages:
            db.executemany(
                "INSERT INTO messages (id, kind, app_id, packet_id, package, from_uuid, "
                "from_account, from_resource, to_uuid, to_account, to_resource, topic_id, "
                "payload, biz_type, ts, sender_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._pending_messages,
            )
            self._pending_messages.clear()
        if self._pending_inbox:
            db.executemany("INSERT INTO inbox VALUES (?, ?, ?)", self._pending_inbox)
            self._pending_inbox.clear()
        if self._pending_sent:
            db.executemany(
                "INSERT OR IGNORE INTO packet_dedup VALUES (?, ?, ?, ?, ?, ?)",
                [(u, r, p, m, s, t) for (u, r, p), (m, s, t) in self._pending_sent.items()],
            )
            self._pending_sent.clear()

    def commit(self) -> None:
        """Write the buffered rows, counters and cursors, then commit the open transaction."""
        db = self._db
        self._write_pending()
        if self._dirty_users:
            users = self.users
            db.executemany(
                "UPDATE users SET last_seq = ? WHERE uuid = ?",
                [(users[u].last_seq, u) for u in self._dirty_users],
            )
            self._dirty_users.clear()
        if self._dirty_cursors:
            cursors = self._cursors
            db.executemany(
                "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)",
                [(u, r, cursors[(u, r)]) for (u, r) in self._dirty_cursors],
            )
            self._dirty_cursors.clear()
        self._write_groups()
        db.commit()

    def rollback(self) -> None:
        """Abandon the open transaction, the buffered rows and what they created in memory.

        Called after a failed commit. The caches are brought back in line with the database:
        users, tokens, cursors, groups and memberships made since the last commit disappear,
        while the objects that survive keep their identity (the hub holds references to them).
        Sequence counters keep their higher in-memory value, so a sequence handed out in the
        failed tick (never acked) may be skipped but is never issued twice.
        """
        self._pending_messages.clear()
        self._pending_inbox.clear()
        self._pending_sent.clear()
        self._dirty_users.clear()
        self._dirty_cursors.clear()
        self._dirty_uc.clear()
        self._db.rollback()
        self._resync()
        self._load_sent_keys()  # a prune of the failed tick is undone too

    def _resync(self) -> None:
        users = self.users
        self.users, self._by_account, self._tokens, self._cursors = {}, {}, {}, {}
        self._resync_groups()
        self._load()
        for uuid, fresh in self.users.items():
            if (user := users.get(uuid)) is not None:
                user.last_seq = max(user.last_seq, fresh.last_seq)
                self.users[uuid] = self._by_account[(user.app_id, user.account)] = user

    def close(self) -> None:
        """Commit what is pending and close the database."""
        try:
            self.commit()
        finally:
            self._db.close()

    # ------------------------------------------------------------------ apps, users, tokens

    def save_app(self, app: AppConfig) -> None:
        """Record a configured app (informational: the running config is authoritative)."""
        self._db.execute(
            "INSERT OR REPLACE INTO apps VALUES (?, ?, ?, ?)",
            (app.app_id, app.app_key, app.app_secret, app.package),
        )

    def find_user(self, app_id: int, account: str) -> User | None:
        """The user of that account, or None if nobody ever used it."""
        return self._by_account.get((app_id, account))

    def ensure_user(self, app_id: int, account: str) -> User:
        """The user of that account, created with a fresh uuid and security key if needed."""
        user = self._by_account.get((app_id, account))
        if user is not None:
            return user
        uuid = random_id()
        while uuid in self.users:
            uuid = random_id()
        key = new_security_key()
        user = User(uuid=uuid, app_id=app_id, account=account, security_key=key)
        self._db.execute("INSERT INTO users VALUES (?, ?, ?, ?, 0)", (uuid, app_id, account, key))
        self.users[uuid] = user
        self._by_account[(app_id, account)] = user
        return user

    def import_user(
        self, app_id: int, account: str, *, uuid: int, security_key: str, last_seq: int = 0
    ) -> User:
        """Create a user with a chosen identity (seeding, tests, migration from another server).

        The token service makes identities at random (:meth:`ensure_user`); this gives them. A
        user that already exists with exactly this uuid and key is returned as it is (its
        sequence counter is raised to ``last_seq`` if lower), so seeding twice is harmless.

        Args:
            app_id: the user's app.
            account: the app account.
            uuid: the MIMC uuid (``miUserId``), a positive 63-bit integer.
            security_key: ``miUserSecurityKey`` as base64 text (it keys RC4 and ends the BIND
                signature's base string, docs/protocol.md 5, 6.3).
            last_seq: the last sequence of the user's space already used elsewhere; the next
                message gets a sequence above it (6.15).

        Raises:
            ValueError: the uuid or key is invalid, or conflicts with an existing user.
        """
        check_identity(uuid, security_key, last_seq)
        existing = self._by_account.get((app_id, account))
        other = self.users.get(uuid)
        if existing is not None or other is not None:
            if existing is None or existing is not other or existing.security_key != security_key:
                raise ValueError(
                    f"account {account!r} or uuid {uuid} already belongs to another identity"
                )
            if existing.last_seq < last_seq:
                existing.last_seq = last_seq
                self._dirty_users.add(uuid)
            return existing
        user = User(
            uuid=uuid, app_id=app_id, account=account, security_key=security_key, last_seq=last_seq
        )
        self._db.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
            (uuid, app_id, account, security_key, last_seq),
        )
        self.users[uuid] = user
        self._by_account[(app_id, account)] = user
        return user

    def add_token(self, token: str, uuid: int, expires_at: float) -> None:
        """Remember an issued token."""
        self._tokens[token] = (uuid, expires_at)
        self._db.execute(
            "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?)", (token, uuid, expires_at)
        )

    def lookup_token(self, token: str) -> tuple[User, float] | None:
        """The user a token was issued to and its expiry time, or None if unknown."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        user = self.users.get(entry[0])
        return None if user is None else (user, entry[1])

    def prune_tokens(self, now: float) -> int:
        """Forget tokens that expired long ago; returns how many."""
        cutoff = now - _EXPIRED_TOKEN_GRACE
        stale = [t for t, (_, exp) in self._tokens.items() if exp < cutoff]
        for token in stale:
            del self._tokens[token]
        if stale:
            self._db.execute("DELETE FROM tokens WHERE expires_at < ?", (cutoff,))
        return len(stale)

    # ------------------------------------------------------------------ sequences, cursors

    def next_user_sequence(self, user: User, now_ms: int) -> int:
        """Allocate the next sequence of a user's space (P2P and P2T share it, 6.15)."""
        seq = user.last_seq = next_sequence(user.last_seq, now_ms)
        self._dirty_users.add(user.uuid)
        return seq

    def cursor(self, uuid: int, resource: str) -> int | None:
        """The highest sequence this resource acknowledged, or None if never seen."""
        return self._cursors.get((uuid, resource))

    def open_cursor(self, uuid: int, resource: str) -> int:
        """The cursor of a resource, created at its first login (see the module docstring)."""
        key = (uuid, resource)
        acked = self._cursors.get(key)
        if acked is None:
            acked = max((v for (u, _), v in self._cursors.items() if u == uuid), default=0)
            self._cursors[key] = acked
            self._dirty_cursors.add(key)
        return acked

    def advance_cursor(self, uuid: int, resource: str, sequence: int) -> int:
        """Record a SEQUENCE_ACK; never beyond what was issued, never backwards."""
        key = (uuid, resource)
        user = self.users.get(uuid)
        if user is None:
            return 0
        # A client may not ack sequences that do not exist yet: that would hide future messages.
        sequence = min(sequence, user.last_seq)
        current = self._cursors.get(key, 0)
        if sequence > current:
            self._cursors[key] = sequence
            self._dirty_cursors.add(key)
            return sequence
        return current

    # ------------------------------------------------------------------ messages

    def add_message(
        self,
        *,
        kind: MessageKind,
        app_id: int,
        packet_id: str,
        package: str,
        sender: User,
        from_resource: str,
        payload: bytes,
        biz_type: str,
        ts: int,
        sender_seq: int,
        to_user: User | None = None,
        to_resource: str = "",
        topic_id: int = 0,
    ) -> int:
        """Persist a stored (``isStore``) message; returns its row id for :meth:`add_inbox`."""
        row_id = self._next_message_id
        self._next_message_id = row_id + 1
        self._pending_messages.append(
            (
                row_id,
                int(kind),
                app_id,
                packet_id,
                package,
                sender.uuid,
                sender.account,
                from_resource,
                to_user.uuid if to_user else 0,
                to_user.account if to_user else "",
                to_resource,
                topic_id,
                payload,
                biz_type,
                ts,
                sender_seq,
            )
        )
        return row_id

    def find_sent(
        self, sender_uuid: int, packet_id: str, resource: str | None = None
    ) -> tuple[int, int] | None:
        """The (sender sequence, timestamp) a stored packet of this sender got, or None.

        ``resource`` is the sending resource (the hub always gives it: two devices of one
        account may make the same web packet id); None matches any resource. Covers the rows
        of the open tick too (they are not written yet). A packet id never recorded costs no
        SQL (the negative filter of the module docstring).
        """
        keys = self._sent_keys
        if keys is not None and hash((sender_uuid, packet_id)) not in keys:
            return None
        if resource is not None:
            pending = self._pending_sent.get((sender_uuid, resource, packet_id))
        else:
            pending = next(
                (
                    v
                    for (u, _, p), v in self._pending_sent.items()
                    if (u, p) == (sender_uuid, packet_id)
                ),
                None,
            )
        if pending is not None:
            return pending[1], pending[2]
        sql = "SELECT sender_seq, ts FROM packet_dedup WHERE sender_uuid = ? AND packet_id = ?"
        args: tuple[Any, ...] = (sender_uuid, packet_id)
        if resource is not None:
            sql += " AND sender_resource = ?"
            args += (resource,)
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else (row[0], row[1])

    def prune_sent(self, before_ts: int) -> int:
        """Forget the dedup rows of packets stored before ``before_ts`` (ms); how many."""
        self._write_pending()
        count: int = self._db.execute(
            "DELETE FROM packet_dedup WHERE ts < ?", (before_ts,)
        ).rowcount
        keys = self._sent_keys
        if keys is None:
            if count:
                self._load_sent_keys()  # complete again once few enough rows are left
        else:
            # Oldest first; a hash out of order (a clock step back) waits for a later prune.
            stale = list(itertools.takewhile(lambda h: keys[h] < before_ts, keys))
            for h in stale:
                del keys[h]
        return count

    def add_inbox(self, entries: Iterable[tuple[int, int, int]]) -> None:
        """Add (recipient uuid, recipient sequence, message id) rows."""
        self._pending_inbox.extend(entries)

    def record_p2p(
        self,
        *,
        app: AppConfig,
        packet_id: str,
        sender: User,
        from_resource: str,
        recipient: User,
        payload: bytes,
        biz_type: str,
        ts: int,
        persist: bool = True,
        to_resource: str = "",
    ) -> tuple[int, int]:
        """Sequence a P2P message in both users' spaces (6.15) and, if ``persist``, store it.

        Returns ``(sender_seq, recipient_seq)``; they are the same when a user writes to itself.
        """
        sender_seq = self.next_user_sequence(sender, ts)
        seq = sender_seq if recipient is sender else self.next_user_sequence(recipient, ts)
        if persist:
            message_id = self.add_message(
                kind=MessageKind.P2P,
                app_id=app.app_id,
                packet_id=packet_id,
                package=app.package,
                sender=sender,
                from_resource=from_resource,
                payload=payload,
                biz_type=biz_type,
                ts=ts,
                sender_seq=sender_seq,
                to_user=recipient,
                to_resource=to_resource,
            )
            self._pending_inbox.append((recipient.uuid, seq, message_id))
            self._pending_sent[(sender.uuid, from_resource, packet_id)] = (
                message_id,
                sender_seq,
                ts,
            )
            self._note_sent(sender.uuid, packet_id, ts)
        return sender_seq, seq

    def record_p2t(
        self,
        *,
        app: AppConfig,
        packet_id: str,
        sender: User,
        from_resource: str,
        topic: Topic,
        payload: bytes,
        biz_type: str,
        ts: int,
        persist: bool = True,
    ) -> tuple[int, list[tuple[int, int]]]:
        """Sequence a group message in every member's space and, if ``persist``, store it.

        Returns the sender's sequence and ``(member uuid, member sequence)`` for every member,
        the sender included (with the sender's sequence), in membership order.
        """
        sender_seq = self.next_user_sequence(sender, ts)
        message_id = 0
        if persist:
            message_id = self.add_message(
                kind=MessageKind.P2T,
                app_id=app.app_id,
                packet_id=packet_id,
                package=app.package,
                sender=sender,
                from_resource=from_resource,
                payload=payload,
                biz_type=biz_type,
                ts=ts,
                sender_seq=sender_seq,
                topic_id=topic.topic_id,
            )
            self._pending_sent[(sender.uuid, from_resource, packet_id)] = (
                message_id,
                sender_seq,
                ts,
            )
            self._note_sent(sender.uuid, packet_id, ts)
        users, inbox = self.users, self._pending_inbox
        sequences: list[tuple[int, int]] = []
        for member in topic.members:
            if member == sender.uuid:
                seq = sender_seq
            else:
                seq = self.next_user_sequence(users[member], ts)
                if persist:
                    inbox.append((member, seq, message_id))
            sequences.append((member, seq))
        return sender_seq, sequences

    def backlog_summary(self, uuid: int, after: int) -> tuple[int, int, int]:
        """(count, min sequence, max sequence) of a user's stored messages above ``after``."""
        self._write_pending()
        count, low, high = self._db.execute(
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM inbox WHERE uuid = ? AND seq > ?",
            (uuid, after),
        ).fetchone()
        return count, low or 0, high or 0

    def backlog(self, uuid: int, after: int, limit: int) -> list[StoredMessage]:
        """A user's stored messages above sequence ``after``, oldest first."""
        self._write_pending()
        rows = self._db.execute(*backlog_query(sqlite_param, uuid, after, limit)).fetchall()
        return [message_from_row(r) for r in rows]

    def history(
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
        """Stored messages of one conversation seen from user ``me``, oldest first.

        Exactly one of ``other`` (a P2P conversation with that user) and ``topic_id`` (a group,
        limited to the messages ``me`` sent or received) is given. ``seq`` is in ``me``'s space.
        Ranges are half-open ``[from, to)``. With ``newest``, the ``limit`` newest rows are kept.
        """
        self._write_pending()
        sql, args = history_query(
            sqlite_param,
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
        rows = [message_from_row(r) for r in self._db.execute(sql, args)]
        if newest:
            rows.reverse()
        return rows

    # ------------------------------------------------------------------ recent contacts

    def recent_contacts(self, me: int, *, since_ts: int) -> list[Contact]:
        """User ``me``'s conversations with a stored message at or after ``since_ts``.

        One entry per P2P peer and per group, carrying the conversation's latest message with
        ``seq`` in ``me``'s space; newest first. A P2P conversation is every message ``me`` sent
        to or received from the peer; a group's, the messages ``me`` sent to it or received from
        it (as in :meth:`history`). Conversations hidden with :meth:`hide_contact` are left out
        until a newer message arrives.
        """
        self._write_pending()
        rows = self._db.execute(
            f"SELECT {MESSAGE_COLUMNS}, c.seq, c.kind, c.peer FROM ("
            # SQLite takes the bare column seq from the row that holds MAX(m.id).
            "SELECT m.kind AS kind, CASE WHEN m.kind = 2 THEN m.topic_id "
            "WHEN m.from_uuid = :me THEN m.to_uuid ELSE m.from_uuid END AS peer, "
            "MAX(m.id) AS last_id, x.seq AS seq "
            "FROM (SELECT id, sender_seq AS seq FROM messages WHERE from_uuid = :me "
            "UNION ALL SELECT message_id AS id, seq FROM inbox WHERE uuid = :me) AS x "
            "JOIN messages m ON m.id = x.id WHERE m.ts >= :since GROUP BY 1, 2) AS c "
            "JOIN messages m ON m.id = c.last_id "
            "LEFT JOIN contact_hidden h ON h.uuid = :me AND h.kind = c.kind AND h.peer = c.peer "
            "WHERE h.upto_id IS NULL OR c.last_id > h.upto_id "
            "ORDER BY m.ts DESC, m.id DESC",
            {"me": me, "since": since_ts},
        ).fetchall()
        return [contact_from_row(row) for row in rows]

    def hide_contact(self, me: int, kind: MessageKind, peer: int) -> None:
        """Take a conversation off ``me``'s recent contacts until its next message (8.5)."""
        self._db.execute(
            "INSERT OR REPLACE INTO contact_hidden VALUES (?, ?, ?, ?)",
            (me, int(kind), peer, self._next_message_id - 1),
        )
