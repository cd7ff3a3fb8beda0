"""What the official web SDK 1.0.3 does with a server's frames, modelled from docs/protocol.md.

The replay tests (test_sdk_capture_replay.py) send the SDK's captured frames to the real server
and must judge the answers the way the SDK would. This module is that judge. It is written from
the protocol text, **not** from ``mimc_rx.protocol``: frames are parsed with ``struct`` and
``zlib``, payloads decrypted with a few lines of RC4, messages read with the generated protobuf
classes (the schema the capture was decoded with). A check of the server built on the server's
own codec could not catch a mistake the two share.

The model is itself checked against the capture: fed the s2c frames the real SDK accepted, it
must make the handler calls the real SDK made (``test_the_model_reproduces_the_sdk``).

* :func:`parse_frame` applies the SDK's frame rules (2.1): lengths from the prefix, Adler-32 over
  everything before the checksum (a mismatch is dropped silently by the SDK; here it raises).
* :class:`SdkUser` is one logged-in SDK instance: it decrypts s2c SECMSG (5), applies the
  COMPOUND uuid/resource check (6.8), the pull-notification rule (6.10), the UC acceptance check
  (6.12), the sequence dedup (6.8 step 5), and records the handler calls (9.3) and the replies
  the SDK would send (SEQUENCE_ACK, UC SEQ_ACK).
* :func:`field_paths` lists every field present in a frame, nested payloads included, so a frame
  of the server can be compared with the frame of the same kind that the SDK accepted.
* :func:`build_frame` and :func:`rebuild_secmsg` make c2s frames the way the SDK serializes them
  (checked byte for byte against captured frames).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from mimc_rx.protocol._pb import control_message_pb2 as cm
from mimc_rx.protocol._pb import mimc_pb2 as pb

__all__ = [
    "Call",
    "SdkUser",
    "Seen",
    "build_frame",
    "field_paths",
    "parse_frame",
    "rc4",
    "rebuild_secmsg",
    "sdk_text",
]

_PREFIX = struct.Struct(">HHHHHI")  # magic, version, header type, payload type, H, P (2.1)
_CHECKSUM = struct.Struct(">I")

# MIMC_MSG_TYPE (4.3) and UC_MSG_TYPE (4.4) values the model reads.
P2P_MESSAGE, P2T_MESSAGE, SEQUENCE_ACK, PACKET_ACK, PULL, COMPOUND, UC_PACKET = 1, 2, 3, 4, 5, 6, 8
UC_PING, UC_PONG, UC_JOIN_RESP, UC_QUIT_RESP, UC_SEQ_ACK = 1, 2, 4, 6, 7
UC_MESSAGE_LIST, UC_DISMISS = 9, 10
STATUS_EXCEED_COUNT_LIMIT = 2

# What MIMCPacket.payload / UCPacket.payload hold, by type (4.3, 4.4).
PACKET_BODY: dict[int, type[Message]] = {
    P2P_MESSAGE: pb.MIMCP2PMessage,
    P2T_MESSAGE: pb.MIMCP2TMessage,
    SEQUENCE_ACK: pb.MIMCSequenceAck,
    PACKET_ACK: pb.MIMCPacketAck,
    PULL: pb.PullMessageRequest,
    COMPOUND: pb.MIMCPacketList,
    UC_PACKET: pb.UCPacket,
}
UC_BODY: dict[int, type[Message]] = {
    UC_PING: pb.UCPing,
    3: pb.UCJoin,
    UC_JOIN_RESP: pb.UCJoinResp,
    5: pb.UCQuit,
    UC_QUIT_RESP: pb.UCQuitResp,
    UC_SEQ_ACK: pb.UCSequenceAck,
    8: pb.UCMessage,
    UC_MESSAGE_LIST: pb.UCMessageList,
    UC_DISMISS: pb.UCDismiss,
}
FRAME_BODY: dict[str, type[Message]] = {
    "CONN": cm.XMMsgConnResp,
    "BIND": cm.XMMsgBindResp,
    "KICK": cm.XMMsgBindResp,
}


def rc4(key: bytes, data: bytes) -> bytes:
    """Plain RC4: key schedule over the whole key, then the keystream XOR (docs/protocol.md 5)."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def secmsg_key(security_key_b64: str, header_id: str) -> bytes:
    """base64decode(miUserSecurityKey) + "_" + the frame's header id (docs/protocol.md 5)."""
    return base64.b64decode(security_key_b64) + b"_" + header_id.encode("ascii")


