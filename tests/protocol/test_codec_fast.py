"""The fast paths of the hot packets equal the generic decoder (issue 11).

Server: ``codec.decode_message_packet`` must give ``codec.message_fields(codec.decode_packet(
data))`` for every packet it reads, and None (so the generic decoder answers, with its exact
error) for every other; a server session must emit the same events whichever path reads a frame.

Client: ``codec.decode_s2c_packet`` must give what the client reads of a generically decoded
PACKET_ACK or COMPOUND of P2P/P2T messages, and None for everything else; a bound client session
fed the same frames on both paths must emit the same events, queue the same bytes and end with
the same memory (outbox, seen-sequence window, acked ids, pull state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimc_rx.errors import FrameError, PacketError
from mimc_rx.protocol import codec
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.codec import (
    MIMCP2PMessage,
    MIMCP2TMessage,
    MIMCPacket,
    MIMCSequenceAck,
    WireUser,
)
from mimc_rx.protocol.crypto import PayloadCipher
from mimc_rx.protocol.framing import Frame, serialize_frame
from mimc_rx.protocol.memory import SessionMemory
from mimc_rx.testing import MemoryHub

from .test_codec import blob, groups, headers, leaf_packets, opt, text, users

packets = leaf_packets.filter(lambda p: isinstance(p.body, MIMCP2PMessage | MIMCP2TMessage))


def _generic(data: bytes) -> codec.MessageFields | PacketError | None:
    try:
        return codec.message_fields(codec.decode_packet(data))
    except PacketError as exc:
        return exc


def _damage(packet: bytes, data: st.DataObject) -> bytes:
    """``packet`` with one to three bytes overwritten."""
    raw = bytearray(packet)
    for _ in range(data.draw(st.integers(1, 3))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    return bytes(raw)


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
    damaged = _damage(codec.encode_packet(packet), data)
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


# ------------------------------------------------------------------ the server's frame header


def _generic_header(data: bytes) -> codec.HeaderFields | None:
    try:
        header = codec.decode_header(data)
    except FrameError:
        return None
    return header.cmd or "", header.id or "", header.cipher or 0


@settings(max_examples=300)
@given(headers, st.data())
def test_headers_are_read_as_the_generic_decoder_reads_them(
    header: codec.Header, data: st.DataObject
) -> None:
    encoded = codec.encode_header(header)
    assert codec.decode_header_fields(encoded) == _generic_header(encoded)
    damaged = _damage(encoded, data)
    fast = codec.decode_header_fields(damaged)
    if fast is not None:  # else the generic decoder answers, with its exact error
        assert fast == _generic_header(damaged)


@given(st.binary(max_size=100))
def test_header_junk_is_read_the_same_or_left_to_the_generic_decoder(data: bytes) -> None:
    fast = codec.decode_header_fields(data)
    if fast is not None:
        assert fast == _generic_header(data)


@pytest.mark.parametrize("number", [3, 4, 5, 6, 7, 11])  # every string field of ClientHeader
def test_headers_with_a_string_that_is_not_utf8_go_to_the_generic_decoder(number: int) -> None:
    data = _field(number, b"\xff")
    assert codec.decode_header_fields(data) is None
    assert _generic_header(data) is None


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
        if not fast:  # the generic decoders of both the frame header and the packet
            nothing: Callable[[bytes], None] = lambda _data: None  # noqa: E731
            patch.setattr(codec, "decode_message_packet", nothing)
            patch.setattr(codec, "decode_header_fields", nothing)
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


def _bound_session_answer(
    frame: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[object], int, bool]:
    server = MemoryHub().connect("alice").server
    server.events_received()
    with monkeypatch.context() as patch:
        if not fast:
            nothing: Callable[[bytes], None] = lambda _data: None  # noqa: E731
            patch.setattr(codec, "decode_header_fields", nothing)
        server.receive_data(frame, 0.0)
    return list(server.events_received()), len(server.data_to_send()), server.close_requested


@settings(max_examples=200)
@given(headers, st.booleans(), packets)
def test_a_bound_server_session_reads_any_header_the_same_on_both_paths(
    header: codec.Header, secmsg: bool, packet: MIMCPacket
) -> None:
    if secmsg:
        header = dataclasses.replace(header, cmd="SECMSG")
    frame = serialize_frame(Frame(header=header, payload=codec.encode_packet(packet)))
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = _bound_session_answer(frame, True, monkeypatch)
        generic = _bound_session_answer(frame, False, monkeypatch)
    assert fast == generic


# ------------------------------------------------------------------ the client's s2c fast path

OUTBOX = ("web1", "web2", "web3")  # packet ids the client under test has waiting for acks
ME_UUID = 7
ME_RESOURCE = "res-me"

small = st.integers(0, 6)  # sequences that repeat, so the dedup window has work
client_p2p = st.builds(
    MIMCP2PMessage,
    sender=opt(users),
    to=opt(users),
    payload=opt(blob),
    is_store=opt(st.booleans()),
    biz_type=opt(text),
)
client_p2t = st.builds(
    MIMCP2TMessage,
    sender=opt(users),
    to=opt(groups),
    payload=opt(blob),
    is_store=opt(st.booleans()),
    biz_type=opt(text),
)
entry_bodies = client_p2p | client_p2t
entries = st.builds(
    MIMCPacket,
    body=entry_bodies,
    packet_id=opt(text),
    package=opt(text),
    sequence=opt(small),
    timestamp=opt(st.integers(0, 2**40)),
) | leaf_packets.filter(lambda p: not isinstance(p.body, MIMCP2PMessage | MIMCP2TMessage))
acks = st.builds(
    codec.MIMCPacketAck,
    packet_id=opt(st.sampled_from(OUTBOX) | text),
    uuid=opt(st.just(ME_UUID)),
    resource=opt(text),
    sequence=opt(small),
    timestamp=opt(st.integers(0, 2**40)),
    package=opt(text),
    error_msg=opt(st.sampled_from(["", "refused"]) | text),
)
deliveries = st.lists(st.builds(MIMCPacket, body=entry_bodies, sequence=opt(small)), max_size=4)
lists = st.builds(
    codec.MIMCPacketList,
    uuid=st.sampled_from([ME_UUID] * 6 + [8, None]),
    resource=st.sampled_from([ME_RESOURCE] * 6 + ["other", None]),
    max_sequence=opt(small),
    packets=st.one_of(deliveries, deliveries, deliveries, st.lists(entries, max_size=3)).map(tuple),
    status=st.sampled_from([None, 1, 1, 1, 1, 2]),
    min_sequence=opt(small),
)
s2c_packets = st.builds(
    MIMCPacket,
    body=st.one_of(acks, lists, lists),
    packet_id=opt(text),
    package=opt(text),
    sequence=opt(small),
)
mostly_s2c = st.one_of(s2c_packets, s2c_packets, s2c_packets, leaf_packets)


def _client_view(data: bytes) -> codec.AckFields | codec.ListFields | PacketError | None:
    """What the client reads of a packet through the generic decoder, as the fast path gives it."""
    try:
        packet = codec.decode_packet(data)
    except PacketError as exc:
        return exc
    body = packet.body
    if isinstance(body, codec.MIMCPacketAck):
        return (
            4,
            body.packet_id or "",
            body.sequence or 0,
            body.timestamp or 0,
            body.error_msg or "",
        )
    if not isinstance(body, codec.MIMCPacketList) or body.status == 2:
        return None
    read: list[codec.DeliveryFields] = []
    for item in body.packets:
        entry = item.body
        if not isinstance(entry, MIMCP2PMessage | MIMCP2TMessage):
            return None
        sender = entry.sender or WireUser()
        if isinstance(entry, MIMCP2PMessage):
            to = entry.to or WireUser()
            target = (to.app_account or "", to.resource or "", 0)
        else:
            target = ("", "", (entry.to.topic_id or 0) if entry.to else 0)
        read.append(
            (
                int(item.type or 0),
                item.packet_id or "",
                item.sequence or 0,
                item.timestamp or 0,
                sender.app_account or "",
                sender.resource or "",
                *target,
                entry.payload or b"",
                entry.biz_type or "",
                bool(entry.is_store),
            )
        )
    return (6, body.uuid, body.resource or "", body.max_sequence, read)


@settings(max_examples=400)
@given(s2c_packets | leaf_packets)
def test_every_s2c_packet_is_read_as_the_generic_decoder_reads_it(packet: MIMCPacket) -> None:
    data = codec.encode_packet(packet)
    assert codec.decode_s2c_packet(data) == _client_view(data)


@settings(max_examples=400)
@given(s2c_packets, st.data())
def test_damaged_s2c_packets_are_read_the_same_or_left_to_the_generic_decoder(
    packet: MIMCPacket, data: st.DataObject
) -> None:
    damaged = _damage(codec.encode_packet(packet), data)
    fast = codec.decode_s2c_packet(damaged)
    if fast is not None:
        assert fast == _client_view(damaged)


@given(st.binary(max_size=200))
def test_s2c_junk_is_read_the_same_or_left_to_the_generic_decoder(data: bytes) -> None:
    fast = codec.decode_s2c_packet(data)
    if fast is not None:
        assert fast == _client_view(data)


@pytest.mark.parametrize(
    "data",
    [
        # PACKET_ACK whose errorMsg (field 7) is not UTF-8
        _field(1, b"p") + b"\x20\x04" + _field(5, _field(7, b"\xff")),
        # PACKET_ACK whose resource (field 3, unused by the client) is not UTF-8
        b"\x20\x04" + _field(5, _field(3, b"\xc3")),
        # COMPOUND whose entry's sender account is not UTF-8
        b"\x20\x06" + _field(5, _field(4, b"\x20\x01" + _field(5, _field(1, _field(2, b"\x80"))))),
        # COMPOUND with an entry whose type is absent (1 is the default: not a P2P message)
        b"\x20\x06" + _field(5, _field(4, _field(5, b""))),
        # a pull notification (status EXCEED_COUNT_LIMIT)
        b"\x20\x06" + _field(5, b"\x08\x07\x28\x02"),
    ],
)
def test_unusual_s2c_packets_go_to_the_generic_decoder(data: bytes) -> None:
    assert codec.decode_s2c_packet(data) is None


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"id{self.n}"


KEY = "a2V5LW9mLXRoZS1jbGllbnQ="  # any base64 will do: both sides use it


def _bound_client(auto_pull: bool, pull_target: int | None) -> ClientSession:
    """A BOUND client with three stored sends in its outbox, as after a real login."""
    memory = SessionMemory(dedup_window=4, outbox_size=5)
    client = ClientSession(1, "me", ME_RESOURCE, ids=_Counter(), memory=memory, auto_pull=auto_pull)
    answer = {
        "code": 200,
        "message": "success",
        "data": {
            "appId": "1",
            "appPackage": "pkg",
            "appAccount": "me",
            "miChid": 9,
            "miUserId": str(ME_UUID),
            "miUserSecurityKey": KEY,
            "token": "tok",
            "regionBucket": 0,
            "feDomainName": "",
            "relayDomainName": "",
        },
    }
    client.login(answer, 0.0)
    header = codec.Header(server="xiaomi.com", cmd="CONN", id="c")
    conn = codec.encode_message(codec.ConnResponse(challenge="ch"))
    client.receive_data(serialize_frame(Frame(header=header, payload=conn)), 0.0)
    bind = codec.encode_message(codec.BindResponse(result=True))
    header = codec.Header(server="xiaomi.com", cmd="BIND", id="b")
    client.receive_data(serialize_frame(Frame(header=header, payload=bind)), 0.0)
    for packet_id in OUTBOX:
        memory.outbox.add(packet_id, b"plain-" + packet_id.encode(), 0.0)
    client._pull_target = pull_target  # as after a pull notification under auto-pull
    client.events_received()
    client.data_to_send()
    return client


def _secmsg(plain: bytes, number: int) -> bytes:
    header_id = f"srv{number}"
    header = codec.Header(
        chid=9, uuid=ME_UUID, server="xiaomi.com", resource=ME_RESOURCE, cmd="SECMSG", id=header_id
    )
    return serialize_frame(Frame(header=header, payload=PayloadCipher(KEY)(header_id, plain)))


def _run_client(
    payloads: list[bytes], auto_pull: bool, pull_target: int | None, fast: bool
) -> list[object]:
    client = _bound_client(auto_pull, pull_target)
    seen: list[object] = []
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            nothing: Callable[[bytes], None] = lambda _data: None  # noqa: E731
            patch.setattr(codec, "decode_s2c_packet", nothing)
        for number, plain in enumerate(payloads):
            client.receive_data(_secmsg(plain, number), 1.0)
            seen.append((client.events_received(), client.data_to_send(), client.state))
    memory = client.memory
    seen.append(
        (
            list(memory.seen._order),
            memory.duplicates,
            list(memory.acked._order),
            memory.duplicate_acks,
            [entry.packet_id for entry in memory.outbox],
            client._pull_target,
            client._last_min,
            client._last_max,
        )
    )
    return seen


@settings(max_examples=300)
@given(
    st.lists(mostly_s2c, min_size=1, max_size=6),
    st.booleans(),
    opt(small),
    st.data(),
)
def test_a_client_session_behaves_the_same_on_both_paths(
    packets: list[MIMCPacket], auto_pull: bool, pull_target: int | None, data: st.DataObject
) -> None:
    payloads = [codec.encode_packet(p) for p in packets]
    if data.draw(st.booleans()):  # now and then a damaged one among them
        at = data.draw(st.integers(0, len(payloads) - 1))
        payloads[at] = _damage(payloads[at], data)
    fast = _run_client(payloads, auto_pull, pull_target, fast=True)
    generic = _run_client(payloads, auto_pull, pull_target, fast=False)
    assert fast == generic


def test_the_client_test_setup_takes_the_fast_path() -> None:
    """The equivalence above means something: a plain ack and delivery do take the fast path."""
    ack = codec.encode_packet(MIMCPacket(body=codec.MIMCPacketAck(packet_id="web1", sequence=3)))
    delivery = codec.MIMCPacketList(
        uuid=ME_UUID,
        resource=ME_RESOURCE,
        max_sequence=4,
        packets=(MIMCPacket(body=MIMCP2PMessage(payload=b"hi"), sequence=4, packet_id="p"),),
    )
    for plain in (ack, codec.encode_packet(MIMCPacket(body=delivery))):
        assert codec.decode_s2c_packet(plain) is not None
    step = _run_client([ack, codec.encode_packet(MIMCPacket(body=delivery))], False, None, True)[1]
    assert isinstance(step, tuple)
    events, frames, _ = step
    assert [type(e).__name__ for e in events] == ["P2PMessage"]
    assert len(frames) == 1  # the SEQUENCE_ACK
