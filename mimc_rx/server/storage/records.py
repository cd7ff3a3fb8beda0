"""What the store keeps, as dataclasses, and how fresh identities and sequences are made.

Sequences
---------
Every sequence space (one per user, one per unlimited group) hands out
``max(previous + 1, now_ms * 1000)``: increasing and unique within the space, roughly sortable by
time, and still ahead of anything issued before if the database file is lost, so a client's dedup
memory never swallows a fresh message. P2P and P2T share the user's space (docs/protocol.md 6.15).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from enum import IntEnum

from mimc_rx.protocol.events import P2PReceived, P2TReceived, PacketId, Peer

__all__ = [
    "Contact",
    "MessageKind",
    "StoredMessage",
    "Topic",
    "UCTopic",
    "User",
    "new_security_key",
    "next_sequence",
    "random_id",
]


class MessageKind(IntEnum):
    """What a stored message is; the values are MIMC_MSG_TYPE numbers (docs/protocol.md 4.3)."""

    P2P = 1
    P2T = 2


@dataclass(slots=True, kw_only=True)
class User:
    """A MIMC user: one account of one app, with its stable uuid and security key."""

    uuid: int
    app_id: int
    account: str
    security_key: str
    last_seq: int = 0


@dataclass(slots=True, kw_only=True)
class Topic:
    """A normal group (docs/protocol.md 8.3). ``members`` keeps the order in which they joined."""

    topic_id: int
    app_id: int
    name: str
    owner_uuid: int
    bulletin: str = ""
    members: dict[int, None] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class UCTopic:
    """An unlimited group (docs/protocol.md 6.12, 8.2) with its per-topic sequence counter."""

    topic_id: int
    app_id: int
    name: str
    owner_uuid: int
    last_seq: int = 0
    members: dict[int, None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """A message row, with ``seq`` in the sequence space of whoever asked for it."""

    id: int
    kind: MessageKind
    app_id: int
    packet_id: str
    package: str
    from_uuid: int
    from_account: str
    from_resource: str
    to_uuid: int
    to_account: str
    to_resource: str
    topic_id: int
    payload: bytes
    biz_type: str
    ts: int
    sender_seq: int
    seq: int

    def as_sent(self) -> P2PReceived | P2TReceived:
        """The message as its sender's packet described it, for ``delivery_of`` (redelivery)."""
        sender = Peer(
            app_id=self.app_id,
            app_account=self.from_account,
            uuid=self.from_uuid,
            resource=self.from_resource,
        )
        if self.kind is MessageKind.P2T:
            return P2TReceived(
                packet_id=PacketId(self.packet_id),
                package=self.package,
                sender=sender,
                topic_id=self.topic_id,
                payload=self.payload,
                is_store=True,
                biz_type=self.biz_type,
            )
        return P2PReceived(
            packet_id=PacketId(self.packet_id),
            package=self.package,
            sender=sender,
            to_account=self.to_account,
            to_app_id=self.app_id,
            payload=self.payload,
            is_store=True,
            biz_type=self.biz_type,
            to_resource=self.to_resource,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """One conversation of a user's recent contacts: a peer (P2P) or a group (P2T)."""

    kind: MessageKind
    peer: int
    """The other user's uuid (P2P) or the topic id (P2T)."""
    last: StoredMessage
    """The conversation's latest stored message, ``seq`` in the user's own space."""


def random_id() -> int:
    """A fresh random uuid or topic id: 18 decimal digits, well inside int64 (protocol.md 8)."""
    return 10**17 + secrets.randbelow(9 * 10**17)


def new_security_key() -> str:
    """A fresh ``miUserSecurityKey``: standard base64 text of 16 random bytes (protocol.md 8.1).

    The decoded bytes key RC4 (5); the text itself ends the BIND signature's base string (6.3).
    """
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def next_sequence(previous: int, now_ms: int) -> int:
    """The sequence after ``previous`` at wall time ``now_ms`` (see the module docstring)."""
    return max(previous + 1, now_ms * 1000)


def check_identity(uuid: int, security_key: str, last_seq: int) -> None:
    """Refuse an imported identity (``import_user``) that no server could have made.

    Raises:
        ValueError: ``uuid`` is not a positive 63-bit integer, ``last_seq`` not a non-negative
            one, or ``security_key`` not non-empty standard base64 text.
    """
    if not 0 < uuid < 2**63:
        raise ValueError(f"uuid must be a positive 63-bit integer, not {uuid}")
    if not 0 <= last_seq < 2**63:
        raise ValueError(f"last_seq must be a non-negative 63-bit integer, not {last_seq}")
    try:
        if not base64.b64decode(security_key, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise ValueError("security_key must be non-empty standard base64 text") from None
