"""The codec: every captured payload decodes to its recorded fields and encodes back to the
same bytes; round trips and junk input under hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.errors import FrameError, PacketError
from mimc_rx.protocol import codec, codec_uc, crypto
from mimc_rx.protocol.codec import (
    BindRequest,
    BindResponse,
    ConnRequest,
    ConnResponse,
    Header,
    MIMCGroup,
    MIMCPacket,
    OpaqueBody,
    WireUser,
)
from mimc_rx.protocol.framing import parse_frame

from .vectors import all_examples, normalize_recorded, to_record

CONNECTION_MESSAGES = {
    ("c2s", "CONN"): ConnRequest,
    ("s2c", "CONN"): ConnResponse,
    ("c2s", "BIND"): BindRequest,
    ("s2c", "BIND"): BindResponse,
    ("s2c", "KICK"): BindResponse,
}
EXAMPLES = all_examples()
IDS = [f"{name}[{i}]" for name, i, _ in EXAMPLES]


def _plaintext(example: dict[str, Any]) -> bytes:
    frame = parse_frame(bytes.fromhex(example["hex"]))
    if example["direction"] == "s2c" and frame.header.cmd == "SECMSG":
        key = example["encryption"]["security_key_b64"]
        return crypto.rc4_payload(key, frame.header.id or "", frame.payload)
    return frame.payload


@pytest.mark.parametrize(("name", "index", "example"), EXAMPLES, ids=IDS)
def test_captured_payload_decodes_to_recorded_fields_and_back(
    name: str, index: int, example: dict[str, Any]
) -> None:
    direction = example["direction"]
    cmd = example["decoded"]["header"]["cmd"]
    recorded = example["decoded"].get("payload_decoded")
    payload = _plaintext(example)
    if cmd == "SECMSG":
        packet = codec.decode_packet(payload)
        assert to_record(packet) == normalize_recorded(recorded)
        assert codec.encode_packet(packet) == payload  # presence kept exactly
        _check_utf8_extras(packet, recorded)
    elif (direction, cmd) in CONNECTION_MESSAGES:
        message: Any = codec.decode_message(CONNECTION_MESSAGES[direction, cmd], payload)
        assert to_record(message) == recorded
        assert codec.encode_message(message) == payload
    else:  # PING {} (an empty XMMsgPing) and UBND (no payload)
        assert payload == b""
        assert recorded in ({}, None)


def _check_utf8_extras(packet: MIMCPacket, recorded: dict[str, Any]) -> None:
    """``payload_utf8`` in the vectors is the message text: our bytes decode to it."""
    inner = recorded.get("payload_decoded") or {}
    bodies = [packet.body]
    if isinstance(packet.body, codec.MIMCPacketList):
        bodies = [p.body for p in packet.body.packets]
        inner_list = inner.get("packets", [])
        for body, rec in zip(bodies, inner_list, strict=True):
            text = rec.get("payload_decoded", {}).get("payload_utf8")
            if text is not None:
                assert isinstance(body, codec.MIMCP2PMessage | codec.MIMCP2TMessage)
                assert (body.payload or b"").decode("utf-8") == text
    elif "payload_utf8" in inner:
        body = packet.body
        assert isinstance(body, codec.MIMCP2PMessage | codec.MIMCP2TMessage)
        assert (body.payload or b"").decode("utf-8") == inner["payload_utf8"]


def test_web_defaults_make_the_captured_conn_and_bind_payloads() -> None:
    # docs/protocol.md 4.2, 10.1, 10.2: os and kick are present and empty; attrs absent.
    conn = codec.encode_message(ConnRequest())
    assert conn.hex() == "086a12084e657473636170651a002209776562736f636b6574281f"
    bind = codec.encode_message(BindRequest(token="T", sig="S"))
    assert bind == b"\x0a\x01T\x12\x00\x1a\x0bXIAOMI-PASS\x32\x01S"


def test_absent_and_empty_are_different() -> None:
    assert codec.encode_message(WireUser(app_account="")) == b"\x12\x00"
    assert codec.encode_message(WireUser()) == b""
    assert codec.decode_message(WireUser, b"\x12\x00") == WireUser(app_account="")
    assert codec.decode_message(WireUser, b"") == WireUser()


def test_a_bad_entry_of_a_packet_list_does_not_cost_the_others() -> None:
    good = MIMCPacket(body=codec.MIMCP2PMessage(payload=b"ok"), sequence=1)
    bad = MIMCPacket(body=OpaqueBody(type=1, payload=b"\xff\xff\xff"), sequence=2)
    data = codec.encode_packet(MIMCPacket(body=codec.MIMCPacketList(packets=(good, bad))))
    packets = codec.decode_packet(data).body.packets  # type: ignore[union-attr]
    assert packets[0] == good
    assert isinstance(packets[1].body, OpaqueBody)
    assert packets[1].body.error
    assert packets[1].sequence == 2


def test_a_bad_top_level_body_carries_the_packet_id() -> None:
    data = codec.encode_packet(
        MIMCPacket(body=OpaqueBody(type=1, payload=b"\x0a\xff"), packet_id="p1")
    )
    with pytest.raises(PacketError) as info:
        codec.decode_packet(data)
    assert info.value.packet_id == "p1"
    assert info.value.reason == "bad-protobuf"


def test_non_utf8_strings_are_packet_errors() -> None:
    with pytest.raises(PacketError) as info:
        codec.decode_message(WireUser, b"\x12\x02\xff\xfe")
    assert info.value.reason == "bad-utf8"
    with pytest.raises(FrameError) as frame_info:
        codec.decode_header(b"\x2a\x01\xff")
    assert frame_info.value.reason == "bad-header"


def test_unknown_and_unmodelled_types_stay_opaque() -> None:
    rts = MIMCPacket(body=OpaqueBody(type=7, payload=b"\x01\x02"), packet_id="x")
    assert codec.decode_packet(codec.encode_packet(rts)) == rts
    assert rts.type == 7
    # an enum number outside MIMC_MSG_TYPE is dropped by proto2 as an unknown field
    assert codec.decode_packet(b"\x20\x63").body == OpaqueBody(type=None, payload=None)


# ----------------------------------------------------------------------------- hypothesis

i32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=20)
blob = st.binary(max_size=40)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


users = st.builds(
    WireUser, app_id=opt(u64), app_account=opt(text), uuid=opt(u64), resource=opt(text)
)
groups = st.builds(MIMCGroup, app_id=opt(u64), topic_id=opt(u64))
headers = st.builds(
    Header,
    chid=opt(i32),
    uuid=opt(i64),
    server=opt(text),
    resource=opt(text),
    cmd=opt(text),
    subcmd=opt(text),
    id=opt(text),
    dir_flag=opt(st.integers(1, 6)),
    cipher=opt(i32),
    err_code=opt(i32),
    err_str=opt(text),
)
connection = st.one_of(
    st.builds(
        ConnRequest,
        version=opt(u32),
        model=opt(text),
        os=opt(text),
        udid=opt(text),
        sdk=opt(i32),
        connpt=opt(text),
        host=opt(text),
        locale=opt(text),
        andver=opt(i32),
    ),
    st.builds(ConnResponse, challenge=opt(text), host=opt(text)),
    st.builds(
        BindRequest,
        token=opt(text),
        kick=opt(text),
        method=opt(text),
        client_attrs=opt(text),
        cloud_attrs=opt(text),
        sig=opt(text),
    ),
    st.builds(
        BindResponse,
        result=opt(st.booleans()),
        error_type=opt(text),
        error_reason=opt(text),
        error_desc=opt(text),
    ),
)
uc_messages = st.builds(
    codec_uc.UCMessageBody,
    group=opt(groups),
    payload=opt(blob),
    sequence=opt(i64),
    is_store=opt(st.booleans()),
    user=opt(users),
    timestamp=opt(i64),
    packet_id=opt(text),
    biz_type=opt(text),
)
uc_bodies = st.one_of(
    st.builds(codec_uc.UCJoin, group=opt(groups)),
    st.builds(codec_uc.UCJoinResp, group=opt(groups), code=opt(i32), message=opt(text)),
    st.builds(codec_uc.UCQuit, group=opt(groups)),
    st.builds(codec_uc.UCQuitResp, group=opt(groups), code=opt(i32), message=opt(text)),
    st.builds(codec_uc.UCPing, groups=st.lists(groups, max_size=3).map(tuple)),
    st.builds(codec_uc.UCPong, data=blob),
    st.builds(codec_uc.UCSequenceAck, group=opt(groups), sequence=opt(i64)),
    uc_messages,
    st.builds(
        codec_uc.UCMessageList,
        group=opt(groups),
        messages=st.lists(uc_messages, max_size=2).map(tuple),
        max_sequence=opt(i64),
    ),
    st.builds(codec_uc.UCDismiss, group=opt(groups)),
    st.builds(codec_uc.UCQueryOnlineUsersResp, group=opt(groups), user_count=opt(i64)),
    st.builds(OpaqueBody, type=st.none(), payload=opt(blob)),  # every UC type is modelled
)
uc_packets = st.builds(codec_uc.UCPacket, body=uc_bodies, user=opt(users), packet_id=opt(text))
leaf_bodies = st.one_of(
    st.builds(
        codec.MIMCP2PMessage,
        sender=opt(users),
        to=opt(users),
        payload=opt(blob),
        is_store=opt(st.booleans()),
        biz_type=opt(text),
    ),
    st.builds(
        codec.MIMCP2TMessage,
        sender=opt(users),
        to=opt(groups),
        payload=opt(blob),
        is_store=opt(st.booleans()),
        biz_type=opt(text),
    ),
    st.builds(
        codec.MIMCSequenceAck, uuid=opt(u64), resource=opt(text), sequence=opt(i64), app_id=opt(u64)
    ),
    st.builds(
        codec.MIMCPacketAck,
        packet_id=opt(text),
        uuid=opt(u64),
        resource=opt(text),
        sequence=opt(i64),
        timestamp=opt(i64),
        package=opt(text),
        error_msg=opt(text),
        code=opt(i32),
        conv_index=opt(i64),
    ),
    st.builds(codec.PullMessageRequest, uuid=opt(u64), resource=opt(text), app_id=opt(u64)),
    uc_packets,
    st.builds(OpaqueBody, type=st.sampled_from([7, 9, 10, 11, 12]), payload=opt(blob)),
)


def packets_with(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[MIMCPacket]:
    return st.builds(
        MIMCPacket,
        body=bodies,
        packet_id=opt(text),
        package=opt(text),
        sequence=opt(i64),
        timestamp=opt(i64),
        conversation=opt(st.booleans()),
        conv_index=opt(i64),
    )


leaf_packets = packets_with(leaf_bodies)
packet_lists = st.builds(
    codec.MIMCPacketList,
    uuid=opt(u64),
    resource=opt(text),
    max_sequence=opt(i64),
    packets=st.lists(leaf_packets, max_size=3).map(tuple),
    status=opt(st.sampled_from([1, 2])),
    min_sequence=opt(i64),
)
packets = packets_with(leaf_bodies | packet_lists)


@given(headers)
def test_header_round_trip(header: Header) -> None:
    assert codec.decode_header(codec.encode_header(header)) == header


@given(connection)
def test_connection_message_round_trip(message: Any) -> None:
    assert codec.decode_message(type(message), codec.encode_message(message)) == message


@given(packets)
def test_packet_round_trip(packet: MIMCPacket) -> None:
    data = codec.encode_packet(packet)
    assert codec.decode_packet(data) == packet
    assert codec.encode_packet(codec.decode_packet(data)) == data


def _decode_outcome(cls: type, data: bytes) -> str:
    try:
        codec.decode_message(cls, data)
    except PacketError as exc:  # only PacketError may come out
        return exc.reason
    return "ok"


@given(st.binary(max_size=200))
def test_junk_decodes_or_raises_packet_error_only(data: bytes) -> None:
    for cls in (MIMCPacket, ConnRequest, BindRequest, BindResponse, codec_uc.UCPacket):
        assert _decode_outcome(cls, data) in {"ok", "bad-protobuf", "bad-utf8"}


@given(packets, st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3))
def test_mutated_packets_decode_or_raise_packet_error_only(
    packet: MIMCPacket, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(codec.encode_packet(packet))
    for pos, mask in flips:
        if data:
            data[pos % len(data)] ^= mask
    assert _decode_outcome(MIMCPacket, bytes(data)) in {"ok", "bad-protobuf", "bad-utf8"}
