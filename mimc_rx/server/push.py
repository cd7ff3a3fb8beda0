"""Server-originated messages: what the push API (protocol.md 8.5) sends on an account's behalf.

An app's backend may send a P2P or group message *as* one of its accounts without a websocket
(``POST /api/push/...``, :mod:`mimc_rx.server.rest_push`). Receivers cannot tell it from a
message that account's client sent: it is stored, sequenced and delivered exactly like one
(6.6, 6.7), by the same rules as the hub's:

* P2P: one stored message per recipient, delivered to every bound session of the recipient; the
  sender's sessions get no copy.
* P2T: one stored message per group, delivered to every session of every member except the
  session ``(sender, from_resource)`` that nominally sent it; the sender's other resources get
  it under the sender's sequence. Only members may send.
* Every push is stored (``isStore`` true): offline recipients get it at login, and it is in
  history and in the recent contacts.

Ordering and durability follow the hub's pipeline (:mod:`mimc_rx.server.hub`): the hub first
flushes what it queued in this tick (lower sequences, its own commit), then the pushed messages
are written and committed, and only then do they go out, one COMPOUND per receiving session. A
failed commit rolls back the push alone and raises before anything is delivered. This module only
uses the hub's public surface, so the hub's hot path stays as it is.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Sequence

from mimc_rx.protocol.events import Delivery, P2PReceived, P2TReceived, PacketId, Peer
from mimc_rx.protocol.server import delivery_of
from mimc_rx.server.config import AppConfig
from mimc_rx.server.hub import ClientLink, Hub, compound_chunks
from mimc_rx.server.storage import Topic, User

__all__ = ["new_packet_id", "push_p2p", "push_p2t"]

log = logging.getLogger(__name__)

_PREFIX = f"push{secrets.token_hex(4)}-"
_counter = itertools.count(1)


def new_packet_id() -> PacketId:
    """A packet id for a pushed message: a random string plus a counter, as the manual says."""
    return PacketId(f"{_PREFIX}{next(_counter)}")


def push_p2p(
    hub: Hub,
    *,
    app: AppConfig,
    sender: User,
    from_resource: str,
    recipients: Sequence[User],
    payload: bytes,
    biz_type: str = "",
) -> list[PacketId]:
    """Send ``payload`` from ``sender`` to each recipient as a P2P message; one id each.

    Raises:
        Exception: the store could not commit; nothing was delivered.
    """
    hub.flush()
    store, now_ms = hub.store, hub.config.now_ms()
    peer = _peer(app, sender, from_resource)
    ids: list[PacketId] = []
    out: dict[ClientLink, list[Delivery]] = {}
    for recipient in recipients:
        packet_id = new_packet_id()
        _, seq = store.record_p2p(
            app=app,
            packet_id=packet_id,
            sender=sender,
            from_resource=from_resource,
            recipient=recipient,
            payload=payload,
            biz_type=biz_type,
            ts=now_ms,
        )
        sent = P2PReceived(
            packet_id=packet_id,
            package=app.package,
            sender=peer,
            to_account=recipient.account,
            to_app_id=app.app_id,
            payload=payload,
            is_store=True,
            biz_type=biz_type,
        )
        item = delivery_of(sent, sequence=seq, timestamp=now_ms, to_uuid=recipient.uuid)
        for conn in hub.sessions_of(recipient.uuid):
            if hub.admit(conn, item, stored=True):  # not past a backlog being pulled
                out.setdefault(conn, []).append(item)
        ids.append(packet_id)
    _commit_and_deliver(hub, out)
    return ids


def push_p2t(
    hub: Hub,
    *,
    app: AppConfig,
    sender: User,
    from_resource: str,
    topics: Sequence[Topic],
    payload: bytes,
    biz_type: str = "",
) -> list[PacketId]:
    """Send ``payload`` from ``sender`` to each group; one id per group.

    Raises:
        ValueError: the sender is not a member of one of the groups (nothing is sent).
        Exception: the store could not commit; nothing was delivered.
    """
    for topic in topics:
        if sender.uuid not in topic.members:
            raise ValueError(f"{sender.account} is not a member of topic {topic.topic_id}")
    hub.flush()
    store, now_ms = hub.store, hub.config.now_ms()
    peer = _peer(app, sender, from_resource)
    ids: list[PacketId] = []
    out: dict[ClientLink, list[Delivery]] = {}
    for topic in topics:
        packet_id = new_packet_id()
        _, sequences = store.record_p2t(
            app=app,
            packet_id=packet_id,
            sender=sender,
            from_resource=from_resource,
            topic=topic,
            payload=payload,
            biz_type=biz_type,
            ts=now_ms,
        )
        sent = P2TReceived(
            packet_id=packet_id,
            package=app.package,
            sender=peer,
            topic_id=topic.topic_id,
            payload=payload,
            is_store=True,
            biz_type=biz_type,
        )
        for member, seq in sequences:
            item = delivery_of(sent, sequence=seq, timestamp=now_ms)
            for conn in hub.sessions_of(member):
                own = member == sender.uuid
                # A sender's own copy has no inbox row: it comes with no pull (stored=False).
                if (not own or conn.resource != from_resource) and hub.admit(
                    conn, item, stored=not own
                ):
                    out.setdefault(conn, []).append(item)
        ids.append(packet_id)
    _commit_and_deliver(hub, out)
    return ids


def _peer(app: AppConfig, sender: User, from_resource: str) -> Peer:
    return Peer(
        app_id=app.app_id, app_account=sender.account, uuid=sender.uuid, resource=from_resource
    )


def _commit_and_deliver(hub: Hub, out: dict[ClientLink, list[Delivery]]) -> None:
    try:
        hub.store.commit()
    except Exception:
        hub.store.rollback()
        raise
    count, budget = hub.config.compound_size, hub.config.max_compound_bytes
    for conn, items in out.items():
        try:
            for chunk in compound_chunks(items, count, budget):
                if conn.can_send:
                    conn.session.deliver(chunk, max_sequence=chunk[-1].sequence)
            conn.pump()
        except Exception:
            # As in the hub: a failure of one connection must not cost the others.
            log.exception("%s: push delivery failed; closing", conn)
            conn.close(1011, "internal error")
