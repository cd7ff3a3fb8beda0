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

Ordering and durability follow the hub's pipeline (:mod:`mimc_rx.server.hub`): the pushed
messages are intents of one ``Storage.write_tick`` (:meth:`Hub.write_now`), after what the hub
queued in this tick (lower sequences), and go out only once committed, routed exactly as the
gateway's. A failed write stores none of the push and raises before anything is delivered.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Sequence

from mimc_rx.protocol.events import P2PReceived, P2TReceived, PacketId, Peer
from mimc_rx.server.config import AppConfig
from mimc_rx.server.hub import Hub
from mimc_rx.server.storage import Topic, User
from mimc_rx.server.storage.interface import Intent, P2PWrite, P2TWrite

__all__ = ["new_packet_id", "push_p2p", "push_p2t"]

log = logging.getLogger(__name__)

_PREFIX = f"push{secrets.token_hex(4)}-"
_counter = itertools.count(1)


def new_packet_id() -> PacketId:
    """A packet id for a pushed message: a random string plus a counter, as the manual says."""
    return PacketId(f"{_PREFIX}{next(_counter)}")


async def push_p2p(
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
        Exception: the storage could not write; nothing was delivered.
    """
    now_ms = hub.config.now_ms()
    peer = _peer(app, sender, from_resource)
    entries: list[tuple[P2PReceived | P2TReceived, Intent]] = []
    for recipient in recipients:
        packet_id = new_packet_id()
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
        intent = P2PWrite(
            app=app,
            packet_id=packet_id,
            sender=sender,
            from_resource=from_resource,
            to_account=recipient.account,
            payload=payload,
            biz_type=biz_type,
            ts=now_ms,
        )
        entries.append((sent, intent))
    await hub.write_now(entries)
    return [event.packet_id for event, _ in entries]


async def push_p2t(
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
        Exception: the storage could not write; nothing was delivered.
    """
    for topic in topics:
        if sender.uuid not in topic.members:
            raise ValueError(f"{sender.account} is not a member of topic {topic.topic_id}")
    now_ms = hub.config.now_ms()
    peer = _peer(app, sender, from_resource)
    entries: list[tuple[P2PReceived | P2TReceived, Intent]] = []
    for topic in topics:
        packet_id = new_packet_id()
        sent = P2TReceived(
            packet_id=packet_id,
            package=app.package,
            sender=peer,
            topic_id=topic.topic_id,
            payload=payload,
            is_store=True,
            biz_type=biz_type,
        )
        intent = P2TWrite(
            app=app,
            packet_id=packet_id,
            sender=sender,
            from_resource=from_resource,
            topic_id=topic.topic_id,
            payload=payload,
            biz_type=biz_type,
            ts=now_ms,
        )
        entries.append((sent, intent))
    await hub.write_now(entries)
    return [event.packet_id for event, _ in entries]


def _peer(app: AppConfig, sender: User, from_resource: str) -> Peer:
    return Peer(
        app_id=app.app_id, app_account=sender.account, uuid=sender.uuid, resource=from_resource
    )
