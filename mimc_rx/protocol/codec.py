"""Protobuf <-> frozen dataclasses for the frame header, CONN/BIND and the MIMC packet layer.

Theory of operation: see ``codec_base`` for the presence rule (absent = ``None``, so rebuilt
frames are byte-identical to the web SDK's). This module holds the messages of docs/protocol.md
4.1-4.3; ``codec_uc`` holds the unlimited-group messages of 4.4. Together with ``codec_base``
they are the only modules that import ``_pb``; everything else speaks dataclasses.

``MIMCPacket`` has no ``type``/``payload`` fields: its ``body`` is the decoded inner message
(P2P message, ack, packet list, UC packet...) and the type follows from the body's class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Final, TypeAlias

from mimc_rx.errors import FrameError, PacketError
from mimc_rx.protocol._pb import control_message_pb2 as _cm
from mimc_rx.protocol._pb import mimc_pb2 as _mimc
from mimc_rx.protocol.codec_base import (
    FROZEN,
    MIMCGroup,
    OpaqueBody,
    WireUser,
    constructor,
    decode_message,
    decoder,
    encode_message,
    encoder,
    pb,
    register,
    scalar,
)
from mimc_rx.protocol.codec_uc import UCPacket
from mimc_rx.protocol.codec_wire import varint

__all__ = [
    "DEFAULT_SERVER",
    "MIMC_CHID",
    "AckFields",
    "BindRequest",
    "BindResponse",
    "Cmd",
    "ConnRequest",
    "ConnResponse",
    "DeliveryFields",
    "EncodedEntry",
    "GroupFields",
    "Header",
    "HeaderFields",
    "HeaderTemplate",
    "ListFields",
    "MIMCGroup",
    "MIMCP2PMessage",
    "MIMCP2TMessage",
    "MIMCPacket",
    "MIMCPacketAck",
    "MIMCPacketList",
    "MIMCSequenceAck",
    "MessageFields",
    "OpaqueBody",
    "PacketBody",
    "PacketType",
    "PullMessageRequest",
    "PushStatus",
    "UserFields",
    "WireUser",
    "decode_header",
    "decode_header_fields",
    "decode_message",
    "decode_message_packet",
    "decode_packet",
    "decode_s2c_packet",
    "encode_header",
    "encode_message",
    "encode_packet",
    "encode_packet_list_of",
    "encode_packet_of",
    "message_fields",
]

MIMC_CHID: Final = 9
"""ClientHeader.chid of every MIMC frame (docs/protocol.md 4.1)."""

DEFAULT_SERVER: Final = "xiaomi.com"
"""ClientHeader.server, and the domain in the BIND signature's ``from``/``to`` (4.1, 6.3)."""


class Cmd:
    """The ClientHeader.cmd strings (docs/protocol.md 3). Plain strings: a peer may send others."""

    CONN: Final = "CONN"
    BIND: Final = "BIND"
    PING: Final = "PING"
    SECMSG: Final = "SECMSG"
    KICK: Final = "KICK"
    UBND: Final = "UBND"


class PacketType(IntEnum):
    """MIMC_MSG_TYPE: what a ``MIMCPacket`` carries (docs/protocol.md 4.3)."""

    P2P_MESSAGE = 1
    P2T_MESSAGE = 2
    SEQUENCE_ACK = 3
    PACKET_ACK = 4
    PULL = 5
    COMPOUND = 6
    RTS_SIGNAL = 7
    UC_PACKET = 8
    P2P_PUSH_MESSAGE = 9
    P2T_PUSH_MESSAGE = 10
    ONLINE_MESSAGE = 11
    ONLINE_MESSAGE_ACK = 12


class PushStatus(IntEnum):
    """MIMC_PUSH_STATUS of a packet list (docs/protocol.md 4.3, 6.10)."""

    NORMAL = 1
    EXCEED_COUNT_LIMIT = 2


# --------------------------------------------------------------------------- frame header (4.1)


@dataclass(**FROZEN)
class Header:
    """ClientHeader, the header of every web frame (docs/protocol.md 4.1). ``None`` = absent."""

    chid: int | None = pb("chid")
    uuid: int | None = pb("uuid")
    server: str | None = pb("server")
    resource: str | None = pb("resource")
    cmd: str | None = pb("cmd")
    subcmd: str | None = pb("subcmd")
    id: str | None = pb("id")
    dir_flag: int | None = pb("dir_flag")
    cipher: int | None = pb("cipher")
    err_code: int | None = pb("err_code")
    err_str: str | None = pb("err_str")


