"""Micro-benchmark of the sans-I/O protocol core's hot path: µs per encode / decode.

Run: ``python bench/codec_bench.py`` (a few seconds; ``--help`` for options).

It times, in this process and with no I/O, the messages that every P2P message costs the
server and the clients: the frame header, a MIMCPacket carrying a P2P message, a PACKET_ACK,
a COMPOUND with 1 and with 20 packets, a SEQUENCE_ACK, and whole frames: a server session
turning a c2s P2P frame into its event, building an encrypted PACKET_ACK frame, and a client
session parsing + decrypting + decoding an s2c frame into events. Each figure is the best of
``--repeat`` runs of ``--number`` calls (the least disturbed by other jobs on a shared box).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from mimc_rx.protocol import codec
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.codec import (
    Header,
    MIMCP2PMessage,
    MIMCPacket,
    MIMCPacketAck,
    MIMCPacketList,
    MIMCSequenceAck,
    MIMCUser,
    PushStatus,
)
from mimc_rx.protocol.events import Delivery, DeliveryKind, PacketId, Peer
from mimc_rx.protocol.server import ServerSession
from mimc_rx.testing.hub import MemoryHub

PAYLOAD = b"x" * 200
UUID = 123456789012345678
RESOURCE = "bench-resource-0123456789abcdef"
PACKAGE = "com.example.mimcrx.bench"


def _header() -> Header:
    return Header(
        chid=9,
        uuid=UUID,
        server="xiaomi.com",
        resource=RESOURCE,
        cmd="SECMSG",
        id="web17958629475961",
        cipher=1,
    )


def _p2p_packet(i: int = 0) -> MIMCPacket:
    return MIMCPacket(
        body=MIMCP2PMessage(
            sender=MIMCUser(
                app_id=2882303761517000001, app_account="alice", uuid=UUID, resource=RESOURCE
            ),
            to=MIMCUser(app_id=2882303761517000001, app_account="bob"),
            payload=PAYLOAD,
            is_store=False,
        ),
        packet_id=f"web1795862947596{i}",
        package=PACKAGE,
        sequence=1_700_000_000_000_000 + i,
        timestamp=1_700_000_000_000,
    )


def _ack() -> MIMCPacket:
    return MIMCPacket(
        body=MIMCPacketAck(
            packet_id="web17958629475961",
            uuid=UUID,
            resource=RESOURCE,
            sequence=1_700_000_000_000_001,
            timestamp=1_700_000_000_000,
            package=PACKAGE,
            error_msg="",
            code=200,
        ),
        packet_id="srv1700000000000-1",
        package=PACKAGE,
        timestamp=1_700_000_000_000,
    )


def _compound(n: int) -> MIMCPacket:
    return MIMCPacket(
        body=MIMCPacketList(
            uuid=UUID,
            resource=RESOURCE,
            max_sequence=1_700_000_000_000_000 + n,
            packets=tuple(_p2p_packet(i) for i in range(n)),
            status=PushStatus.NORMAL,
        ),
        packet_id="srv1700000000000-2",
        package=PACKAGE,
        timestamp=1_700_000_000_000,
    )


def _seq_ack() -> MIMCPacket:
    return MIMCPacket(
        body=MIMCSequenceAck(
            uuid=UUID, resource=RESOURCE, sequence=1_700_000_000_000_020, app_id=2882303761517000001
        )
    )


def _sessions() -> tuple[MemoryHub, ClientSession, ServerSession]:
    hub = MemoryHub()
    pair = hub.connect("alice")
    assert pair.client.is_logged_in
    assert pair.server.is_bound
    return hub, pair.client, pair.server


def _cases() -> list[tuple[str, Callable[[], object]]]:
    header = _header()
    header_bytes = codec.encode_header(header)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("ClientHeader encode", lambda: codec.encode_header(header)),
        ("ClientHeader decode", lambda: codec.decode_header(header_bytes)),
    ]
    for name, packet in (
        ("MIMCPacket+P2P", _p2p_packet()),
        ("PACKET_ACK", _ack()),
        ("COMPOUND x1", _compound(1)),
        ("COMPOUND x20", _compound(20)),
        ("SEQUENCE_ACK", _seq_ack()),
    ):
        data = codec.encode_packet(packet)
        assert codec.decode_packet(data) == packet, name
        cases.append((f"{name} encode", lambda p=packet: codec.encode_packet(p)))
        cases.append((f"{name} decode", lambda d=data: codec.decode_packet(d)))

    # Whole frames through the sessions (what the drivers call).
    hub, client, server = _sessions()
    client.send_p2p("bob", PAYLOAD, is_store=False, now=0.0)
    c2s = client.data_to_send()[0]

    def server_receive() -> object:
        server.receive_data(c2s, 0.0)
        return server.events_received()

    def server_ack() -> object:
        server.ack_packet(
            PacketId("web17958629475961"), sequence=1_700_000_000_000_001, timestamp=1
        )
        return server.data_to_send()

    sender = Peer(app_id=hub.app_id, app_account="alice", uuid=UUID, resource=RESOURCE)

    def delivery(i: int) -> Delivery:
        return Delivery(
            kind=DeliveryKind.P2P,
            packet_id=PacketId(f"web1795862947596{i}"),
            package=PACKAGE,
            sequence=1_700_000_000_000_000 + i,
            timestamp=1_700_000_000_000,
            sender=sender,
            payload=PAYLOAD,
            to_account=client.app_account,
        )

    one, twenty = [delivery(0)], [delivery(i) for i in range(20)]

    def server_deliver(items: list[Delivery]) -> object:
        server.deliver(items, max_sequence=items[-1].sequence)
        return server.data_to_send()

    server.ack_packet(PacketId("p"), sequence=1, timestamp=1)
    s2c_ack = server.data_to_send()[0]
    server.deliver(one, max_sequence=one[-1].sequence)
    s2c_one = server.data_to_send()[0]
    server.deliver(twenty, max_sequence=twenty[-1].sequence)
    s2c_twenty = server.data_to_send()[0]

    def client_receive(frame: bytes) -> object:
        client.receive_data(frame, 0.0)
        client.data_to_send()
        return client.events_received()

    cases += [
        ("server: c2s P2P frame -> event", server_receive),
        ("server: PACKET_ACK -> frame", server_ack),
        ("server: deliver x1 -> frame", lambda: server_deliver(one)),
        ("server: deliver x20 -> frame", lambda: server_deliver(twenty)),
        (
            "client: send_p2p -> frame",
            lambda: (client.send_p2p("bob", PAYLOAD, now=0.0), client.data_to_send()),
        ),
        ("client: PACKET_ACK frame -> event", lambda: client_receive(s2c_ack)),
        ("client: COMPOUND x1 frame -> events", lambda: client_receive(s2c_one)),
        ("client: COMPOUND x20 frame -> events", lambda: client_receive(s2c_twenty)),
    ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs (best is shown)")
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    args = parser.parse_args()
    print(f"{'case':<40} {'µs/call':>9}   (best of {args.repeat} x {args.number})")
    for name, fn in _cases():
        if args.filter and args.filter not in name:
            continue
        fn()
        number = max(1, args.number // 10) if "x20" in name else args.number
        best = min(timeit.repeat(fn, number=number, repeat=args.repeat)) / number
        print(f"{name:<40} {best * 1e6:9.2f}")


if __name__ == "__main__":
    main()
