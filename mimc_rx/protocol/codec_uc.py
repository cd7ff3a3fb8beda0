"""Protobuf <-> dataclasses for unlimited groups ("UC", docs/protocol.md 4.4, 6.12).

A ``UCPacket`` travels as the body of a ``MIMCPacket`` of type UC_PACKET. Like ``MIMCPacket``
it exposes one typed ``body`` instead of the proto's ``type`` + ``payload`` pair; the body's
class selects UC_MSG_TYPE. PONG has no inner message: ``UCPong`` keeps whatever bytes came.
Presence rules are those of ``codec_base`` (absent = ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeAlias

from mimc_rx.errors import PacketError
from mimc_rx.protocol._pb import mimc_pb2 as _mimc
from mimc_rx.protocol.codec_base import (
    FROZEN,
    MIMCGroup,
    OpaqueBody,
    WireUser,
    decode_message,
    encode_message,
    fill_fields,
    pb,
    read_fields,
    register,
    scalar,
)

__all__ = [
    "UCBody",
    "UCDismiss",
    "UCJoin",
    "UCJoinResp",
    "UCMessageBody",
    "UCMessageList",
    "UCPacket",
    "UCPing",
    "UCPong",
    "UCQueryOnlineUsers",
    "UCQueryOnlineUsersResp",
    "UCQuit",
    "UCQuitResp",
    "UCSequenceAck",
    "UCType",
]


class UCType(IntEnum):
    """UC_MSG_TYPE (docs/protocol.md 4.4)."""

    PING = 1
    PONG = 2
    JOIN = 3
    JOIN_RESP = 4
    QUIT = 5
    QUIT_RESP = 6
    SEQ_ACK = 7
    MESSAGE = 8
    MESSAGE_LIST = 9
    DISMISS = 10
    QUERY_ONLINE_USERS = 11
    QUERY_ONLINE_USERS_RESP = 12


@dataclass(**FROZEN)
class UCJoin:
    """JOIN: the client asks to enter a topic."""

    group: MIMCGroup | None = pb("group", MIMCGroup)


@dataclass(**FROZEN)
class UCJoinResp:
    """JOIN_RESP: code 0 means joined."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    code: int | None = pb("code")
    message: str | None = pb("message")


@dataclass(**FROZEN)
class UCQuit:
    """QUIT: the client leaves a topic."""

    group: MIMCGroup | None = pb("group", MIMCGroup)


@dataclass(**FROZEN)
class UCQuitResp:
    """QUIT_RESP: code 0 means left."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    code: int | None = pb("code")
    message: str | None = pb("message")


@dataclass(**FROZEN)
class UCPing:
    """PING: every topic the client believes it joined (docs/protocol.md 6.12, 10.10)."""

    groups: tuple[MIMCGroup, ...] = pb("group", MIMCGroup, repeated=True)


@dataclass(**FROZEN)
class UCPong:
    """PONG: no inner message; ``data`` keeps the raw payload (normally empty)."""

    data: bytes = b""


@dataclass(**FROZEN)
class UCSequenceAck:
    """SEQ_ACK: the client got a topic's messages up to ``sequence``."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    sequence: int | None = pb("sequence")


@dataclass(**FROZEN)
class UCMessageBody:
    """A UC message (proto ``UCMessage``; renamed so it never clashes with the event)."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    payload: bytes | None = pb("payload", bytes)
    sequence: int | None = pb("sequence")
    is_store: bool | None = pb("isStore")
    user: WireUser | None = pb("user", WireUser)
    timestamp: int | None = pb("timestamp")
    packet_id: str | None = pb("packetId")
    biz_type: str | None = pb("bizType")


@dataclass(**FROZEN)
class UCMessageList:
    """MESSAGE_LIST: the server's delivery of a topic's messages."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    messages: tuple[UCMessageBody, ...] = pb("message", UCMessageBody, repeated=True)
    max_sequence: int | None = pb("maxSequence")


@dataclass(**FROZEN)
class UCDismiss:
    """DISMISS: the topic is gone."""

    group: MIMCGroup | None = pb("group", MIMCGroup)


@dataclass(**FROZEN)
class UCQueryOnlineUsers:
    """QUERY_ONLINE_USERS (never sent by the web SDK)."""

    group: MIMCGroup | None = pb("group", MIMCGroup)