def encode_header(header: Header) -> bytes:
    """Serialize a ClientHeader; fields go out in field-number order, as jspb writes them."""
    return _encode_header(header)


class HeaderTemplate:
    """The serialized ClientHeader of a session's frames, with only ``id`` varying per frame.

    A session sends many frames whose headers differ only by id (4.1: every frame but CONN
    carries chid, uuid, server, resource, cmd, id). Protobuf writes fields in field-number
    order, so the bytes are those of the fields before ``id`` (1-6), then ``id`` (field 7,
    length-delimited), then those after it (8-11): ``template.encode(i)`` equals
    ``encode_header(replace(header, id=i))`` byte for byte, without a protobuf message.
    """

    __slots__ = ("_after", "_before")

    def __init__(self, header: Header) -> None:
        self._before = _encode_header(
            replace(header, id=None, dir_flag=None, cipher=None, err_code=None, err_str=None)
        )
        self._after = _encode_header(
            Header(
                dir_flag=header.dir_flag,
                cipher=header.cipher,
                err_code=header.err_code,
                err_str=header.err_str,
            )
        )

    def encode(self, header_id: str) -> bytes:
        """The header bytes with ``id = header_id``."""
        raw = header_id.encode("utf-8")
        size = len(raw)
        if size < 0x80:  # the length varint is one byte (every real id)
            return b"".join((self._before, _ID_TAG, _ONE_BYTE[size], raw, self._after))
        return b"".join((self._before, _ID_TAG, varint(size), raw, self._after))


_ID_TAG: Final = b"\x3a"  # field 7 (id), wire type 2 (length-delimited)
_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(0x80))


def decode_header(data: bytes) -> Header:
    """Parse a ClientHeader; raises ``FrameError("bad-header")`` on junk."""
    try:
        return _decode_header(data)
    except PacketError as exc:
        raise FrameError("bad-header", exc.detail or exc.reason) from exc


HeaderFields = tuple[str, str, int]
"""``(cmd, id, cipher)`` of a ClientHeader, absent fields as ``""`` and ``0``."""

_HeaderFromString: Final = _cm.ClientHeader.FromString


def decode_header_fields(data: bytes) -> HeaderFields | None:
    """``cmd``, ``id`` and ``cipher`` of a ClientHeader, without the ``Header`` dataclass.

    The server's hot path reads only these. Returns None for anything ``decode_header`` would
    refuse (junk, a string field that is not UTF-8), so the caller takes the generic decoder
    and its exact error (tests/protocol/test_codec_fast.py compares the two).
    """
    try:
        msg: Any = _HeaderFromString(data)
    except Exception:
        return None
    cmd: Any = msg.cmd
    header_id: Any = msg.id
    # upb hands a proto2 string that is not UTF-8 back as bytes; decode_header refuses it.
    if (
        cmd.__class__ is not str
        or header_id.__class__ is not str
        or msg.server.__class__ is not str
        or msg.resource.__class__ is not str
        or msg.subcmd.__class__ is not str
        or msg.err_str.__class__ is not str
    ):
        return None
    return cmd, header_id, msg.cipher


# --------------------------------------------------------------------------- connection (4.2)


@dataclass(**FROZEN)
class ConnRequest:
    """XMMsgConn. The defaults are what web SDK 1.0.3 sends (docs/protocol.md 4.2, 10.2)."""

    version: int | None = pb("version", default=106)
    model: str | None = pb("model", default="Netscape")
    os: str | None = pb("os", default="")
    udid: str | None = pb("udid", default="websocket")
    sdk: int | None = pb("sdk", default=31)
    connpt: str | None = pb("connpt")
    host: str | None = pb("host")
    locale: str | None = pb("locale")
    andver: int | None = pb("andver")


@dataclass(**FROZEN)
class ConnResponse:
    """XMMsgConnResp: the challenge that the BIND signature covers (docs/protocol.md 6.1)."""

    challenge: str | None = pb("challenge")
    host: str | None = pb("host")


@dataclass(**FROZEN)
class BindRequest:
    """XMMsgBind. Defaults follow the web SDK: ``kick`` present and empty, attrs absent (6.3)."""

    token: str | None = pb("token")
    kick: str | None = pb("kick", default="")
    method: str | None = pb("method", default="XIAOMI-PASS")
    client_attrs: str | None = pb("client_attrs")
    cloud_attrs: str | None = pb("cloud_attrs")
    sig: str | None = pb("sig")