def sdk_text(payload: bytes) -> str:
    """The SDK's UTF-8 decoding: it has no 4-byte branch, astral characters vanish (10.7)."""
    return "".join(c for c in payload.decode("utf-8") if ord(c) <= 0xFFFF)


def parse_frame(data: bytes) -> tuple[cm.ClientHeader, bytes]:
    """Split one web frame into its header and (still encrypted) payload (docs/protocol.md 2.1).

    Raises:
        AssertionError: the frame is not what a compatible server sends: wrong constants at
            offsets 0-7, lengths that disagree with the message, or a bad checksum (which the
            SDK would drop without a word).
    """
    assert len(data) >= 18, f"{len(data)} bytes is shorter than any frame"
    magic, version, header_type, payload_type, hlen, plen = _PREFIX.unpack_from(data)
    assert (magic, version, header_type, payload_type) == (0xC2FE, 4, 3, 2), data[:8].hex()
    end = _PREFIX.size + hlen + plen
    assert len(data) == end + _CHECKSUM.size, f"{len(data)} bytes, the lengths say {end + 4}"
    (checksum,) = _CHECKSUM.unpack_from(data, end)
    assert zlib.adler32(data[:end]) == checksum, "bad Adler-32: the SDK drops this frame"
    header = cm.ClientHeader.FromString(data[_PREFIX.size : _PREFIX.size + hlen])
    return header, data[_PREFIX.size + hlen : end]


def build_frame(header: cm.ClientHeader, payload: bytes = b"") -> bytes:
    """A web frame as the SDK builds it: constant prefix, header, payload, Adler-32."""
    head = header.SerializeToString()
    body = _PREFIX.pack(0xC2FE, 4, 3, 2, len(head), len(payload)) + head + payload
    return body + _CHECKSUM.pack(zlib.adler32(body))


def rebuild_secmsg(
    template: bytes, new_id: str, change: Callable[[pb.MIMCPacket, Message], None]
) -> bytes:
    """A c2s SECMSG made from a captured one: a fresh id, and ``change`` applied to the body.

    The header id, the MIMCPacket id (when the template has one) and the UCPacket id move
    together to ``new_id``, as the SDK keeps them equal (6.12). ``change(packet, body)`` edits
    the decoded inner message (for UC packets, the UC body), which is then re-serialized.
    """
    header, payload = parse_frame(template)
    packet = pb.MIMCPacket.FromString(payload)  # the web SDK sends c2s SECMSG clear (5)
    header.id = new_id
    if packet.HasField("packetId"):
        packet.packetId = new_id
    inner = PACKET_BODY[packet.type].FromString(packet.payload)
    if isinstance(inner, pb.UCPacket):
        uc_body = UC_BODY[inner.type].FromString(inner.payload)
        change(packet, uc_body)
        inner.payload = uc_body.SerializeToString()
        inner.packetId = new_id
    else:
        change(packet, inner)
    packet.payload = inner.SerializeToString()
    return build_frame(header, packet.SerializeToString())


# ----------------------------------------------------------------------------- shapes


def _paths(msg: Message, prefix: str, out: set[str]) -> None:
    for fd, value in msg.ListFields():
        name = prefix + fd.name
        repeated = fd.is_repeated
        if repeated:
            name += "[]"
        out.add(name)
        for item in value if repeated else [value]:
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                _paths(item, name + ".", out)
            elif fd.name == "payload" and isinstance(msg, pb.MIMCPacket | pb.UCPacket):
                table = PACKET_BODY if isinstance(msg, pb.MIMCPacket) else UC_BODY
                if msg.type in table:
                    _paths(table[msg.type].FromString(item), name + ".", out)