@dataclass(**FROZEN)
class UCQueryOnlineUsersResp:
    """QUERY_ONLINE_USERS_RESP."""

    group: MIMCGroup | None = pb("group", MIMCGroup)
    user_count: int | None = pb("userCount")


UCBody: TypeAlias = (
    UCJoin
    | UCJoinResp
    | UCQuit
    | UCQuitResp
    | UCPing
    | UCPong
    | UCSequenceAck
    | UCMessageBody
    | UCMessageList
    | UCDismiss
    | UCQueryOnlineUsers
    | UCQueryOnlineUsersResp
    | OpaqueBody
)

_UC_TYPES: Final[dict[type, UCType]] = {
    UCPing: UCType.PING,
    UCPong: UCType.PONG,
    UCJoin: UCType.JOIN,
    UCJoinResp: UCType.JOIN_RESP,
    UCQuit: UCType.QUIT,
    UCQuitResp: UCType.QUIT_RESP,
    UCSequenceAck: UCType.SEQ_ACK,
    UCMessageBody: UCType.MESSAGE,
    UCMessageList: UCType.MESSAGE_LIST,
    UCDismiss: UCType.DISMISS,
    UCQueryOnlineUsers: UCType.QUERY_ONLINE_USERS,
    UCQueryOnlineUsersResp: UCType.QUERY_ONLINE_USERS_RESP,
}
_UC_CLASSES: Final[dict[int, type]] = {int(t): cls for cls, t in _UC_TYPES.items()}


@dataclass(**FROZEN)
class UCPacket:
    """The UC envelope (docs/protocol.md 4.4): ``user``, typed ``body``, ``packet_id``.

    c2s, ``user`` is the full sender and ``packet_id`` equals the MIMCPacket id; s2c, ``user``
    is the receiving user (6.12).
    """

    body: UCBody
    user: WireUser | None = None
    packet_id: str | None = None

    @property
    def type(self) -> int | None:
        """The UC_MSG_TYPE number this packet has on the wire."""
        if isinstance(self.body, OpaqueBody):
            return self.body.type
        return int(_UC_TYPES[type(self.body)])


def _fill_uc(msg: Any, packet: UCPacket) -> None:
    body = packet.body
    if packet.user is not None:
        msg.user.SetInParent()
        fill_fields(msg.user, packet.user)
    if isinstance(body, OpaqueBody):
        if body.type is not None:
            msg.type = body.type
        if body.payload is not None:
            msg.payload = body.payload
    elif isinstance(body, UCPong):
        msg.type = int(UCType.PONG)
        msg.payload = body.data
    else:
        msg.type = int(_UC_TYPES[type(body)])
        msg.payload = encode_message(body)
    if packet.packet_id is not None:
        msg.packetId = packet.packet_id


def _read_uc(msg: Any, strict: bool) -> UCPacket:
    packet_id = scalar(msg.packetId, "packetId") if msg.HasField("packetId") else None
    user = read_fields(msg.user, WireUser) if msg.HasField("user") else None
    utype: int | None = msg.type if msg.HasField("type") else None
    payload = bytes(msg.payload) if msg.HasField("payload") else None
    cls = _UC_CLASSES.get(utype) if utype is not None else None
    body: UCBody
    if cls is None:
        body = OpaqueBody(type=utype, payload=payload)
    elif cls is UCPong:
        body = UCPong(data=payload or b"")
    else:
        try:
            body = decode_message(cls, payload or b"")
        except PacketError as exc:
            if strict:
                raise PacketError(exc.reason, exc.detail, packet_id) from exc
            body = OpaqueBody(type=utype, payload=payload, error=str(exc))
    return UCPacket(body=body, user=user, packet_id=packet_id)


register(UCJoin, _mimc.UCJoin)
register(UCJoinResp, _mimc.UCJoinResp)
register(UCQuit, _mimc.UCQuit)
register(UCQuitResp, _mimc.UCQuitResp)
register(UCPing, _mimc.UCPing)
register(UCSequenceAck, _mimc.UCSequenceAck)
register(UCMessageBody, _mimc.UCMessage)
register(UCMessageList, _mimc.UCMessageList)
register(UCDismiss, _mimc.UCDismiss)
register(UCQueryOnlineUsers, _mimc.UCQueryOnlineUsers)
register(UCQueryOnlineUsersResp, _mimc.UCQueryOnlineUsersResp)
register(UCPacket, _mimc.UCPacket, fill=_fill_uc, read=_read_uc)