@dataclass(**FROZEN)
class BindResponse:
    """XMMsgBindResp: the BIND result, and also the payload of KICK (docs/protocol.md 4.2)."""

    result: bool | None = pb("result")
    error_type: str | None = pb("error_type")
    error_reason: str | None = pb("error_reason")
    error_desc: str | None = pb("error_desc")


# --------------------------------------------------------------------------- MIMC layer (4.3)


@dataclass(**FROZEN)
class MIMCP2PMessage:
    """A one-to-one message (docs/protocol.md 6.6)."""

    sender: WireUser | None = pb("from", WireUser)
    to: WireUser | None = pb("to", WireUser)
    payload: bytes | None = pb("payload", bytes)
    is_store: bool | None = pb("isStore")
    biz_type: str | None = pb("bizType")


@dataclass(**FROZEN)
class MIMCP2TMessage:
    """A group message (docs/protocol.md 6.7)."""

    sender: WireUser | None = pb("from", WireUser)
    to: MIMCGroup | None = pb("to", MIMCGroup)
    payload: bytes | None = pb("payload", bytes)
    is_store: bool | None = pb("isStore")
    biz_type: str | None = pb("bizType")


@dataclass(**FROZEN)
class MIMCPacketAck:
    """The server's PACKET_ACK of a c2s packet (docs/protocol.md 6.6)."""

    packet_id: str | None = pb("packetId")
    uuid: int | None = pb("uuid")
    resource: str | None = pb("resource")
    sequence: int | None = pb("sequence")
    timestamp: int | None = pb("timestamp")
    package: str | None = pb("package")
    error_msg: str | None = pb("errorMsg")
    code: int | None = pb("code")
    conv_index: int | None = pb("convIndex")


@dataclass(**FROZEN)
class MIMCSequenceAck:
    """The client's SEQUENCE_ACK: delivered up to ``sequence`` (docs/protocol.md 6.9)."""

    uuid: int | None = pb("uuid")
    resource: str | None = pb("resource")
    sequence: int | None = pb("sequence")
    app_id: int | None = pb("appId")


@dataclass(**FROZEN)
class PullMessageRequest:
    """The client's PULL request (docs/protocol.md 6.11)."""

    uuid: int | None = pb("uuid")
    resource: str | None = pb("resource")
    app_id: int | None = pb("appId")


@dataclass(**FROZEN)
class MIMCPacket:
    """The payload of every SECMSG; ``body`` stands for the proto's ``type`` + ``payload``.

    The body's class selects MIMC_MSG_TYPE (docs/protocol.md 4.3). An ``OpaqueBody`` carries a type
    we do not model, or, inside a packet list, a body that failed to decode.
    """

    body: PacketBody
    packet_id: str | None = None
    package: str | None = None
    sequence: int | None = None
    timestamp: int | None = None
    conversation: bool | None = None
    conv_index: int | None = None

    @property
    def type(self) -> int | None:
        """The MIMC_MSG_TYPE number this packet has on the wire."""
        if isinstance(self.body, OpaqueBody):
            return self.body.type
        return int(_BODY_TYPES[type(self.body)])


@dataclass(**FROZEN)
class MIMCPacketList:
    """The payload of COMPOUND: messages for one (uuid, resource) (docs/protocol.md 6.8, 6.10)."""

    uuid: int | None = pb("uuid")
    resource: str | None = pb("resource")
    max_sequence: int | None = pb("maxSequence")
    packets: tuple[MIMCPacket, ...] = pb("packets", MIMCPacket, repeated=True)
    status: int | None = pb("status")
    min_sequence: int | None = pb("minSequence")


PacketBody: TypeAlias = (
    MIMCP2PMessage
    | MIMCP2TMessage
    | MIMCSequenceAck
    | MIMCPacketAck
    | PullMessageRequest
    | MIMCPacketList
    | UCPacket
    | OpaqueBody
)

