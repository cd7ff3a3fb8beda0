"""ServerSession against the capture: fed the recorded c2s frames, with the recorded ids,
challenges and clock, it builds every recorded s2c frame byte for byte (RC4 included)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mimc_rx.errors import LocalProtocolError
from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import Cmd, Header, MIMCPacket
from mimc_rx.protocol.crypto import rc4_payload
from mimc_rx.protocol.events import (
    BadPacket,
    BindRequested,
    Delivery,
    DeliveryKind,
    P2PReceived,
    P2TReceived,
    PacketId,
    Peer,
    Pinged,
    ProtocolFailure,
    PullRequested,
    SequenceAcked,
    UCDelivery,
    UCJoinRequested,
    UCMessageReceived,
    UCPinged,
    UCQuitRequested,
    UCSequenceAcked,
    UnbindRequested,
)
from mimc_rx.protocol.framing import Frame, parse_frame, serialize_frame
from mimc_rx.protocol.server import GroupBodies, ServerSession, ServerState

from .test_client import ScriptedIds
from .vectors import APP_ID, PACKAGE, all_examples, examples, frame_bytes, token_answer

# c2s_conn / c2s_bind / s2c_conn_resp index of each account's connection in the vectors
INDEX = {"bob": 0, "alice": 1, "eve": 2}


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def connect(
    account: str, group_bodies: GroupBodies | None = None
) -> tuple[ServerSession, ScriptedIds, Clock]:
    """A server session through CONN (checked byte for byte) up to BindRequested."""
    i = INDEX[account]
    reply = examples("s2c_conn_resp")[i]
    ids, clock = ScriptedIds(), Clock()
    server = ServerSession(
        ids=ids,
        challenges=lambda: str(reply["context"]["challenge"]),
        clock_ms=clock,
        host="loopback-capture-fe",
        group_bodies=group_bodies,
    )
    server.receive_data(frame_bytes("c2s_conn", i), now=0.0)
    assert [f.hex() for f in server.data_to_send()] == [reply["hex"]]
    assert server.state is ServerState.AWAIT_BIND
    server.receive_data(frame_bytes("c2s_bind", i), now=0.0)
    header = examples("c2s_bind")[i]["decoded"]["header"]
    assert server.events_received() == [
        BindRequested(
            uuid=int(header["uuid"]),
            resource=header["resource"],
            token=token_answer(account)["data"]["token"],
            chid=9,
        )
    ]
    state: ServerState = server.state  # read again: mypy keeps the AWAIT_BIND narrowing
    assert state is ServerState.BINDING
    return server, ids, clock


def bind(
    account: str, *, with_account: bool = True, group_bodies: GroupBodies | None = None
) -> tuple[ServerSession, ScriptedIds, Clock]:
    server, ids, clock = connect(account, group_bodies)
    key = token_answer(account)["data"]["miUserSecurityKey"]
    assert server.accept_bind(
        key, app_id=APP_ID, package=PACKAGE, app_account=account if with_account else None
    )
    assert server.state is ServerState.BOUND
    ok = examples("s2c_bind_resp_ok")[{"bob": 0, "alice": 1}[account]]
    assert [f.hex() for f in server.data_to_send()] == [ok["hex"]]
    return server, ids, clock


def test_bind_ok_for_bob_and_alice() -> None:
    for account in ("bob", "alice"):
        server, _, _ = bind(account)
        assert (server.uuid, server.app_id, server.package) == (
            int(token_answer(account)["data"]["miUserId"]),
            APP_ID,
            PACKAGE,
        )


def test_eve_signed_with_a_tampered_key_and_is_refused() -> None:
    server, _, _ = connect("eve")
    key = token_answer("eve")["data"]["miUserSecurityKey"]
    assert server.accept_bind(key, app_id=APP_ID, package=PACKAGE) is False
    assert [f.hex() for f in server.data_to_send()] == [examples("s2c_bind_resp_fail")[0]["hex"]]
    assert server.state is ServerState.AWAIT_BIND  # may BIND again
    assert not server.is_bound


def test_reject_bind_sends_the_given_strings() -> None:
    server, _, _ = connect("bob")
    server.reject_bind("token-expired", "token-expired", "the token has expired")
    [frame] = server.data_to_send()
    reply = codec.decode_message(codec.BindResponse, parse_frame(frame).payload)
    assert reply == codec.BindResponse(
        result=False,
        error_type="token-expired",
        error_reason="token-expired",
        error_desc="the token has expired",
    )
    with pytest.raises(LocalProtocolError):
        server.accept_bind("RkFLRQ==", app_id=APP_ID, package=PACKAGE)  # nothing pending


@pytest.mark.parametrize("index", [0, 1])
def test_ping_is_echoed(index: int) -> None:
    account = examples("c2s_ping")[index]["account"]
    server, _, _ = bind(account)
    server.receive_data(frame_bytes("c2s_ping", index), now=1.0)
    assert server.events_received() == [Pinged()]
    assert [f.hex() for f in server.data_to_send()] == [examples("s2c_ping")[index]["hex"]]


def test_kick_matches_the_capture() -> None:
    server, ids, _ = bind("alice")
    payload = examples("s2c_kick")[0]["decoded"]["payload_decoded"]
    ids.push("srv1795863114191-40")
    server.kick(payload["error_type"], payload["error_reason"], payload["error_desc"])
    assert [f.hex() for f in server.data_to_send()] == [examples("s2c_kick")[0]["hex"]]
    assert server.close_requested
    assert server.state is ServerState.CLOSED


# ----------------------------------------------------------------------------- every s2c SECMSG

SECMSG = [
    (n, i, e)
    for n, i, e in all_examples()
    if e["direction"] == "s2c" and e["decoded"]["header"]["cmd"] == "SECMSG"
]


def _peer(user: dict[str, Any]) -> Peer:
    return Peer(
        app_id=int(user["appId"]),
        app_account=user.get("appAccount", ""),
        uuid=int(user.get("uuid", 0)),
        resource=user.get("resource", ""),
    )


def _delivery(packet: dict[str, Any]) -> Delivery:
    message = packet["payload_decoded"]
    common = {
        "packet_id": PacketId(packet["packetId"]),
        "package": packet["package"],
        "sequence": int(packet["sequence"]),
        "timestamp": int(packet["timestamp"]),
        "sender": _peer(message["from"]),
        "payload": base64.b64decode(message["payload"]),
        "is_store": message["isStore"],
        "biz_type": message.get("bizType", ""),
    }
    if packet["type"] == "P2T_MESSAGE":
        return Delivery(kind=DeliveryKind.P2T, topic_id=int(message["to"]["topicId"]), **common)
    to = message["to"]
    return Delivery(
        kind=DeliveryKind.P2P,
        to_account=to["appAccount"],
        to_uuid=int(to.get("uuid", 0)),
        to_resource=to.get("resource", ""),
        **common,
    )


def _command(server: ServerSession, packet: dict[str, Any]) -> None:
    """Issue the command that should produce this recorded MIMCPacket."""
    body = packet["payload_decoded"]
    if packet["type"] == "PACKET_ACK":
        server.ack_packet(
            body["packetId"],
            sequence=int(body["sequence"]),
            timestamp=int(body["timestamp"]),
            error_msg=body["errorMsg"],
            code=body["code"],
        )
    elif packet["type"] == "COMPOUND" and body["status"] == "STATUS_EXCEED_COUNT_LIMIT":
        server.notify_backlog(int(body["minSequence"]), int(body["maxSequence"]))
    elif packet["type"] == "COMPOUND":
        items = [_delivery(p) for p in body["packets"]]
        server.deliver(items, max_sequence=int(body["maxSequence"]))
    else:
        uc = body
        inner = uc.get("payload_decoded", {})
        topic = int(inner["group"]["topicId"]) if "group" in inner else 0
        match uc["type"]:
            case "JOIN_RESP":
                server.uc_join_result(topic, code=inner["code"], message=inner["message"])
            case "QUIT_RESP":
                server.uc_quit_result(topic, code=inner["code"], message=inner["message"])
            case "PONG":
                server.uc_pong()
            case "DISMISS":
                server.uc_dismiss(topic)
            case "MESSAGE_LIST":
                uc_items = [
                    UCDelivery(
                        packet_id=PacketId(m["packetId"]),
                        sequence=int(m["sequence"]),
                        timestamp=int(m["timestamp"]),
                        sender=_peer(m["user"]),
                        payload=base64.b64decode(m["payload"]),
                        is_store=m["isStore"],
                        biz_type=m.get("bizType", ""),
                    )
                    for m in inner["message"]
                ]
                server.deliver_uc(topic, uc_items, max_sequence=int(inner["maxSequence"]))
            case other:
                raise AssertionError(other)


@pytest.mark.parametrize("shared", [False, True], ids=["own-bodies", "group-bodies"])
@pytest.mark.parametrize(
    ("name", "index", "example"), SECMSG, ids=[f"{n}[{i}]" for n, i, _ in SECMSG]
)
def test_every_s2c_secmsg_is_rebuilt_byte_for_byte(
    name: str, index: int, example: dict[str, Any], shared: bool
) -> None:
    bodies = GroupBodies() if shared else None
    server, ids, clock = bind(example["account"], group_bodies=bodies)
    packet = example["decoded"]["payload_decoded"]
    ids.push(packet["packetId"], example["decoded"]["header"]["id"])
    clock.ms = int(packet["timestamp"])
    _command(server, packet)
    [frame] = server.data_to_send()
    assert frame.hex() == example["hex"]
    if bodies is not None:  # the group messages were encoded through the shared memo
        inner = packet.get("payload_decoded") or {}
        groups = [p for p in inner.get("packets", []) if p["type"] == "P2T_MESSAGE"]
        assert len(bodies) == len({p["payload"] for p in groups})


def test_the_account_is_learnt_from_the_first_packet_when_not_given() -> None:
    server, ids, clock = bind("bob", with_account=False)
    assert server.app_account is None
    server.receive_data(frame_bytes("c2s_uc_join", 0), now=1.0)
    assert server.events_received() == [
        UCJoinRequested(packet_id=PacketId("web17958631101487"), topic_id=40000000000000001)
    ]
    assert server.app_account == "bob"
    example = examples("s2c_uc_join_resp")[0]
    ids.push("srv1795863110150-14", "srv1795863110150-15")
    clock.ms = 1795863110150
    server.uc_join_result(40000000000000001)
    assert [f.hex() for f in server.data_to_send()] == [example["hex"]]


# ----------------------------------------------------------------------------- c2s events

ALICE = Peer(app_id=APP_ID, app_account="alice", uuid=20000000000000001, resource="res-alice-1")
BOB = Peer(
    app_id=APP_ID,
    app_account="bob",
    uuid=20000000000000002,
    resource="4b21b32b612e875213f1203aba026291",
)

C2S_EVENTS = [
    (
        "alice",
        "c2s_secmsg_p2p_message",
        0,
        P2PReceived(
            packet_id=PacketId("web17958631096302"),
            package=PACKAGE,
            sender=ALICE,
            to_account="bob",
            to_app_id=APP_ID,
            payload="hello bob ✓ 你好".encode(),
            is_store=True,
            biz_type="TEXT",
        ),
    ),
    (
        "alice",
        "c2s_secmsg_p2p_message",
        1,
        P2PReceived(
            packet_id=PacketId("web17958631096363"),
            package=PACKAGE,
            sender=ALICE,
            to_account="bob",
            to_app_id=APP_ID,
            payload="smile \U0001f600 end".encode(),
            is_store=False,
            biz_type="EMOJI",
        ),
    ),
    (
        "alice",
        "c2s_secmsg_p2t_message",
        0,
        P2TReceived(
            packet_id=PacketId("web17958631101444"),
            package=PACKAGE,
            sender=ALICE,
            topic_id=30000000000000001,
            payload=b"hi group",
            is_store=True,
            biz_type="GTEXT",
        ),
    ),
    ("bob", "c2s_secmsg_pull", 0, PullRequested(packet_id=PacketId("web179586311417819"))),
    ("bob", "c2s_secmsg_sequence_ack", 0, SequenceAcked(sequence=1700000000000001)),
    ("bob", "c2s_secmsg_sequence_ack", 1, SequenceAcked(sequence=1700000000000002)),
    ("bob", "c2s_secmsg_sequence_ack", 2, SequenceAcked(sequence=1700000000000002)),
    (
        "bob",
        "c2s_uc_join",
        0,
        UCJoinRequested(packet_id=PacketId("web17958631101487"), topic_id=40000000000000001),
    ),
    (
        "alice",
        "c2s_uc_join",
        1,
        UCJoinRequested(packet_id=PacketId("web17958631101516"), topic_id=40000000000000001),
    ),
    (
        "alice",
        "c2s_uc_join",
        2,
        UCJoinRequested(packet_id=PacketId("web179586311016010"), topic_id=40000000000000101),
    ),
    (
        "alice",
        "c2s_uc_message",
        0,
        UCMessageReceived(
            packet_id=PacketId("web17958631101548"),
            message_id=PacketId("web17958631101547"),
            sender=ALICE,
            topic_id=40000000000000001,
            payload=b"uc hello",
            is_store=False,
            biz_type="UCTEXT",
        ),
    ),
    ("bob", "c2s_uc_ping", 0, UCPinged(topic_ids=(40000000000000001,))),
    ("alice", "c2s_uc_ping", 1, UCPinged(topic_ids=(40000000000000001, 40000000000000101))),
    ("bob", "c2s_uc_ping", 2, UCPinged(topic_ids=(40000000000000001,))),
    (
        "bob",
        "c2s_uc_quit",
        0,
        UCQuitRequested(packet_id=PacketId("web179586311366416"), topic_id=40000000000000001),
    ),
    ("bob", "c2s_uc_seq_ack", 0, UCSequenceAcked(topic_id=40000000000000001, sequence=1)),
    ("bob", "c2s_ubnd", 0, UnbindRequested()),
]


@pytest.mark.parametrize(("account", "name", "index", "event"), C2S_EVENTS)
def test_captured_c2s_frames_become_events(
    account: str, name: str, index: int, event: object
) -> None:
    server, _, _ = bind(account)
    server.receive_data(frame_bytes(name, index), now=1.0)
    assert server.events_received() == [event]
    if isinstance(event, UnbindRequested):
        assert server.close_requested
        assert server.state is ServerState.CLOSED


def _encrypted_copy(raw: bytes, key: str) -> bytes:
    """The same c2s SECMSG as a TCP SDK sends it: RC4 payload and cipher=1 (5)."""
    frame = parse_frame(raw)
    header = Header(**{**_fields(frame.header), "cipher": 1})
    payload = rc4_payload(key, header.id or "", frame.payload)
    return serialize_frame(Frame(header=header, payload=payload))


def _fields(header: Header) -> dict[str, Any]:
    return {name: getattr(header, name) for name in header.__dataclass_fields__}


def test_c2s_secmsg_with_cipher_1_is_decrypted() -> None:
    server, _, _ = bind("alice")
    key = token_answer("alice")["data"]["miUserSecurityKey"]
    server.receive_data(_encrypted_copy(frame_bytes("c2s_secmsg_p2p_message", 0), key), now=1.0)
    assert server.events_received() == [C2S_EVENTS[0][3]]


def test_a_spoofed_sender_is_refused() -> None:
    server, _, _ = bind("bob")  # bob's session receives alice's P2P frame
    server.receive_data(frame_bytes("c2s_secmsg_p2p_message", 0), now=1.0)
    [event] = server.events_received()
    assert isinstance(event, BadPacket)
    assert event.reason == "sender-mismatch"
    assert event.packet_id == "web17958631096302"
    assert not server.close_requested


def test_a_junk_packet_is_a_bad_packet_and_the_session_goes_on() -> None:
    server, _, _ = bind("bob")
    header = Header(chid=9, uuid=BOB.uuid, resource=BOB.resource, cmd=Cmd.SECMSG, id="x")
    server.receive_data(serialize_frame(Frame(header=header, payload=b"\xff\xff")), now=1.0)
    [event] = server.events_received()
    assert isinstance(event, BadPacket)
    assert server.is_bound


def test_a_client_must_not_send_server_packet_types() -> None:
    server, _, _ = bind("bob")
    ack = MIMCPacket(body=codec.MIMCPacketAck(packet_id="p"), packet_id="q")
    header = Header(chid=9, uuid=BOB.uuid, resource=BOB.resource, cmd=Cmd.SECMSG, id="q")
    server.receive_data(
        serialize_frame(Frame(header=header, payload=codec.encode_packet(ack))), 1.0
    )
    [event] = server.events_received()
    assert isinstance(event, BadPacket)
    assert (event.reason, event.packet_id) == ("unexpected-type", "q")


@pytest.mark.parametrize(
    "data",
    [
        frame_bytes("c2s_secmsg_p2p_message", 0),  # SECMSG before CONN
        frame_bytes("c2s_bind", 0),  # BIND before CONN
        frame_bytes("s2c_kick", 0),  # a server command from a client
        b"\x00" * 30,
    ],
)
def test_violations_close_without_telling_the_peer(data: bytes) -> None:
    server = ServerSession()
    server.receive_data(data, now=0.0)
    [event] = server.events_received()
    assert isinstance(event, ProtocolFailure)
    assert server.close_requested
    assert server.data_to_send() == []
    server.receive_data(frame_bytes("c2s_conn", 0), now=0.0)  # closed: ignored
    assert server.events_received() == []


def test_secmsg_before_bind_is_a_violation() -> None:
    server, _, _ = connect("bob")
    server.receive_data(frame_bytes("c2s_secmsg_pull", 0), now=0.0)
    [event] = server.events_received()
    assert event == ProtocolFailure(reason="unexpected-cmd", detail="'SECMSG' while BINDING")
    assert server.data_to_send() == []


def test_commands_need_a_bound_session() -> None:
    server = ServerSession()
    with pytest.raises(LocalProtocolError):
        server.ack_packet("p", sequence=1, timestamp=1)
    with pytest.raises(LocalProtocolError):
        server.deliver([], max_sequence=1)
    with pytest.raises(LocalProtocolError):
        server.uc_pong()
    assert server.next_deadline() is None
