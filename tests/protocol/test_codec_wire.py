"""codec_wire writes the bytes the generic codec writes (upb), for the values the server sends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.protocol import codec, codec_wire
from mimc_rx.protocol.codec import (
    MIMCP2PMessage,
    MIMCPacket,
    MIMCPacketAck,
    MIMCPacketList,
    OpaqueBody,
    WireUser,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
i32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
text = st.text(max_size=300)
maybe = st.none().__or__


@given(i64)
def test_varint(value: int) -> None:
    assert codec_wire.varint(value) == codec.encode_message(codec.MIMCPacketAck(sequence=value))[1:]


@given(maybe(u64), maybe(text), maybe(u64), maybe(text))
def test_user(app_id: int | None, account: str | None, uuid: int | None, res: str | None) -> None:
    expected = codec.encode_message(
        WireUser(app_id=app_id, app_account=account, uuid=uuid, resource=res)
    )
    assert codec_wire.encode_user(app_id, account, uuid, res) == expected


@given(u64, text, st.binary(max_size=400), st.booleans(), maybe(text))
def test_p2p_message(
    app_id: int, account: str, payload: bytes, is_store: bool, biz: str | None
) -> None:
    sender = WireUser(app_id=app_id, app_account=account)
    to = WireUser(app_id=app_id, app_account="", uuid=7, resource=account or None)
    expected = codec.encode_message(
        MIMCP2PMessage(sender=sender, to=to, payload=payload, is_store=is_store, biz_type=biz)
    )
    got = codec_wire.encode_p2p_message(
        codec.encode_message(sender), codec.encode_message(to), payload, is_store, biz
    )
    assert got == expected


@given(text, u64, text, i64, i64, text, text, i32)
def test_packet_ack(
    pid: str, uuid: int, res: str, seq: int, ts: int, package: str, error: str, code: int
) -> None:
    expected = codec.encode_message(
        MIMCPacketAck(
            packet_id=pid,
            uuid=uuid,
            resource=res,
            sequence=seq,
            timestamp=ts,
            package=package,
            error_msg=error,
            code=code,
        )
    )
    template = codec_wire.PacketAckTemplate(uuid, res, package)
    assert template.encode(pid, seq, ts, error, code) == expected


@given(text, maybe(text), st.integers(min_value=1, max_value=12), st.binary(max_size=400), i64)
def test_packet(pid: str, package: str | None, ptype: int, payload: bytes, ts: int) -> None:
    expected = codec.encode_packet_of(
        OpaqueBody(type=ptype, payload=payload), packet_id=pid, package=package, timestamp=ts
    )
    assert codec_wire.PacketTemplate(package).encode(pid, ptype, payload, ts) == expected


entry = st.tuples(text, text, i64, st.integers(min_value=1, max_value=12), st.binary(), i64)


@given(st.lists(entry, max_size=5), maybe(u64), maybe(text), i64, st.integers(1, 2))
def test_packet_list(
    entries: list[tuple[str, str, int, int, bytes, int]],
    uuid: int | None,
    res: str | None,
    max_seq: int,
    status: int,
) -> None:
    expected = codec.encode_packet_list_of(
        entries, uuid=uuid, resource=res, max_sequence=max_seq, status=status
    )
    got = codec_wire.encode_packet_list(
        entries, uuid=uuid, resource=res, max_sequence=max_seq, status=status
    )
    assert got == expected
    packets = codec.decode_message(MIMCPacketList, got).packets
    assert all(isinstance(p, MIMCPacket) for p in packets)


@given(maybe(u64), maybe(u64))
def test_group(app_id: int | None, topic_id: int | None) -> None:
    expected = codec.encode_message(codec.MIMCGroup(app_id=app_id, topic_id=topic_id))
    assert codec_wire.encode_group(app_id, topic_id) == expected


@given(
    st.tuples(maybe(u64), maybe(text), maybe(u64), maybe(text)),
    maybe(text),
    text,
    text,
    u64,
    st.binary(max_size=400),
    st.booleans(),
    maybe(text),
)
def test_send_template(
    me: tuple[int | None, str | None, int | None, str | None],
    package: str | None,
    pid: str,
    account: str,
    topic_id: int,
    payload: bytes,
    is_store: bool,
    biz: str | None,
) -> None:
    """The client's P2P and P2T packets equal the generic encoder's (codec.encode_packet_of)."""
    sender = WireUser(app_id=me[0], app_account=me[1], uuid=me[2], resource=me[3])
    template = codec_wire.SendTemplate(
        codec_wire.encode_user(*me),
        me[0],
        package,
        p2p_type=int(codec.PacketType.P2P_MESSAGE),
        p2t_type=int(codec.PacketType.P2T_MESSAGE),
    )
    p2p = MIMCP2PMessage(
        sender=sender,
        to=WireUser(app_id=me[0], app_account=account),
        payload=payload,
        is_store=is_store,
        biz_type=biz,
    )
    expected = codec.encode_packet_of(p2p, packet_id=pid, package=package)
    assert template.p2p(pid, account, payload, is_store, biz) == expected
    p2t = codec.MIMCP2TMessage(
        sender=sender,
        to=codec.MIMCGroup(app_id=me[0], topic_id=topic_id),
        payload=payload,
        is_store=is_store,
        biz_type=biz,
    )
    expected = codec.encode_packet_of(p2t, packet_id=pid, package=package)
    assert template.p2t(pid, topic_id, payload, is_store, biz) == expected