_BODY_TYPES: Final[dict[type, PacketType]] = {
    MIMCP2PMessage: PacketType.P2P_MESSAGE,
    MIMCP2TMessage: PacketType.P2T_MESSAGE,
    MIMCSequenceAck: PacketType.SEQUENCE_ACK,
    MIMCPacketAck: PacketType.PACKET_ACK,
    PullMessageRequest: PacketType.PULL,
    MIMCPacketList: PacketType.COMPOUND,
    UCPacket: PacketType.UC_PACKET,
}
_BODY_CLASSES: Final[dict[int, type]] = {int(t): cls for cls, t in _BODY_TYPES.items()}
_BODY_NUMBERS: Final[dict[type, int]] = {cls: int(t) for cls, t in _BODY_TYPES.items()}
# Filled at the end of the module, once every class is registered.
_ENCODE: Final[dict[type, Callable[[Any], bytes]]] = {}
_DECODE: Final[dict[int | None, Callable[[bytes], Any]]] = {}


def _fill_packet(msg: Any, packet: MIMCPacket) -> None:
    body = packet.body
    value: Any = packet.packet_id
    if value is not None:
        msg.packetId = value
    value = packet.package
    if value is not None:
        msg.package = value
    value = packet.sequence
    if value is not None:
        msg.sequence = value
    if body.__class__ is OpaqueBody:
        assert isinstance(body, OpaqueBody)
        if body.type is not None:
            msg.type = body.type
        if body.payload is not None:
            msg.payload = body.payload
    else:
        msg.type = _BODY_NUMBERS[body.__class__]
        msg.payload = _ENCODE[body.__class__](body)
    value = packet.timestamp
    if value is not None:
        msg.timestamp = value
    value = packet.conversation
    if value is not None:
        msg.conversation = value
    value = packet.conv_index
    if value is not None:
        msg.convIndex = value


def _read_packet(msg: Any, strict: bool) -> MIMCPacket:
    # Runs for every packet, so written out by hand. A proto2 field whose value is not its
    # default is present; only default-looking values need HasField (see codec_base).
    has = msg.HasField
    packet_id: Any = msg.packetId  # str, or bytes when not UTF-8
    if not packet_id:
        packet_id = packet_id if has("packetId") else None
    elif packet_id.__class__ is bytes:
        scalar(packet_id, "packetId")
    ptype: int | None = msg.type
    if ptype == 1 and not has("type"):  # 1 is the enum's default (P2P_MESSAGE)
        ptype = None
    payload: bytes | None = msg.payload
    if not payload and not has("payload"):
        payload = None
    decode = _DECODE.get(ptype)
    body: PacketBody
    if decode is None:
        body = OpaqueBody(type=ptype, payload=payload)
    else:
        try:
            body = decode(payload or b"")
        except PacketError as exc:
            if strict:
                raise PacketError(exc.reason, exc.detail, packet_id) from exc
            body = OpaqueBody(type=ptype, payload=payload, error=str(exc))
    package: Any = msg.package
    if not package:
        package = package if has("package") else None
    elif package.__class__ is bytes:
        scalar(package, "package")
    sequence: int | None = msg.sequence
    if not sequence and not has("sequence"):
        sequence = None
    timestamp: int | None = msg.timestamp
    if not timestamp and not has("timestamp"):
        timestamp = None
    conversation: bool | None = msg.conversation
    if not conversation and not has("conversation"):
        conversation = None
    conv_index: int | None = msg.convIndex
    if not conv_index and not has("convIndex"):
        conv_index = None
    return _make_packet(body, packet_id, package, sequence, timestamp, conversation, conv_index)


def encode_packet_of(
    body: PacketBody,
    *,
    packet_id: str | None = None,
    package: str | None = None,
    timestamp: int | None = None,
) -> bytes:
    """``encode_packet(MIMCPacket(body=body, ...))`` without building the MIMCPacket.

    The sessions' send path: the same bytes, one frozen dataclass fewer per frame.
    """
    msg: Any = _PacketPB()
    if packet_id is not None:
        msg.packetId = packet_id
    if package is not None:
        msg.package = package
    if body.__class__ is OpaqueBody:
        assert isinstance(body, OpaqueBody)
        if body.type is not None:
            msg.type = body.type
        if body.payload is not None:
            msg.payload = body.payload
    else:
        msg.type = _BODY_NUMBERS[body.__class__]
        msg.payload = _ENCODE[body.__class__](body)
    if timestamp is not None:
        msg.timestamp = timestamp
    data: bytes = msg.SerializePartialToString()
    return data


_PacketPB: Final = _mimc.MIMCPacket
_PacketListPB: Final = _mimc.MIMCPacketList

