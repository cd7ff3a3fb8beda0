"""The SQLite schema of the local server's store, and opening a database with it.

The DDL is idempotent (``CREATE ... IF NOT EXISTS``), so opening an existing file brings it up to
date in place; the few migrations an older file needs are statements of the same script.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "SCHEMA_VERSION", "open_database"]

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
CREATE TABLE IF NOT EXISTS sent_packets (
    sender_uuid INTEGER NOT NULL, packet_id TEXT NOT NULL, message_id INTEGER NOT NULL,
    sender_seq INTEGER NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (sender_uuid, packet_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sent_packets_ts ON sent_packets (ts);
CREATE TABLE IF NOT EXISTS contact_hidden (
    uuid INTEGER NOT NULL, kind INTEGER NOT NULL, peer INTEGER NOT NULL, upto_id INTEGER NOT NULL,
    PRIMARY KEY (uuid, kind, peer)) WITHOUT ROWID;
"""
"""The whole schema, run at every open."""

# sent_packets is the sender dedup record (docs/server.md, delivery guarantees): the first ack
# of each stored (sender, packet id), kept ServerConfig.dedup_retention; files made before it
# get it empty when they are opened.
# messages_group serves group history only (its queries say kind = 2), so one-to-one messages,
# the bulk of the traffic, skip it: one B-tree insert and a few WAL pages fewer per tick.
# Files made before it have the full index messages_p2t, replaced when they are opened.


def open_database(path: str, *, sync_full: bool) -> sqlite3.Connection:
    """Connect to ``path`` in WAL mode and bring its schema up to date.

    Called once per store, before anything is read.

    Args:
        path: the database file, created if missing; ``":memory:"`` for a throw-away database.
        sync_full: ``synchronous=FULL`` (a commit survives power loss) instead of ``NORMAL``
            (a commit survives the death of the process).
    """
    db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if sync_full else 'NORMAL'}")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    db.commit()
    return db
