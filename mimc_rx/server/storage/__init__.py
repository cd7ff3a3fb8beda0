"""Durable state of the local server, in SQLite: one :class:`Store` over one connection.

The modules, each one concept:

* ``schema``: the DDL and its migrations, the schema version, opening a database;
* ``records``: the dataclasses the store hands out (``User``, ``Topic``, ``StoredMessage``...)
  and how fresh ids, security keys and sequences are made (the sequence rule is there);
* ``store``: :class:`Store`, its commit/rollback lifecycle (the theory of operation is there),
  users, tokens, cursors, messages, history and recent contacts;
* ``groups``: normal and unlimited groups, which :class:`Store` inherits from ``GroupStore``;
* ``queries``: the message SQL the SQLite and PostgreSQL storages share (history, backlog)
  and how a message row is read, for either driver's parameter style.

Everything the rest of the server uses is importable from here.
"""

from __future__ import annotations

from mimc_rx.server.storage.records import (
    Contact,
    MessageKind,
    StoredMessage,
    Topic,
    UCTopic,
    User,
    new_security_key,
    next_sequence,
    random_id,
)
from mimc_rx.server.storage.store import Store

__all__ = [
    "Contact",
    "MessageKind",
    "Store",
    "StoredMessage",
    "Topic",
    "UCTopic",
    "User",
    "new_security_key",
    "next_sequence",
    "random_id",
]