EncodedEntry: TypeAlias = tuple[str, str, int, int, bytes, int]
"""A packet list entry whose body is already encoded:
``(packet_id, package, sequence, type, body bytes, timestamp)``."""


def encode_packet_list_of(
    entries: Iterable[EncodedEntry],
    *,
    uuid: int | None,
    resource: str | None,
    max_sequence: int,
    status: int,
) -> bytes:
    """A MIMCPacketList (COMPOUND payload, docs/protocol.md 6.8) from already encoded bodies.

    Equals ``encode_message(MIMCPacketList(uuid=..., resource=..., max_sequence=...,
    packets=(MIMCPacket(body=B, packet_id=..., package=..., sequence=..., timestamp=...),
    ...), status=status))`` byte for byte, where ``B`` decodes to the entry's body bytes:
    every field given is present, ``min_sequence`` absent. The server's fan-out encodes a group
    message once and puts the same bytes into every member's list (6.7).
    """
    msg: Any = _PacketListPB()
    if uuid is not None:
        msg.uuid = uuid
    if resource is not None:
        msg.resource = resource
    msg.maxSequence = max_sequence
    add = msg.packets.add
    for packet_id, package, sequence, ptype, body, timestamp in entries:
        packet = add()
        packet.packetId = packet_id
        packet.package = package
        packet.sequence = sequence
        packet.type = ptype
        packet.payload = body
        packet.timestamp = timestamp
    msg.status = status
    data: bytes = msg.SerializePartialToString()
    return data


def encode_packet(packet: MIMCPacket) -> bytes:
    """Serialize a MIMCPacket: the plaintext of a SECMSG payload."""
    return _encode_packet(packet)


def decode_packet(data: bytes) -> MIMCPacket:
    """Parse a SECMSG plaintext; raises ``PacketError`` (with ``packet_id`` when readable).

    Packets inside a packet list that fail to decode become ``OpaqueBody(error=...)``, so one
    bad entry does not cost the others (the web SDK handles each in its own try, 6.8).
    """
    return _decode_packet(data)


# ------------------------------------------------------------- the c2s message fast path

UserFields: TypeAlias = tuple[int | None, str | None, int | None, str | None]
"""MIMCUser flat: ``(app_id, app_account, uuid, resource)``, ``None`` for an absent field."""
GroupFields: TypeAlias = tuple[int | None, int | None]
"""MIMCGroup flat: ``(app_id, topic_id)``, ``None`` for an absent field."""
MessageFields: TypeAlias = tuple[
    int,
    str | None,
    str | None,
    UserFields | None,
    UserFields | GroupFields | None,
    bytes | None,
    bool | None,
    str | None,
]
"""What a server reads of a c2s MIMCPacket carrying a P2P or P2T message, flat: ``(type,
packet_id, package, sender, to, payload, is_store, biz_type)``. ``sender`` is MIMCUser's
``(app_id, app_account, uuid, resource)``; ``to`` is the same for P2P and MIMCGroup's
``(app_id, topic_id)`` for P2T. ``None`` is an absent field or message, as in the dataclasses.
The packet's sequence, timestamp and conversation fields are left out: a server ignores them in
what a client sends."""


def message_fields(packet: MIMCPacket) -> MessageFields | None:
    """The ``MessageFields`` of a decoded P2P or P2T packet; None for any other body."""
    body = packet.body
    to: Any
    if body.__class__ is MIMCP2PMessage:
        assert isinstance(body, MIMCP2PMessage)
        ptype, user = int(PacketType.P2P_MESSAGE), body.to
        to = None if user is None else (user.app_id, user.app_account, user.uuid, user.resource)
    elif body.__class__ is MIMCP2TMessage:
        assert isinstance(body, MIMCP2TMessage)
        ptype, group = int(PacketType.P2T_MESSAGE), body.to
        to = None if group is None else (group.app_id, group.topic_id)
    else:
        return None
    sender = body.sender
    return (
        ptype,
        packet.packet_id,
        packet.package,
        None
        if sender is None
        else (sender.app_id, sender.app_account, sender.uuid, sender.resource),
        to,
        body.payload,
        body.is_store,
        body.biz_type,
    )


