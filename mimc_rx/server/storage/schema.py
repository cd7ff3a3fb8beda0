"""The SQLite schema of the local server's store, and opening a database with it.

The DDL is idempotent (``CREATE ... IF NOT EXISTS``), so opening an existing file brings it up to
date in place; the few migrations an older file needs are statements of the same script.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["CHECKPOINT_PERIOD", "SCHEMA", "SCHEMA_VERSION", "WalCheckpointer", "open_database"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Recorded in the ``meta`` table when a file is created."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    app_id INTEGER PRIMARY KEY, app_key TEXT NOT NULL, app_secret TEXT NOT NULL,
    package TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    uuid INTEGER PRIMARY KEY, app_id INTEGER NOT NULL, account TEXT NOT NULL,
    security_key TEXT NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (app_id, account));
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, uuid INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    uuid INTEGER NOT NULL, resource TEXT NOT NULL, acked_seq INTEGER NOT NULL,
    PRIMARY KEY (uuid, resource)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, app_id INTEGER NOT NULL,
    packet_id TEXT NOT NULL, package TEXT NOT NULL,
    from_uuid INTEGER NOT NULL, from_account TEXT NOT NULL, from_resource TEXT NOT NULL,
    to_uuid INTEGER NOT NULL, to_account TEXT NOT NULL, to_resource TEXT NOT NULL,
    topic_id INTEGER NOT NULL, payload BLOB NOT NULL, biz_type TEXT NOT NULL,
    ts INTEGER NOT NULL, sender_seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_p2p ON messages (from_uuid, to_uuid, ts);
DROP INDEX IF EXISTS messages_p2t;
CREATE INDEX IF NOT EXISTS messages_group ON messages (topic_id, ts) WHERE kind = 2;
CREATE TABLE IF NOT EXISTS inbox (
    uuid INTEGER NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL,
    PRIMARY KEY (uuid, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_message ON inbox (uuid, message_id);
CREATE TABLE IF NOT EXISTS topics (
    topic_id INTEGER PRIMARY KEY, app_id INTEGER NOT NULL, name TEXT NOT NULL,
    owner_uuid INTEGER NOT NULL, bulletin TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topic_members (
    topic_id INTEGER NOT NULL, uuid INTEGER NOT NULL, joined_at INTEGER NOT NULL,
    PRIMARY KEY (topic_id, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uc_topics (
    topic_id INTEGER PRIMARY KEY, app_id INTEGER NOT NULL, name TEXT NOT NULL,
    owner_uuid INTEGER NOT NULL, last_seq INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uc_members (
    topic_id INTEGER NOT NULL, uuid INTEGER NOT NULL,
    PRIMARY KEY (topic_id, uuid)) WITHOUT ROWID;
DROP TABLE IF EXISTS sent_packets;
CREATE TABLE IF NOT EXISTS packet_dedup (
    sender_uuid INTEGER NOT NULL, sender_resource TEXT NOT NULL, packet_id TEXT NOT NULL,
    message_id INTEGER NOT NULL, sender_seq INTEGER NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (sender_uuid, packet_id, sender_resource)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS packet_dedup_ts ON packet_dedup (ts);
CREATE TABLE IF NOT EXISTS contact_hidden (
    uuid INTEGER NOT NULL, kind INTEGER NOT NULL, peer INTEGER NOT NULL, upto_id INTEGER NOT NULL,
    PRIMARY KEY (uuid, kind, peer)) WITHOUT ROWID;
"""
"""The whole schema, run at every open."""

# packet_dedup is the sender dedup record (docs/server.md, delivery guarantees): the first ack
# of each stored (sender, resource, packet id), kept ServerConfig.dedup_retention; files made
# before it get it empty when they are opened. The resource is part of the key because web
# packet ids ("web" + ms + a counter, docs/protocol.md 6.2) of two devices of one account can
# be equal; an outbox resends from its own resource. sent_packets was its first layout.
# messages_group serves group history only (its queries say kind = 2), so one-to-one messages,
# the bulk of the traffic, skip it: one B-tree insert and a few WAL pages fewer per tick.
# Files made before it have the full index messages_p2t, replaced when they are opened.


CHECKPOINT_PERIOD = 0.5
"""Seconds between two WAL checkpoints of the checkpoint thread (see ``open_database``)."""

# The automatic checkpoint is only a safety net for a checkpoint thread that cannot keep up:
# 16,384 pages (64 MiB of WAL at 4 KiB a page) instead of SQLite's 1,000.
_AUTOCHECKPOINT_PAGES = 16384


class _CheckpointedConnection(sqlite3.Connection):
    """The store's connection; closing it first stops its checkpoint thread."""

    checkpointer: WalCheckpointer | None = None

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        super().close()


class WalCheckpointer:
    """A daemon thread that checkpoints a WAL database every ``period`` seconds.

    On its own connection, with ``PRAGMA wal_checkpoint(PASSIVE)``: it copies committed pages
    into the database file and fsyncs it without taking a lock that writers wait for, so the
    event loop's commits never do that work. sqlite3 releases the GIL while SQLite runs.
    """

    def __init__(self, path: str, period: float = CHECKPOINT_PERIOD) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._period = period
        self._stopped = threading.Event()
        self.checkpoints = 0
        """Checkpoints run so far (for tests and curious operators)."""
        self._thread = threading.Thread(
            target=self._run, name=f"mimc-rx wal checkpoint {path}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self._period):
                try:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # a busy or full disk: the next period retries
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._db.close()

    def stop(self) -> None:
        """Stop the thread and close its connection (waits for a checkpoint in progress)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def open_database(path: str, *, sync_full: bool) -> sqlite3.Connection:
    """Connect to ``path`` in WAL mode and bring its schema up to date.

    Called once per store, before anything is read.

    Checkpoints run in a :class:`WalCheckpointer` thread, not in commits. With SQLite's
    default (an automatic checkpoint inside the commit that takes the WAL past 1,000 pages) a
    commit now and then copied the WAL into the database and fsynced it on the event loop:
    the 8-19 ms stalls at the tail of issue 11's fixed-rate latency. ``synchronous=NORMAL``
    in WAL mode fsyncs nothing at commit, only at checkpoints: a committed transaction
    survives the death of the process, and a power loss may take the last ones back
    (``sync_full`` fsyncs the WAL at every commit instead). A throw-away ``":memory:"``
    database has no WAL and no thread.

    Args:
        path: the database file, created if missing; ``":memory:"`` for a throw-away database.
        sync_full: ``synchronous=FULL`` (a commit survives power loss) instead of ``NORMAL``
            (a commit survives the death of the process).
    """
    db = sqlite3.connect(
        path, isolation_level="DEFERRED", check_same_thread=False, factory=_CheckpointedConnection
    )
    (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
    db.execute(f"PRAGMA synchronous={'FULL' if sync_full else 'NORMAL'}")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    db.commit()
    if str(mode).lower() == "wal":
        db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        db.checkpointer = WalCheckpointer(path)
    return db