def field_paths(data: bytes, security_key_b64: str | None = None) -> set[str]:
    """Every field present in an s2c frame, nested payloads decoded (``payload.payload.uuid``).

    SECMSG payloads are decrypted with ``security_key_b64`` first.
    """
    header, payload = parse_frame(data)
    out: set[str] = set()
    _paths(header, "header.", out)
    if header.cmd == "SECMSG":
        assert security_key_b64 is not None
        plain = rc4(secmsg_key(security_key_b64, header.id), payload)
        _paths(pb.MIMCPacket.FromString(plain), "payload.", out)
    elif header.cmd in FRAME_BODY:
        _paths(FRAME_BODY[header.cmd].FromString(payload), "payload.", out)
    return out


# ----------------------------------------------------------------------------- the SDK


@dataclass
class Call:
    """One call of an app handler registered with the SDK (9.3), as the capture records it."""

    handler: str
    args: list[Any]


@dataclass
class Seen:
    """One s2c frame and what the SDK made of it."""

    raw: bytes
    cmd: str
    header: cm.ClientHeader
    packet: pb.MIMCPacket | None = None
    uc: pb.UCPacket | None = None
    calls: list[Call] = field(default_factory=list)
    replies: list[tuple[Any, ...]] = field(default_factory=list)
    dropped: str | None = None

    @property
    def kind(self) -> str:
        """CONN, BIND, KICK, PING, or the MIMC / UC type name of a SECMSG."""
        if self.uc is not None:
            return "UC_" + pb.UC_MSG_TYPE.Name(self.uc.type)
        if self.packet is not None:
            return pb.MIMC_MSG_TYPE.Name(self.packet.type)
        return self.cmd