def decode_message_packet(data: bytes) -> MessageFields | None:
    """``message_fields(decode_packet(data))`` without the dataclasses, for the server's hot path.

    Returns None for every packet it does not read itself: another type than P2P or P2T, and
    anything unusual (junk, a string that is not UTF-8...). The caller then takes the generic
    ``decode_packet``, which gives the exact error, so the two paths never disagree
    (tests/protocol/test_codec_fast.py checks it with generated packets).
    """
    try:
        msg: Any = _PacketFromString(data)
        ptype = msg.type
        if ptype == 1:
            if not msg.HasField("type"):  # 1 is the default: an absent type is no P2P
                return None
            body: Any = _P2PFromString(msg.payload)
        elif ptype == 2:
            body = _P2TFromString(msg.payload)
        else:
            return None
    except Exception:
        return None
    has, has_body = msg.HasField, body.HasField
    packet_id: Any = msg.packetId  # str, or bytes when not UTF-8
    if not packet_id:
        if not has("packetId"):
            packet_id = None
    elif packet_id.__class__ is not str:
        return None
    package: Any = msg.package
    if not package:
        if not has("package"):
            package = None
    elif package.__class__ is not str:
        return None
    sender: Any = None
    if has_body("from"):
        sender = _flat_user(getattr(body, "from"))
        if sender is None:
            return None
    to: Any = None
    if has_body("to"):
        if ptype == 1:
            to = _flat_user(body.to)
            if to is None:
                return None
        else:
            group = body.to
            app_id, topic_id = group.appId, group.topicId
            if not app_id and not group.HasField("appId"):
                app_id = None
            if not topic_id and not group.HasField("topicId"):
                topic_id = None
            to = (app_id, topic_id)
    payload = body.payload
    if not payload and not has_body("payload"):
        payload = None
    is_store = body.isStore
    if not is_store and not has_body("isStore"):
        is_store = None
    biz_type: Any = body.bizType
    if not biz_type:
        if not has_body("bizType"):
            biz_type = None
    elif biz_type.__class__ is not str:
        return None
    return (
        ptype,
        packet_id,
        package,
        sender,
        to,
        payload,
        is_store,
        biz_type,
    )


def _flat_user(user: Any) -> UserFields | None:
    """MIMCUser as ``(app_id, app_account, uuid, resource)``; None if a string is not UTF-8."""
    app_id, account, uuid, resource = user.appId, user.appAccount, user.uuid, user.resource
    if not app_id and not user.HasField("appId"):
        app_id = None
    if not account:
        if not user.HasField("appAccount"):
            account = None
    elif account.__class__ is not str:
        return None
    if not uuid and not user.HasField("uuid"):
        uuid = None
    if not resource:
        if not user.HasField("resource"):
            resource = None
    elif resource.__class__ is not str:
        return None
    return app_id, account, uuid, resource


# ------------------------------------------------------------- the s2c fast path

AckFields: TypeAlias = tuple[int, str, int, int, str]
"""A PACKET_ACK as a client reads it: ``(4, packet_id, sequence, timestamp, error_msg)``, an absent
field as ``""`` / ``0`` (what the client makes of ``None``)."""
DeliveryFields: TypeAlias = tuple[int, str, int, int, str, str, str, str, int, bytes, str, bool]
"""One P2P or P2T entry of a COMPOUND as a client reads it: ``(type, packet_id, sequence,
timestamp, from_account, from_resource, to_account, to_resource, topic_id, payload, biz_type,
is_store)``, an absent field as its zero value; P2P entries have topic_id 0, P2T entries
empty ``to_*`` strings."""
ListFields: TypeAlias = tuple[int, int | None, str, int | None, list[DeliveryFields]]
"""A COMPOUND (``status`` NORMAL or absent) as a client reads it: ``(6, uuid, resource,
max_sequence, entries)``; ``uuid`` and ``max_sequence`` are ``None`` when absent (the client
tells them apart from 0), ``resource`` is ``""`` when absent."""


