"""COMPOUND lists built from encoded bodies (the server's fan-out path) against the generic codec.

``ServerSession.deliver`` encodes each message body once and fills the packet list directly;
with a shared ``GroupBodies`` a group message is encoded once for all its recipients. Both must
give exactly the bytes of the generic ``MIMCPacketList`` of ``MIMCPacket`` dataclasses.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import MIMCGroup, MIMCPacket, MIMCPacketList, WireUser
from mimc_rx.protocol.crypto import rc4_payload
from mimc_rx.protocol.events import Delivery, DeliveryKind, PacketId, Peer
from mimc_rx.protocol.framing import parse_frame
from mimc_rx.protocol.server import GroupBodies

from .test_server import bind
from .vectors import token_answer

APP = 2882303761517669588
U64 = st.integers(min_value=0, max_value=2**63 - 1)
TEXT = st.text(max_size=12)
KEY: str = token_answer("bob")["data"]["miUserSecurityKey"]

peers = st.builds(Peer, app_id=U64, app_account=TEXT, uuid=U64, resource=TEXT)
deliveries = st.builds(
    Delivery,
    kind=st.sampled_from(DeliveryKind),
    packet_id=TEXT.map(PacketId),
    package=TEXT,
    sequence=U64,
    timestamp=U64,
    sender=peers,
    payload=st.binary(max_size=40),
    is_store=st.booleans(),
    biz_type=TEXT,
    to_account=TEXT,
    to_uuid=U64,
    to_resource=TEXT,
    topic_id=U64,
)


def _generic_body(app_id: int | None, item: Delivery) -> codec.PacketBody:
    """The body as the dataclass path builds it (docs/protocol.md 6.6, 6.7)."""
    sender = WireUser(
        app_id=item.sender.app_id,
        app_account=item.sender.app_account or None,
        uuid=item.sender.uuid or None,
        resource=item.sender.resource or None,
    )
    if item.kind is DeliveryKind.P2T:
        return codec.MIMCP2TMessage(
            sender=sender,
            to=MIMCGroup(app_id=app_id, topic_id=item.topic_id),
            payload=item.payload,
            is_store=item.is_store,
            biz_type=item.biz_type or None,
        )
    return codec.MIMCP2PMessage(
        sender=sender,
        to=WireUser(
            app_id=app_id,
            app_account=item.to_account,
            uuid=item.to_uuid or None,
            resource=item.to_resource or None,
        ),
        payload=item.payload,
        is_store=item.is_store,
        biz_type=item.biz_type or None,
    )


def _generic_list(
    app_id: int | None, uuid: int | None, resource: str | None, items: list[Delivery], top: int
) -> MIMCPacketList:
    packets = tuple(
        MIMCPacket(
            body=_generic_body(app_id, item),
            packet_id=item.packet_id,
            package=item.package,
            sequence=item.sequence,
            timestamp=item.timestamp,
        )
        for item in items
    )
    return MIMCPacketList(
        uuid=uuid,
        resource=resource,
        max_sequence=top,
        packets=packets,
        status=codec.PushStatus.NORMAL,
    )


@given(
    items=st.lists(deliveries, max_size=5),
    app_id=st.none() | U64,
    uuid=st.none() | U64,
    resource=st.none() | TEXT,
    top=U64,
)
def test_packet_list_of_encoded_bodies_equals_the_generic_list(
    items: list[Delivery], app_id: int | None, uuid: int | None, resource: str | None, top: int
) -> None:
    entries = [
        (
            item.packet_id,
            item.package,
            item.sequence,
            2 if item.kind is DeliveryKind.P2T else 1,
            codec.encode_message(_generic_body(app_id, item)),
            item.timestamp,
        )
        for item in items
    ]
    fast = codec.encode_packet_list_of(
        entries, uuid=uuid, resource=resource, max_sequence=top, status=codec.PushStatus.NORMAL
    )
    assert fast == codec.encode_message(_generic_list(app_id, uuid, resource, items, top))


@given(items=st.lists(deliveries, min_size=1, max_size=4), shared=st.booleans())
def test_deliver_sends_the_generic_list(items: list[Delivery], shared: bool) -> None:
    bodies = GroupBodies() if shared else None
    server, ids, clock = bind("bob", group_bodies=bodies)
    ids.push("pkt-1", "hdr-1")
    clock.ms = 1_700_000_000_123
    server.deliver(items, max_sequence=99)
    [data] = server.data_to_send()
    frame = parse_frame(data)
    assert frame.header.id == "hdr-1"
    generic = codec.encode_packet(
        MIMCPacket(
            body=_generic_list(server.app_id, server.uuid, server.resource, items, 99),
            packet_id="pkt-1",
            package=server.package,
            timestamp=1_700_000_000_123,
        )
    )
    assert rc4_payload(KEY, "hdr-1", frame.payload) == generic


def _group_item(sequence: int, payload: bytes = b"hello group") -> Delivery:
    return Delivery(
        kind=DeliveryKind.P2T,
        packet_id=PacketId("g-1"),
        package="pkg",
        sequence=sequence,
        timestamp=1_700_000_000_000,
        sender=Peer(app_id=APP, app_account="carol", uuid=42, resource="web"),
        payload=payload,
        biz_type="TEXT",
        topic_id=7,
    )


def test_a_group_message_is_encoded_once_for_all_members() -> None:
    bodies = GroupBodies()
    shared = [bind(a, group_bodies=bodies) for a in ("bob", "alice")]
    alone = [bind(a) for a in ("bob", "alice")]
    frames: list[list[bytes]] = []
    for sessions in (shared, alone):
        out = []
        for n, (server, ids, clock) in enumerate(sessions):
            ids.push(f"p{n}", f"h{n}")
            clock.ms = 1_700_000_000_500
            server.deliver([_group_item(100 + n)], max_sequence=100 + n)
            out.extend(server.data_to_send())
        frames.append(out)
    assert len(bodies) == 1  # one body for both recipients
    assert frames[0] == frames[1]  # and the same bytes as sessions encoding their own
    assert frames[0][0] != frames[0][1]  # (each list names its recipient and sequence)
    # Another payload is another body; the memo forgets everything at its limit.
    server, ids, _ = shared[0]
    ids.push("p2", "h2")
    server.deliver([_group_item(200, b"other")], max_sequence=200)
    assert len(bodies) == 2
    bodies.clear()
    assert len(bodies) == 0


def test_the_memo_is_bounded() -> None:
    bodies = GroupBodies(limit=3)
    for i in range(10):
        bodies.encoded(APP, _group_item(i, payload=b"%d" % i))
        assert len(bodies) <= 3
    item = _group_item(1, b"x")
    assert bodies.encoded(APP, item) == codec.encode_message(_generic_body(APP, item))