class SdkUser:
    """One MIMCUser of the web SDK 1.0.3 after its token callback ran (6.1 step 6).

    Args:
        uuid: ``miUserId`` as the token answer gave it (a decimal string).
        resource: the session resource.
        security_key: ``miUserSecurityKey`` as received (base64 text).
        pull_handler: the app's pull-notification handler; its truthiness decides the ack
            (6.10). None means no handler registered (the SDK then acks by itself).
    """

    def __init__(
        self,
        *,
        uuid: str,
        resource: str,
        security_key: str,
        pull_handler: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.uuid = uuid
        self.resource = resource
        self.security_key = security_key
        self.pull_handler = pull_handler
        self.challenge: str | None = None
        self.logged_in = False
        self.seen_sequences: set[str] = set()
        self.last_min = "-1"
        self.last_max = "-1"
        self.calls: list[Call] = []

    def receive(self, data: bytes) -> Seen:
        """Handle one s2c websocket message as the SDK does."""
        header, payload = parse_frame(data)
        seen = Seen(raw=data, cmd=header.cmd, header=header)
        if header.cmd == "CONN":
            self.challenge = cm.XMMsgConnResp.FromString(payload).challenge
            seen.replies.append(("BIND",))  # 6.1 steps 3-6
        elif header.cmd == "BIND":
            resp = cm.XMMsgBindResp.FromString(payload)
            self.logged_in = resp.result
            self._call(seen, "statusChange", resp.result, resp.error_type, resp.error_reason,
                       resp.error_desc)  # fmt: skip
        elif header.cmd == "KICK":
            # 6.13: the SDK closes the socket; its close handler calls the disconnect handler.
            self.logged_in = False
            self._call(seen, "disconnect")
        elif header.cmd == "SECMSG":
            plain = rc4(secmsg_key(self.security_key, header.id), payload)
            try:
                seen.packet = pb.MIMCPacket.FromString(plain)
                self._on_packet(seen, seen.packet)
            except DecodeError as exc:
                raise AssertionError(
                    f"SECMSG {header.id}: no MIMCPacket after RC4 with the key rule of 5: {exc}"
                ) from exc
        # Every other cmd (PING included) has no case in SDK 1.0.3 (3, 6.5).
        return seen

    # ------------------------------------------------------------------ SECMSG

    def _on_packet(self, seen: Seen, packet: pb.MIMCPacket) -> None:
        if packet.type == PACKET_ACK:
            ack = pb.MIMCPacketAck.FromString(packet.payload)
            self._call(seen, "serverAck", ack.packetId, str(ack.sequence), str(ack.timestamp),
                       ack.errorMsg)  # fmt: skip
        elif packet.type == COMPOUND:
            self._on_compound(seen, pb.MIMCPacketList.FromString(packet.payload))
        elif packet.type == UC_PACKET:
            seen.uc = pb.UCPacket.FromString(packet.payload)
            self._on_uc(seen, seen.uc)

    def _on_compound(self, seen: Seen, lst: pb.MIMCPacketList) -> None:
        # 6.8 step 2 (10.5): a list for another uuid/resource is dropped, without an ack.
        if str(lst.uuid) != self.uuid or lst.resource != self.resource:
            seen.dropped = f"list for {lst.uuid}/{lst.resource}"
            return
        if lst.status == STATUS_EXCEED_COUNT_LIMIT:  # 6.10
            low, high = str(lst.minSequence), str(lst.maxSequence)
            if low == self.last_min:
                seen.replies.append(("SEQUENCE_ACK", self.last_max))
                return
            self._call(seen, "pullNotification", low, high)
            if self.pull_handler is None or self.pull_handler(low, high):
                seen.replies.append(("SEQUENCE_ACK", high))
            self.last_min, self.last_max = low, high
            return
        seen.replies.append(("SEQUENCE_ACK", str(lst.maxSequence)))  # 6.8 step 4: ack first
        for packet in lst.packets:
            if packet.type not in (P2P_MESSAGE, P2T_MESSAGE):
                continue
            sequence = str(packet.sequence)
            if sequence in self.seen_sequences:  # 10.6: acked, not dispatched
                continue
            self.seen_sequences.add(sequence)
            if packet.type == P2P_MESSAGE:
                msg = pb.MIMCP2PMessage.FromString(packet.payload)
                sender, to = getattr(msg, "from"), msg.to
                self._call(seen, "p2p", {
                    "packetId": packet.packetId, "sequence": sequence,
                    "fromAccount": sender.appAccount, "fromResource": sender.resource,
                    "payload": sdk_text(msg.payload), "timeStamp": str(packet.timestamp),
                    "bizType": msg.bizType, "toAccount": to.appAccount, "toResource": to.resource,
                })  # fmt: skip
            else:
                group = pb.MIMCP2TMessage.FromString(packet.payload)
                sender = getattr(group, "from")
                self._call(seen, "group", {
                    "packetId": packet.packetId, "sequence": sequence,
                    "fromAccount": sender.appAccount, "fromResource": sender.resource,
                    "payload": sdk_text(group.payload), "timeStamp": str(packet.timestamp),
                    "bizType": group.bizType, "topicId": str(group.to.topicId),
                })  # fmt: skip

    def _on_uc(self, seen: Seen, uc: pb.UCPacket) -> None:
        # 6.12 (10.11): dropped only when BOTH the uuid and the resource differ.
        if str(uc.user.uuid) != self.uuid and uc.user.resource != self.resource:
            seen.dropped = f"UC packet for {uc.user.uuid}/{uc.user.resource}"
            return
        if uc.type == UC_JOIN_RESP:
            join = pb.UCJoinResp.FromString(uc.payload)
            self._call(seen, "ucJoinResp", str(join.group.topicId), join.code, join.message)
        elif uc.type == UC_QUIT_RESP:
            quit_ = pb.UCQuitResp.FromString(uc.payload)
            self._call(seen, "ucQuitResp", str(quit_.group.topicId), quit_.code, quit_.message)
        elif uc.type == UC_MESSAGE_LIST:
            lst = pb.UCMessageList.FromString(uc.payload)
            topic = str(lst.group.topicId)
            seen.replies.append(("UC_SEQ_ACK", topic, str(lst.maxSequence)))  # ack first
            for m in lst.message:  # UC messages are not deduplicated (6.12)
                self._call(seen, "ucMsg", {
                    "packetId": m.packetId, "sequence": str(m.sequence),
                    "fromAccount": m.user.appAccount, "fromResource": m.user.resource,
                    "payload": sdk_text(m.payload), "timeStamp": str(m.timestamp),
                    "bizType": m.bizType, "topicId": topic,
                })  # fmt: skip
        elif uc.type == UC_DISMISS:
            self._call(seen, "ucDismiss", str(pb.UCDismiss.FromString(uc.payload).group.topicId))
        # PONG and the rest: no handler (6.12).

    def _call(self, seen: Seen, handler: str, *args: Any) -> None:
        call = Call(handler, list(args))
        seen.calls.append(call)
        self.calls.append(call)
