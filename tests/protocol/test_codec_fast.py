"""The server's fast path for c2s P2P / P2T packets equals the generic decoder (issue 11).

``codec.decode_message_packet`` must give ``codec.message_fields(codec.decode_packet(data))``
for every packet it reads, and None (so the generic decoder answers, with its exact error) for
every other; a server session must emit the same events whichever path reads a frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimc_rx.errors import PacketError
from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import (
    MIMCP2PMessage,
    MIMCP2TMessage,
    MIMCPacket,
    MIMCSequenceAck,
    WireUser,
)
from mimc_rx.protocol.framing import Frame, serialize_frame
from mimc_rx.testing import MemoryHub

from .test_codec import leaf_packets

packets = leaf_packets.filter(lambda p: isinstance(p.body, MIMCP2PMessage | MIMCP2TMessage))


def _generic(data: bytes) -> codec.MessageFields | PacketError | None:
    try:
        return codec.message_fields(codec.decode_packet(data))
    except PacketError as exc:
        return exc


@settings(max_examples=400)
@given(leaf_packets)
def test_every_message_packet_is_read_as_the_generic_decoder_reads_it(packet: MIMCPacket) -> None:
    data = codec.encode_packet(packet)
    fast = codec.decode_message_packet(data)
    if isinstance(packet.body, MIMCP2PMessage | MIMCP2TMessage):
        assert fast is not None
        assert fast == codec.message_fields(codec.decode_packet(data))
    else:
        assert fast is None  # another type: the generic decoder's


@settings(max_examples=400)
@given(leaf_packets, st.data())
def test_damaged_packets_are_read_the_same_or_left_to_the_generic_decoder(
    packet: MIMCPacket, data: st.DataObject
) -> None:
    raw = bytearray(codec.encode_packet(packet))
    for _ in range(data.draw(st.integers(1, 3))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    damaged = bytes(raw)
    fast = codec.decode_message_packet(damaged)
    if fast is not None:
        assert fast == _generic(damaged)


@given(st.binary(max_size=200))
def test_junk_is_read_the_same_or_left_to_the_generic_decoder(data: bytes) -> None:
    fast = codec.decode_message_packet(data)
    if fast is not None:
        assert fast == _generic(data)


def _field(number: int, value: bytes) -> bytes:
    return bytes((number << 3 | 2, len(value))) + value


@pytest.mark.parametrize(
    "data",
    [
        # packetId that is not UTF-8
        _field(1, b"\xff") + b"\x20\x01" + _field(5, b""),
        # bizType (P2P field 5) that is not UTF-8
        _field(1, b"p") + b"\x20\x01" + _field(5, _field(5, b"\xc3")),
        # the sender's appAccount (MIMCUser field 2) that is not UTF-8
        _field(1, b"p") + b"\x20\x02" + _field(5, _field(1, _field(2, b"\x80"))),
        # type absent (1 is its default): not a P2P message for the generic decoder either
        _field(1, b"p") + _field(5, b""),
        # a truncated body
        _field(1, b"p") + b"\x20\x01" + _field(5, b"\x0a\x05ab"),
    ],
)
def test_unusual_packets_go_to_the_generic_decoder(data: bytes) -> None:
    assert codec.decode_message_packet(data) is None
    assert not isinstance(_generic(data), tuple)


def test_other_types_go_to_the_generic_decoder() -> None:
    data = codec.encode_packet(MIMCPacket(body=MIMCSequenceAck(sequence=5), packet_id="p"))
    assert codec.decode_message_packet(data) is None


# ------------------------------------------------------------------ through a server session


def _events(
    data: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[object], list[bytes], bool]:
    hub = MemoryHub()
    pair = hub.connect("alice")
    server = pair.server
    server.events_received()
    header = codec.Header(
        chid=9,
        uuid=server.uuid,
        server="xiaomi.com",
        resource=server.resource,
        cmd="SECMSG",
        id="web1",
    )
    frame = serialize_frame(Frame(header=header, payload=data))
    with monkeypatch.context() as patch:
        if not fast:
            nothing: Callable[[bytes], None] = lambda _data: None  # noqa: E731
            patch.setattr(codec, "decode_message_packet", nothing)
        server.receive_data(frame, 0.0)
    return list(server.events_received()), server.data_to_send(), server.close_requested


@settings(max_examples=200)
@given(packets, st.booleans())
def test_a_server_session_emits_the_same_events_on_both_paths(
    packet: MIMCPacket, own_sender: bool
) -> None:
    body = packet.body
    assert isinstance(body, MIMCP2PMessage | MIMCP2TMessage)
    if own_sender and body.sender is not None:  # mostly the bound user, as clients do
        body = dataclasses.replace(body, sender=WireUser(app_account="alice"))
        packet = dataclasses.replace(packet, body=body)
    data = codec.encode_packet(packet)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = _events(data, True, monkeypatch)
        generic = _events(data, False, monkeypatch)
    assert fast[0] == generic[0]
    assert fast[2] == generic[2]
    assert len(fast[1]) == len(generic[1])
