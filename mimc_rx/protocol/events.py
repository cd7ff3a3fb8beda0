"""The values the sans-I/O sessions emit, as frozen dataclasses.

Two families live here:

* **Client events** (``ClientEvent``): what ``ClientSession.events_received()`` returns and what
  the reactive facade republishes on its streams (``user.status``, ``user.p2p_messages``, ...).
  They are the user-facing message types of the whole library.
* **Server events** (``ServerEvent``): what ``ServerSession.events_received()`` returns to the
  local server's business logic (routing, storage), which answers with session commands.

Every numeric id of the protocol (uuid, sequence, topic id, app id) is a Python ``int`` here,
although the web SDK shows them as decimal strings; timestamps are integer milliseconds since
the Unix epoch, as on the wire. Consumers dispatch on these classes with ``match``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NewType

__all__ = [
    "BadPacket",
    "BindRequested",
    "ClientEvent",
    "Delivery",
    "DeliveryKind",
    "Kicked",
    "P2PMessage",
    "P2PReceived",
    "P2TMessage",
    "P2TReceived",
    "PacketId",
    "Peer",
    "Pinged",
    "ProtocolFailure",
    "PullNotification",
    "PullRequested",
    "SendExpired",
    "SequenceAcked",
    "ServerAck",
    "ServerEvent",
    "StatusChange",
    "UCDelivery",
    "UCDismissed",
    "UCJoinRequested",
    "UCJoinResult",
    "UCMessage",
    "UCMessageReceived",
    "UCPinged",
    "UCQuitRequested",
    "UCQuitResult",
    "UCSequenceAcked",
    "UnbindRequested",
]

PacketId = NewType("PacketId", str)
"""A packet id: an opaque string chosen by the sender (docs/protocol.md 6.2)."""

_frozen = {"frozen": True, "slots": True, "kw_only": True}


def _text(payload: bytes) -> str:
    # docs/protocol.md 10.7: decode real UTF-8, 4-byte sequences (emoji) included.
    return payload.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- client events


@dataclass(**_frozen)
class StatusChange:
    """The login state changed (the web SDK's ``statusChange`` callback, docs/protocol.md 6.4).

    ``online`` is true after a successful BIND. On failure the three strings say why: the
    server's BIND error fields, or for a bad token answer ``err_type="get token failed"``,
    ``"account not same"`` or ``"appid not same"`` as the web SDK reports them (6.1 step 5).
    """

    online: bool
    err_type: str = ""
    err_reason: str = ""
    err_desc: str = ""


@dataclass(**_frozen)
class ServerAck:
    """The server acknowledged a P2P or P2T packet we sent (PACKET_ACK, docs/protocol.md 6.6)."""

    packet_id: PacketId
    sequence: int
    timestamp: int
    err_msg: str = ""

    @property
    def ok(self) -> bool:
        """True when the server accepted the packet (no error message)."""
        return not self.err_msg


@dataclass(**_frozen)
class P2PMessage:
    """A one-to-one message delivered to us (docs/protocol.md 6.8, 9.3 MIMCMessage)."""

    packet_id: PacketId
    sequence: int
    timestamp: int
    from_account: str
    from_resource: str
    to_account: str
    to_resource: str
    payload: bytes
    biz_type: str = ""
    is_store: bool = True

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return _text(self.payload)


@dataclass(**_frozen)
class P2TMessage:
    """A group (topic) message delivered to us (docs/protocol.md 6.7, 9.3 MIMCGroupMessage)."""

    packet_id: PacketId
    sequence: int
    timestamp: int
    from_account: str
    from_resource: str
    topic_id: int
    payload: bytes
    biz_type: str = ""
    is_store: bool = True

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return _text(self.payload)


@dataclass(**_frozen)
class UCMessage:
    """A message of an unlimited group (docs/protocol.md 6.12). Sequences are per topic."""

    packet_id: PacketId
    sequence: int
    timestamp: int
    from_account: str
    from_resource: str
    topic_id: int
    payload: bytes
    biz_type: str = ""
    is_store: bool = False

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return _text(self.payload)


@dataclass(**_frozen)
class UCJoinResult:
    """The answer to joining an unlimited group (JOIN_RESP); ``code`` 0 means joined."""

    topic_id: int
    code: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(**_frozen)
class UCQuitResult:
    """The answer to leaving an unlimited group (QUIT_RESP); ``code`` 0 means left."""

    topic_id: int
    code: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(**_frozen)
class UCDismissed:
    """An unlimited group we are in was dismissed (DISMISS push)."""

    topic_id: int


@dataclass(**_frozen)
class PullNotification:
    """The server holds more offline messages than it pushes (docs/protocol.md 6.10).

    The range ``[min_sequence, max_sequence]`` is to be fetched through PULL or the history
    API. Whether the session acknowledges it at once is a session setting.
    """

    min_sequence: int
    max_sequence: int


@dataclass(**_frozen)
class SendExpired:
    """A stored send left the outbox unacked: older than its age limit, it is not sent again.

    The outbox sends unacked stored messages again after a reconnect (``SessionMemory``); one
    that waited longer than ``max_age`` seconds is given up instead, so a message is never resent
    after the server stopped remembering its packet id (its sender dedup has a retention).
    """

    packet_id: PacketId
    age: float


@dataclass(**_frozen)
class Kicked:
    """The server kicked this session (KICK, docs/protocol.md 6.13), usually for a newer login."""

    err_type: str = ""
    err_reason: str = ""
    err_desc: str = ""


@dataclass(**_frozen)
class ProtocolFailure:
    """The peer sent bytes we could not accept; the session will close.

    ``reason`` is short and machine-friendly (``"bad-checksum"``, ``"bad-header"``,
    ``"unexpected-cmd"``...); ``detail`` explains it to a human.
    """

    reason: str
    detail: str = ""


@dataclass(**_frozen)
class BadPacket:
    """One SECMSG packet could not be understood; the session goes on.

    Emitted by both sessions. ``packet_id`` is set when the packet carried one, so a server
    can still answer it with an error ack.
    """

    reason: str
    packet_id: PacketId | None = None
    detail: str = ""


ClientEvent = (
    StatusChange
    | ServerAck
    | P2PMessage
    | P2TMessage
    | UCMessage
    | UCJoinResult
    | UCQuitResult
    | UCDismissed
    | PullNotification
    | SendExpired
    | Kicked
    | ProtocolFailure
    | BadPacket
)

# --------------------------------------------------------------------------- server events


@dataclass(**_frozen)
class Peer:
    """A user as the protocol names it (MIMCUser, docs/protocol.md 4.3)."""

    app_id: int
    app_account: str = ""
    uuid: int = 0
    resource: str = ""


@dataclass(**_frozen)
class BindRequested:
    """A client asked to log in (BIND, docs/protocol.md 6.3).

    The server looks the token up and answers with ``ServerSession.accept_bind`` (which checks
    the signature with the user's security key) or ``ServerSession.reject_bind``.
    """

    uuid: int
    resource: str
    token: str
    chid: int


@dataclass(**_frozen)
class P2PReceived:
    """A bound client sent a one-to-one message (P2P_MESSAGE, docs/protocol.md 6.6)."""

    packet_id: PacketId
    package: str
    sender: Peer
    to_account: str
    to_app_id: int
    payload: bytes
    is_store: bool
    biz_type: str = ""
    to_resource: str = ""


@dataclass(**_frozen)
class P2TReceived:
    """A bound client sent a group message (P2T_MESSAGE, docs/protocol.md 6.7)."""

    packet_id: PacketId
    package: str
    sender: Peer
    topic_id: int
    payload: bytes
    is_store: bool
    biz_type: str = ""


@dataclass(**_frozen)
class SequenceAcked:
    """The client confirmed delivery of everything up to ``sequence`` (docs/protocol.md 6.9)."""

    sequence: int


@dataclass(**_frozen)
class PullRequested:
    """The client asked for pending messages (PULL, docs/protocol.md 6.11)."""

    packet_id: PacketId


@dataclass(**_frozen)
class UCJoinRequested:
    """The client asked to join an unlimited group (docs/protocol.md 6.12)."""

    packet_id: PacketId
    topic_id: int


@dataclass(**_frozen)
class UCQuitRequested:
    """The client asked to leave an unlimited group."""

    packet_id: PacketId
    topic_id: int


@dataclass(**_frozen)
class UCMessageReceived:
    """The client sent a message to an unlimited group.

    ``packet_id`` is the UCPacket's id; ``message_id`` is the inner UCMessage id that
    receivers see (docs/protocol.md 10.9).
    """

    packet_id: PacketId
    message_id: PacketId
    sender: Peer
    topic_id: int
    payload: bytes
    is_store: bool = False
    biz_type: str = ""


@dataclass(**_frozen)
class UCSequenceAcked:
    """The client acknowledged an unlimited group's messages up to ``sequence``."""

    topic_id: int
    sequence: int


@dataclass(**_frozen)
class UCPinged:
    """The client's periodic UC PING listing the topics it believes it joined."""

    topic_ids: tuple[int, ...]


@dataclass(**_frozen)
class Pinged:
    """A keep-alive PING arrived."""


@dataclass(**_frozen)
class UnbindRequested:
    """The client logged out (UBND); the session is closing."""


ServerEvent = (
    BindRequested
    | P2PReceived
    | P2TReceived
    | SequenceAcked
    | PullRequested
    | UCJoinRequested
    | UCQuitRequested
    | UCMessageReceived
    | UCSequenceAcked
    | UCPinged
    | Pinged
    | UnbindRequested
    | ProtocolFailure
    | BadPacket
)

# --------------------------------------------------------------------------- server commands


class DeliveryKind(Enum):
    """What a stored or routed message is."""

    P2P = "p2p"
    P2T = "p2t"


@dataclass(**_frozen)
class Delivery:
    """One message the server hands to ``ServerSession.deliver`` (a COMPOUND entry, 6.6/6.7).

    For P2P, ``to_account`` / ``to_uuid`` name the recipient; for P2T, ``topic_id`` names the
    group. ``sequence`` is in the recipient's sequence space (docs/protocol.md 6.15).
    """

    kind: DeliveryKind
    packet_id: PacketId
    package: str
    sequence: int
    timestamp: int
    sender: Peer
    payload: bytes
    is_store: bool = True
    biz_type: str = ""
    to_account: str = ""
    to_uuid: int = 0
    to_resource: str = ""
    topic_id: int = 0


@dataclass(**_frozen)
class UCDelivery:
    """One message the server hands to ``ServerSession.deliver_uc`` (a MESSAGE_LIST entry)."""

    packet_id: PacketId
    sequence: int
    timestamp: int
    sender: Peer
    payload: bytes
    is_store: bool = False
    biz_type: str = ""
