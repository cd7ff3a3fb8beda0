"""The bodies of the broker's DELIVER and FANOUT signals: one message handed to another node.

Only messages that are *not* in an inbox travel this way (``isStore=false`` messages, a sender's
own copy of a group message, unlimited-group messages, a DISMISS): a stored message is read from
the database by the node that holds the connection (a LOOK signal), so its order on the
connection is the order of the sequences (docs/scale-out.md).

The body is JSON: ids as integers, the payload in base64. Both ends are our own processes, but a
body that does not parse is refused with :class:`ValueError`, never an exception of another kind.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mimc_rx.protocol.events import Delivery, DeliveryKind, PacketId, Peer, UCDelivery

__all__ = ["DISMISS", "decode_delivery", "decode_uc", "encode_delivery", "encode_uc"]

DISMISS = b"dismiss"
"""The FANOUT body that says "this unlimited group was dismissed" (docs/protocol.md 6.12)."""


def _peer(peer: Peer) -> list[Any]:
    return [peer.app_id, peer.app_account, peer.uuid, peer.resource]


def _unpeer(value: Any) -> Peer:
    app_id, account, uuid, resource = value
    return Peer(
        app_id=int(app_id), app_account=str(account), uuid=int(uuid), resource=str(resource)
    )


def encode_delivery(item: Delivery) -> bytes:
    """The DELIVER body of one COMPOUND entry."""
    return json.dumps(
        [
            item.kind.value,
            item.packet_id,
            item.package,
            item.sequence,
            item.timestamp,
            _peer(item.sender),
            base64.b64encode(item.payload).decode(),
            item.is_store,
            item.biz_type,
            item.to_account,
            item.to_uuid,
            item.to_resource,
            item.topic_id,
        ],
        separators=(",", ":"),
    ).encode()


def decode_delivery(body: bytes) -> Delivery:
    """Parse :func:`encode_delivery`; ValueError if ``body`` is not one."""
    try:
        (kind, packet_id, package, seq, ts, sender, payload, store, biz, to_acc, to_uuid, to_res,
         topic) = json.loads(body)  # fmt: skip
        return Delivery(
            kind=DeliveryKind(kind),
            packet_id=PacketId(str(packet_id)),
            package=str(package),
            sequence=int(seq),
            timestamp=int(ts),
            sender=_unpeer(sender),
            payload=base64.b64decode(payload, validate=True),
            is_store=bool(store),
            biz_type=str(biz),
            to_account=str(to_acc),
            to_uuid=int(to_uuid),
            to_resource=str(to_res),
            topic_id=int(topic),
        )
    except (TypeError, ValueError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise ValueError(f"not a delivery: {type(exc).__name__}") from None


def encode_uc(item: UCDelivery) -> bytes:
    """The FANOUT body of one unlimited-group message."""
    return json.dumps(
        [
            item.packet_id,
            item.sequence,
            item.timestamp,
            _peer(item.sender),
            base64.b64encode(item.payload).decode(),
            item.is_store,
            item.biz_type,
        ],
        separators=(",", ":"),
    ).encode()


def decode_uc(body: bytes) -> UCDelivery:
    """Parse :func:`encode_uc`; ValueError if ``body`` is not one."""
    try:
        packet_id, seq, ts, sender, payload, store, biz = json.loads(body)
        return UCDelivery(
            packet_id=PacketId(str(packet_id)),
            sequence=int(seq),
            timestamp=int(ts),
            sender=_unpeer(sender),
            payload=base64.b64decode(payload, validate=True),
            is_store=bool(store),
            biz_type=str(biz),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an unlimited-group message: {type(exc).__name__}") from None
