"""Hand-written protobuf encoders for the hot path, byte for byte what upb writes.

Theory of operation. The generic codec (``codec_base``) builds a protobuf message, fills it
from a dataclass and serializes it: exact, but each message costs a dataclass, a upb object
and a dozen attribute writes. The server sends two SECMSG frames per stored P2P message (the
sender's PACKET_ACK and the receiver's COMPOUND), and most of their fields are the same for
every frame of a session (uuid, resource, package, the receiver's MIMCUser). So the encoders
here write the protobuf wire format directly (docs/protocol.md 4.3): each field as its tag
byte, a varint or a length-delimited value, in field-number order and with the presence the
generic path would give, so the bytes equal ``codec.encode_message`` of the same dataclass
(tests/protocol/test_codec_wire.py compares them).

Only what the sessions send per message is here: MIMCUser, MIMCGroup, MIMCP2PMessage (and
MIMCP2TMessage, the same fields with a group for ``to``), MIMCPacketAck, MIMCPacket,
MIMCPacketList; ``SendTemplate`` is the client's side, its P2P and P2T packets. Every field
number used is one of ``mimc.proto``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "PacketAckTemplate",
    "PacketTemplate",
    "SendTemplate",
    "encode_group",
    "encode_p2p_message",
    "encode_packet_list",
    "encode_user",
    "varint",
]

_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(0x80))
_CONTINUED: Final = tuple(bytes((i | 0x80,)) for i in range(0x80))
# varint(v) is the low 7 bits of v (with the continuation bit) followed by varint(v >> 7), and
# v >> 7 is the same for 128 consecutive sequences or milliseconds: memoised, bounded.
_HIGH: dict[int, bytes] = {}
_HIGH_LIMIT: Final = 4096


def _slow_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    """The base-128 varint of an int32/int64/uint64/bool/enum field value (negative: 10 bytes)."""
    if value >= 0x80:
        high = value >> 7
        tail = _HIGH.get(high)
        if tail is None:
            if len(_HIGH) >= _HIGH_LIMIT:
                _HIGH.clear()
            tail = _HIGH[high] = _slow_varint(high)
        return _CONTINUED[value & 0x7F] + tail
    if value >= 0:
        return _ONE_BYTE[value]
    return _slow_varint(value + (1 << 64))  # two's complement, as int64 is written


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    return b"".join((tag, _ONE_BYTE[size] if size < 0x80 else varint(size), data))


def _string(tag: bytes, text: str) -> bytes:
    return _length_delimited(tag, text.encode("utf-8"))


def encode_user(
    app_id: int | None, app_account: str | None, uuid: int | None, resource: str | None
) -> bytes:
    """MIMCUser (appId 1, appAccount 2, uuid 3, resource 4); ``None`` leaves a field out."""
    parts: list[bytes] = []
    if app_id is not None:
        parts += (b"\x08", varint(app_id))
    if app_account is not None:
        parts.append(_string(b"\x12", app_account))
    if uuid is not None:
        parts += (b"\x18", varint(uuid))
    if resource is not None:
        parts.append(_string(b"\x22", resource))
    return b"".join(parts)


def encode_group(app_id: int | None, topic_id: int | None) -> bytes:
    """MIMCGroup (appId 1, topicId 2); ``None`` leaves a field out."""
    parts: list[bytes] = []
    if app_id is not None:
        parts += (b"\x08", varint(app_id))
    if topic_id is not None:
        parts += (b"\x10", varint(topic_id))
    return b"".join(parts)


def encode_p2p_message(
    sender: bytes, to: bytes, payload: bytes, is_store: bool, biz_type: str | None
) -> bytes:
    """MIMCP2PMessage with ``from`` and ``to`` already encoded (``encode_user``), the payload
    and isStore present, bizType left out when ``None``."""
    one, a, b, c = _ONE_BYTE, len(sender), len(to), len(payload)  # inlined _length_delimited
    data = b"".join(
        (
            b"\x0a",
            one[a] if a < 0x80 else varint(a),
            sender,
            b"\x12",
            one[b] if b < 0x80 else varint(b),
            to,
            b"\x1a",
            one[c] if c < 0x80 else varint(c),
            payload,
            b"\x20\x01" if is_store else b"\x20\x00",
        )
    )
    if biz_type is not None:
        data += _string(b"\x2a", biz_type)
    return data


class PacketAckTemplate:
    """MIMCPacketAck of one session: uuid, resource and package fixed, every field present.

    ``encode(packet_id, sequence, timestamp, error_msg, code)`` equals
    ``encode_message(MIMCPacketAck(packet_id=..., uuid=uuid, resource=resource,
    sequence=..., timestamp=..., package=package, error_msg=..., code=...))``.
    """

    __slots__ = ("_middle", "_package")

    def __init__(self, uuid: int, resource: str, package: str) -> None:
        self._middle = b"\x10" + varint(uuid) + _string(b"\x1a", resource)  # fields 2, 3
        self._package = _string(b"\x32", package)  # field 6

    def encode(
        self, packet_id: str, sequence: int, timestamp: int, error_msg: str, code: int
    ) -> bytes:
        return b"".join(
            (
                _string(b"\x0a", packet_id),
                self._middle,
                b"\x20",
                varint(sequence),
                b"\x28",
                varint(timestamp),
                self._package,
                _string(b"\x3a", error_msg),
                b"\x40",
                varint(code),
            )
        )


class PacketTemplate:
    """MIMCPacket of one session's s2c SECMSG: packetId, package, type, payload, timestamp.

    ``encode(packet_id, type, payload, timestamp)`` equals ``encode_packet_of(
    OpaqueBody(type=type, payload=payload), packet_id=..., package=package,
    timestamp=...)``: the packet around a body that is already encoded.
    """

    __slots__ = ("_package",)

    def __init__(self, package: str | None) -> None:
        self._package = b"" if package is None else _string(b"\x12", package)

    def encode(self, packet_id: str, packet_type: int, payload: bytes, timestamp: int) -> bytes:
        return b"".join(
            (
                _string(b"\x0a", packet_id),
                self._package,
                b"\x20",
                varint(packet_type),
                _length_delimited(b"\x2a", payload),
                b"\x30",
                varint(timestamp),
            )
        )


class SendTemplate:
    """The client's c2s MIMCPacket of a P2P or P2T message, for one logged-in session.

    The sender (the session's MIMCUser), its app id and the package are fixed at login.
    ``p2p(packet_id, to_account, payload, is_store, biz_type)`` equals ``encode_packet_of(
    MIMCP2PMessage(sender=me, to=WireUser(app_id=app_id, app_account=to_account),
    payload=..., is_store=..., biz_type=...), packet_id=..., package=package)``; ``p2t`` the
    same with ``MIMCP2TMessage`` and ``to=MIMCGroup(app_id=app_id, topic_id=...)``. Field
    order is MIMCPacket's: packetId 1, package 2, type 4, payload 5 (no sequence, no time).
    """

    __slots__ = ("_app_id", "_p2p_type", "_p2t_type", "_package", "_sender")

    def __init__(
        self,
        sender: bytes,
        app_id: int | None,
        package: str | None,
        *,
        p2p_type: int,
        p2t_type: int,
    ) -> None:
        self._sender = sender  # encode_user of the session's identity
        self._app_id = app_id
        self._package = b"" if package is None else _string(b"\x12", package)
        self._p2p_type = b"\x20" + varint(p2p_type)
        self._p2t_type = b"\x20" + varint(p2t_type)

    def p2p(
        self, packet_id: str, to_account: str, payload: bytes, is_store: bool, biz_type: str | None
    ) -> bytes:
        to = encode_user(self._app_id, to_account, None, None)
        body = encode_p2p_message(self._sender, to, payload, is_store, biz_type)
        return self._packet(packet_id, self._p2p_type, body)

    def p2t(
        self, packet_id: str, topic_id: int, payload: bytes, is_store: bool, biz_type: str | None
    ) -> bytes:
        to = encode_group(self._app_id, topic_id)
        body = encode_p2p_message(self._sender, to, payload, is_store, biz_type)
        return self._packet(packet_id, self._p2t_type, body)

    def _packet(self, packet_id: str, packet_type: bytes, body: bytes) -> bytes:
        raw_id, size = packet_id.encode("utf-8"), len(body)
        return b"".join(
            (
                b"\x0a",
                _ONE_BYTE[len(raw_id)] if len(raw_id) < 0x80 else varint(len(raw_id)),
                raw_id,
                self._package,
                packet_type,
                b"\x2a",
                _ONE_BYTE[size] if size < 0x80 else varint(size),
                body,
            )
        )


def encode_packet_list(
    entries: Iterable[tuple[str, str, int, int, bytes, int]],
    *,
    uuid: int | None,
    resource: str | None,
    max_sequence: int,
    status: int,
) -> bytes:
    """MIMCPacketList of ``(packet_id, package, sequence, type, body, timestamp)`` entries,
    every entry field present, minSequence absent (``codec.encode_packet_list_of``)."""
    parts: list[bytes] = []
    if uuid is not None:
        parts += (b"\x08", varint(uuid))
    if resource is not None:
        parts.append(_string(b"\x12", resource))
    parts += (b"\x18", varint(max_sequence))
    one = _ONE_BYTE
    for packet_id, package, sequence, packet_type, body, timestamp in entries:
        raw_id, raw_package, size = packet_id.encode("utf-8"), package.encode("utf-8"), len(body)
        entry = b"".join(
            (
                b"\x0a",
                one[len(raw_id)] if len(raw_id) < 0x80 else varint(len(raw_id)),
                raw_id,
                b"\x12",
                one[len(raw_package)] if len(raw_package) < 0x80 else varint(len(raw_package)),
                raw_package,
                b"\x18",
                varint(sequence),
                b"\x20",
                varint(packet_type),
                b"\x2a",
                one[size] if size < 0x80 else varint(size),
                body,
                b"\x30",
                varint(timestamp),
            )
        )
        size = len(entry)
        parts += (b"\x22", one[size] if size < 0x80 else varint(size), entry)
    parts += (b"\x28", varint(status))
    return b"".join(parts)