def decode_s2c_packet(data: bytes) -> AckFields | ListFields | None:
    """What a client needs of the two s2c packets of every message, without the dataclasses.

    A PACKET_ACK gives ``AckFields``; a COMPOUND whose status is not EXCEED_COUNT_LIMIT and
    whose entries are all well-formed P2P or P2T messages gives ``ListFields``. Everything
    else, and anything unusual (junk, a string that is not UTF-8, an entry of another type or
    that does not decode, a pull notification), returns None: the caller then takes the
    generic ``decode_packet``, which gives the exact error or body, so the two paths never
    disagree (tests/protocol/test_codec_fast.py checks it with generated packets).
    """
    try:
        msg: Any = _PacketFromString(data)
        ptype = msg.type
        if ptype == 4:
            ack: Any = _AckFromString(msg.payload)
        elif ptype == 6:
            plist: Any = _ListFromString(msg.payload)
        else:
            return None
    except Exception:
        return None
    # The generic decoder checks every string of the packet for UTF-8 (upb hands back bytes).
    if msg.packetId.__class__ is not str or msg.package.__class__ is not str:
        return None
    if ptype == 4:
        packet_id, error_msg = ack.packetId, ack.errorMsg
        if (
            packet_id.__class__ is not str
            or error_msg.__class__ is not str
            or ack.resource.__class__ is not str
            or ack.package.__class__ is not str
        ):
            return None
        return (4, packet_id, ack.sequence, ack.timestamp, error_msg)
    if plist.status == 2:  # a pull notification (6.10): the generic path's
        return None
    resource = plist.resource
    if resource.__class__ is not str:
        return None
    uuid: int | None = plist.uuid
    if not uuid and not plist.HasField("uuid"):
        uuid = None
    max_sequence: int | None = plist.maxSequence
    if not max_sequence and not plist.HasField("maxSequence"):
        max_sequence = None
    entries: list[DeliveryFields] = []
    add = entries.append
    try:
        for item in plist.packets:
            etype = item.type
            if etype == 1:
                if not item.HasField("type"):  # 1 is the default: an absent type is no P2P
                    return None
                body: Any = _P2PFromString(item.payload)
                to: Any = body.to
                to_account, to_resource, topic_id = to.appAccount, to.resource, 0
                if to_account.__class__ is not str or to_resource.__class__ is not str:
                    return None
            elif etype == 2:
                body = _P2TFromString(item.payload)
                to_account = to_resource = ""
                topic_id = body.to.topicId
            else:
                return None
            sender: Any = getattr(body, "from")
            entry_id = item.packetId
            from_account, from_resource = sender.appAccount, sender.resource
            biz_type = body.bizType
            if (
                entry_id.__class__ is not str
                or item.package.__class__ is not str
                or from_account.__class__ is not str
                or from_resource.__class__ is not str
                or biz_type.__class__ is not str
            ):
                return None
            add(
                (
                    etype,
                    entry_id,
                    item.sequence,
                    item.timestamp,
                    from_account,
                    from_resource,
                    to_account,
                    to_resource,
                    topic_id,
                    body.payload,
                    biz_type,
                    body.isStore,
                )
            )
    except Exception:  # an entry that does not decode: the generic path reports it
        return None
    return (6, uuid, resource, max_sequence, entries)


_PacketFromString: Final = _mimc.MIMCPacket.FromString
_P2PFromString: Final = _mimc.MIMCP2PMessage.FromString
_P2TFromString: Final = _mimc.MIMCP2TMessage.FromString
_AckFromString: Final = _mimc.MIMCPacketAck.FromString
_ListFromString: Final = _mimc.MIMCPacketList.FromString


register(Header, _cm.ClientHeader)
register(ConnRequest, _cm.XMMsgConn)
register(ConnResponse, _cm.XMMsgConnResp)
register(BindRequest, _cm.XMMsgBind)
register(BindResponse, _cm.XMMsgBindResp)
register(MIMCP2PMessage, _mimc.MIMCP2PMessage)
register(MIMCP2TMessage, _mimc.MIMCP2TMessage)
register(MIMCPacketAck, _mimc.MIMCPacketAck)
register(MIMCSequenceAck, _mimc.MIMCSequenceAck)
register(PullMessageRequest, _mimc.PullMessageRequest)
register(MIMCPacketList, _mimc.MIMCPacketList)
register(MIMCPacket, _mimc.MIMCPacket, fill=_fill_packet, read=_read_packet)
_ENCODE.update({cls: encoder(cls) for cls in _BODY_TYPES})
_DECODE.update({number: decoder(cls) for number, cls in _BODY_CLASSES.items()})
_make_packet: Final = constructor(
    MIMCPacket,
    ("body", "packet_id", "package", "sequence", "timestamp", "conversation", "conv_index"),
)
_encode_packet: Final = encoder(MIMCPacket)
_decode_packet: Final = decoder(MIMCPacket)
_encode_header: Final = encoder(Header)
_decode_header: Final = decoder(Header)
