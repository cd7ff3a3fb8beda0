"""ClientSession against the capture: fed the recorded s2c frames with the recorded ids, it
sends the recorded c2s frames byte for byte and emits what the official SDK's handlers got."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from mimc_rx.errors import LocalProtocolError, NotLoggedIn, PayloadTooLarge
from mimc_rx.protocol import codec
from mimc_rx.protocol.client import P2P_TEXT_LIMIT, UC_TEXT_LIMIT, ClientSession, ClientState
from mimc_rx.protocol.events import (
    BadPacket,
    Kicked,
    P2PMessage,
    P2TMessage,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from mimc_rx.protocol.framing import parse_frame

from .vectors import APP_ID, BOB_RESOURCE, examples, frame_bytes, load, token_answer


class ScriptedIds:
    """An id factory that hands out exactly the ids a test pushed, and fails otherwise."""

    def __init__(self) -> None:
        self._queue: deque[str] = deque()

    def push(self, *ids: str) -> None:
        self._queue.extend(ids)

    def __call__(self) -> str:
        assert self._queue, "the session asked for an id the test did not expect"
        return self._queue.popleft()


def state_of(client: ClientSession) -> ClientState:
    """The state, read through a call: mypy keeps an attribute narrowed across method calls."""
    return client.state


def hexes(frames: list[bytes]) -> list[str]:
    return [f.hex() for f in frames]


def vector_hex(name: str, index: int) -> str:
    return str(examples(name)[index]["hex"])


def sent_packet(frame: bytes) -> codec.MIMCPacket:
    return codec.decode_packet(parse_frame(frame).payload)  # c2s SECMSG is clear (5)


def handler_args(handler: str, user: str) -> list[Any]:
    return [
        e["args"]
        for e in load("run_summary")["handler_events"]
        if e["handler"] == handler and e["user"] == user
    ]


def as_sdk_message(event: P2PMessage | P2TMessage | UCMessage) -> dict[str, str]:
    """Our event in the shape of the SDK's MIMCMessage / MIMCGroupMessage getters (9.3)."""
    shape = {
        "packetId": event.packet_id,
        "sequence": str(event.sequence),
        "fromAccount": event.from_account,
        "fromResource": event.from_resource,
        "payload": event.text,
        "timeStamp": str(event.timestamp),
        "bizType": event.biz_type,
    }
    if isinstance(event, P2PMessage):
        shape |= {"toAccount": event.to_account, "toResource": event.to_resource}
    else:
        shape["topicId"] = str(event.topic_id)
    return shape


def login(
    account: str, resource: str, conn_id: str, bind_id: str, index: int, **options: Any
) -> tuple[ClientSession, ScriptedIds]:
    ids = ScriptedIds()
    client = ClientSession(APP_ID, account, resource, ids=ids, ping_interval=180.0, **options)
    ids.push(conn_id)
    client.login(token_answer(account), now=0.0)
    assert client.state is ClientState.CONNECTING
    assert hexes(client.data_to_send()) == [vector_hex("c2s_conn", index)]
    ids.push(bind_id)
    client.receive_data(frame_bytes("s2c_conn_resp", index), now=0.0)
    assert state_of(client) is ClientState.BINDING
    assert hexes(client.data_to_send()) == [vector_hex("c2s_bind", index)]
    return client, ids


def test_bob_replays_the_capture() -> None:
    client, ids = login("bob", BOB_RESOURCE, "web17958631083190", "web17958631083241", 0)
    client.receive_data(frame_bytes("s2c_bind_resp_ok", 0), now=0.0)
    assert client.state is ClientState.BOUND
    [status] = client.events_received()
    assert isinstance(status, StatusChange)
    assert [status.online, status.err_type, status.err_reason, status.err_desc] == handler_args(
        "statusChange", "bob"
    )[0]

    # 6.8: SEQUENCE_ACK(maxSequence) first, then the message.
    p2p = handler_args("p2p", "bob")
    ids.push("web17958631096362")
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_sequence_ack", 0)]
    [message] = client.events_received()
    assert isinstance(message, P2PMessage)
    assert as_sdk_message(message) == p2p[0][0]

    ids.push("web17958631096393")
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 1), now=1.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_sequence_ack", 1)]
    [emoji] = client.events_received()
    assert isinstance(emoji, P2PMessage)
    # 10.7: the SDK lost the emoji ("smile  end"); we decode the same bytes properly.
    assert emoji.text == "smile \U0001f600 end"
    assert as_sdk_message(emoji) == {**p2p[1][0], "payload": "smile \U0001f600 end"}

    # 6.8 step 5: a duplicate sequence is acked but not emitted.
    ids.push("web17958631096424")
    client.receive_data(frame_bytes("s2c_secmsg_compound_duplicate", 0), now=1.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_sequence_ack", 2)]
    assert client.events_received() == []

    ids.push("ack-of-p2t")  # this ack frame was not kept as a vector
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2t", 0), now=2.0)
    [ack] = client.data_to_send()
    assert sent_packet(ack).body == codec.MIMCSequenceAck(
        uuid=20000000000000002, resource=BOB_RESOURCE, sequence=1700000000000004, app_id=APP_ID
    )
    [group_message] = client.events_received()
    assert isinstance(group_message, P2TMessage)
    assert as_sdk_message(group_message) == handler_args("group", "bob")[0][0]

    ids.push("web17958631101487")
    assert client.join_uc(40000000000000001, now=2.0) == "web17958631101487"
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_join", 0)]
    client.receive_data(frame_bytes("s2c_uc_join_resp", 0), now=2.0)
    topic, code, text, _ctx = handler_args("ucJoinResp", "bob")[0]
    assert client.events_received() == [UCJoinResult(topic_id=int(topic), code=code, message=text)]
    assert client.uc_topics == (40000000000000001,)

    # 6.12: UC SEQ_ACK first, then the message.
    ids.push("web17958631101589")
    client.receive_data(frame_bytes("s2c_uc_message_list", 0), now=2.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_seq_ack", 0)]
    [uc_message] = client.events_received()
    assert isinstance(uc_message, UCMessage)
    assert as_sdk_message(uc_message) == handler_args("ucMsg", "bob")[0][0]

    # Keep-alive: UC PING 10 s after BIND, PING 180 s after the CONN reply (6.5, 6.12).
    assert client.next_deadline() == 10.0
    ids.push("web179586311033011")
    client.expire(10.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_ping", 0)]
    client.receive_data(frame_bytes("s2c_uc_pong", 0), now=10.0)
    assert client.events_received() == []
    ids.push("web179586311132712", "web179586311233114")
    client.expire(180.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_ping", 1), vector_hex("c2s_uc_ping", 2)]
    client.receive_data(frame_bytes("s2c_ping", 1), now=180.0)
    client.receive_data(frame_bytes("s2c_uc_pong", 2), now=180.0)
    assert client.events_received() == []
    assert client.next_deadline() == 190.0

    ids.push("web179586311366416")
    client.quit_uc(40000000000000001, now=181.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_quit", 0)]
    client.receive_data(frame_bytes("s2c_uc_quit_resp", 0), now=181.0)
    topic, code, text, _ctx = handler_args("ucQuitResp", "bob")[0]
    assert client.events_received() == [UCQuitResult(topic_id=int(topic), code=code, message=text)]
    assert list(client.uc_topics) == []  # a list: mypy still believes the earlier value

    # 6.10: pull notification, then the repeat with the same minSequence acks silently.
    low, high, _types = handler_args("pullNotification", "bob")[0]
    ids.push("ack-exceed", "ack-exceed-repeat")
    client.receive_data(frame_bytes("s2c_secmsg_compound_exceed_limit", 0), now=182.0)
    client.receive_data(frame_bytes("s2c_secmsg_compound_exceed_limit_repeat", 0), now=182.0)
    assert client.events_received() == [
        PullNotification(min_sequence=int(low), max_sequence=int(high))
    ]
    repeat = examples("s2c_secmsg_compound_exceed_limit_repeat")[0]["observed"]
    acks = [sent_packet(f).body for f in client.data_to_send()]
    assert [a.sequence for a in acks] == [int(high), int(repeat["sequence"])]  # type: ignore[union-attr]

    ids.push("web179586311417819")
    assert client.pull(now=183.0) == "web179586311417819"
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_pull", 0)]
    ids.push("ack-after-pull")
    client.receive_data(frame_bytes("s2c_secmsg_compound_after_pull", 0), now=183.0)
    [ack] = client.data_to_send()
    assert sent_packet(ack).body.sequence == 1700000000000006  # type: ignore[union-attr]
    delivered = [as_sdk_message(e) for e in client.events_received()]  # type: ignore[arg-type]
    assert delivered == [args[0] for args in p2p[2:]]

    ids.push("web179586311419421")
    client.logout(now=184.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_ubnd", 0)]
    client.receive_eof()
    assert state_of(client) is ClientState.CLOSED
    assert client.next_deadline() is None


def test_alice_replays_the_capture() -> None:
    client, ids = login("alice", "res-alice-1", "web17958631083170", "web17958631083261", 1)
    client.receive_data(frame_bytes("s2c_bind_resp_ok", 1), now=0.0)
    assert client.events_received() == [StatusChange(online=True)]
    acks = handler_args("serverAck", "alice")

    ids.push("web17958631096302")
    sent = client.send_p2p("bob", "hello bob ✓ 你好", biz_type="TEXT", now=1.0)
    assert sent == "web17958631096302"
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_p2p_message", 0)]
    client.receive_data(frame_bytes("s2c_secmsg_packet_ack", 0), now=1.0)
    [ack] = client.events_received()
    assert isinstance(ack, ServerAck)
    assert [ack.packet_id, str(ack.sequence), str(ack.timestamp), ack.err_msg] == acks[0][:4]

    ids.push("web17958631096363")
    client.send_p2p("bob", "smile \U0001f600 end", is_store=False, biz_type="EMOJI", now=1.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_p2p_message", 1)]
    client.receive_data(frame_bytes("s2c_secmsg_packet_ack", 1), now=1.0)
    [ack] = client.events_received()
    assert [ack.packet_id, str(ack.sequence), str(ack.timestamp), ack.err_msg] == acks[1][:4]  # type: ignore[union-attr]

    ids.push("web17958631101444")
    client.send_p2t(30000000000000001, "hi group", biz_type="GTEXT", now=2.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_secmsg_p2t_message", 0)]
    client.receive_data(frame_bytes("s2c_secmsg_packet_ack_p2t", 0), now=2.0)
    [ack] = client.events_received()
    assert [ack.packet_id, str(ack.sequence), str(ack.timestamp), ack.err_msg] == acks[2][:4]  # type: ignore[union-attr]

    ids.push("web17958631101516")
    client.join_uc(40000000000000001, now=2.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_join", 1)]
    client.receive_data(frame_bytes("s2c_uc_join_resp", 1), now=2.0)
    assert client.events_received() == [
        UCJoinResult(topic_id=40000000000000001, code=0, message="success")
    ]

    # 10.9: the returned id is the UCPacket's; receivers see the older inner id.
    ids.push("web17958631101547", "web17958631101548")
    assert (
        client.send_uc(40000000000000001, "uc hello", biz_type="UCTEXT", now=2.0)
        == "web17958631101548"
    )
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_message", 0)]

    ids.push("web179586311016010")
    client.join_uc(40000000000000101, now=2.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_join", 2)]
    client.receive_data(frame_bytes("s2c_uc_join_resp", 2), now=2.0)
    client.events_received()

    ids.push("web179586311033112")
    client.expire(10.0)
    assert hexes(client.data_to_send()) == [vector_hex("c2s_uc_ping", 1)]
    client.receive_data(frame_bytes("s2c_uc_pong", 1), now=10.0)

    ids.push("web179586311132713", "uc-ping-not-kept")
    client.expire(180.0)
    assert hexes(client.data_to_send())[0] == vector_hex("c2s_ping", 0)
    client.receive_data(frame_bytes("s2c_ping", 0), now=180.0)

    client.receive_data(frame_bytes("s2c_uc_dismiss", 0), now=181.0)
    [topic] = handler_args("ucDismiss", "alice")[0]
    assert client.events_received() == [UCDismissed(topic_id=int(topic))]
    assert client.uc_topics == (40000000000000001,)

    kick = examples("s2c_kick")[0]["decoded"]["payload_decoded"]
    client.receive_data(frame_bytes("s2c_kick", 0), now=182.0)
    assert client.events_received() == [
        Kicked(
            err_type=kick["error_type"],
            err_reason=kick["error_reason"],
            err_desc=kick["error_desc"],
        )
    ]
    assert client.close_requested
    assert client.state is ClientState.CLOSED


def test_eve_bind_failure_reports_the_server_strings_and_closes() -> None:
    ids = ScriptedIds()
    client = ClientSession(APP_ID, "eve", "res-eve", ids=ids)
    ids.push("web17958631141870", "web17958631141881")
    client.login(token_answer("eve"), now=0.0)
    client.receive_data(frame_bytes("s2c_conn_resp", 2), now=0.0)
    client.data_to_send()
    client.receive_data(frame_bytes("s2c_bind_resp_fail", 0), now=0.0)
    [online, err_type, reason, desc] = handler_args("statusChange", "eve")[0]
    assert client.events_received() == [
        StatusChange(online=online, err_type=err_type, err_reason=reason, err_desc=desc)
    ]
    assert client.state is ClientState.CLOSED
    assert client.close_requested


# ----------------------------------------------------------------------------- unit cases


def bound_client(**options: Any) -> ClientSession:
    client, _ids = login(
        "bob", BOB_RESOURCE, "web17958631083190", "web17958631083241", 0, **options
    )
    client.receive_data(frame_bytes("s2c_bind_resp_ok", 0), now=0.0)
    client.events_received()
    client._ids = lambda: "id"  # ids no longer matter here
    return client


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {"code": 500, "message": "boom", "data": None},
            StatusChange(
                online=False,
                err_type="get token failed",
                err_reason="token info code:500",
                err_desc="token info message:boom",
            ),
        ),
        ("not json", None),
        (b"\xff\xfe", None),
        ("[1, 2]", None),
        ({"code": 200, "message": "success", "data": "x"}, None),
    ],
)
def test_bad_token_answers_become_status_changes(
    answer: Any, expected: StatusChange | None
) -> None:
    client = ClientSession(APP_ID, "bob", BOB_RESOURCE)
    client.login(answer, now=0.0)
    [event] = client.events_received()
    assert isinstance(event, StatusChange)
    assert not event.online
    if expected is not None:
        assert event == expected
    else:
        assert (event.err_type, event.err_reason) == ("get token failed", "token info malformed")
    assert client.state is ClientState.IDLE
    assert client.data_to_send() == []


def test_token_for_another_account_or_app() -> None:
    client = ClientSession(APP_ID, "alice", "r")
    client.login(token_answer("bob"), now=0.0)
    [event] = client.events_received()
    assert (event.online, event.err_reason) == (False, "account not same")  # type: ignore[union-attr]
    other_app = ClientSession(APP_ID + 1, "bob", "r")
    other_app.login(token_answer("bob"), now=0.0)
    [event] = other_app.events_received()
    assert event.err_reason == "appid not same"  # type: ignore[union-attr]


def test_sends_need_a_bound_session() -> None:
    client = ClientSession(APP_ID, "bob", BOB_RESOURCE)
    with pytest.raises(NotLoggedIn):
        client.send_p2p("alice", b"x", now=0.0)
    with pytest.raises(NotLoggedIn):
        client.pull(now=0.0)
    client.login(token_answer("bob"), now=0.0)
    with pytest.raises(LocalProtocolError):
        client.login(token_answer("bob"), now=0.0)  # CONNECTING: login already under way
    with pytest.raises(NotLoggedIn):
        client.join_uc(1, now=0.0)


def test_login_when_bound_reports_online_again() -> None:
    client = bound_client()
    client.login(token_answer("bob"), now=1.0)
    assert client.events_received() == [StatusChange(online=True)]
    assert client.data_to_send() == []


@pytest.mark.parametrize(
    ("send", "limit"),
    [("send_p2p", P2P_TEXT_LIMIT), ("send_p2t", P2P_TEXT_LIMIT), ("send_uc", UC_TEXT_LIMIT)],
)
def test_payload_limits(send: str, limit: int) -> None:
    client = bound_client()
    target: Any = "alice" if send == "send_p2p" else 1
    getattr(client, send)(target, "a" * limit, now=1.0)
    getattr(client, send)(target, b"a" * (3 * limit), now=1.0)
    getattr(client, send)(target, "\U0001f600" * (limit // 2), now=1.0)  # 2 UTF-16 units each
    client.data_to_send()
    for too_big in ("a" * (limit + 1), b"a" * (3 * limit + 1), "\U0001f600" * (limit // 2 + 1)):
        with pytest.raises(PayloadTooLarge):
            getattr(client, send)(target, too_big, now=1.0)
    assert client.data_to_send() == []


def test_dedup_window_is_bounded_and_shared_by_p2p_and_p2t() -> None:
    client = bound_client(dedup_window=2)
    seen = client.memory.seen
    assert seen.add(1)
    assert seen.add(2)
    assert not seen.add(1)
    assert seen.add(3)  # evicts 1
    assert len(seen) == 2
    assert seen.add(1)  # forgotten, so new again
    # the capture's P2P and P2T frames share one set: the P2T sequence is new
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2t", 0), now=1.0)
    assert [type(e) for e in client.events_received()] == [P2PMessage, P2TMessage]


def test_pull_notification_left_to_the_application() -> None:
    client = bound_client(ack_pull_notifications=False)
    client.receive_data(frame_bytes("s2c_secmsg_compound_exceed_limit", 0), now=1.0)
    assert client.events_received() == [
        PullNotification(min_sequence=1700000000000005, max_sequence=1700000000000006)
    ]
    assert client.data_to_send() == []  # not acked
    client.ack_sequence(1700000000000006, now=2.0)
    [ack] = client.data_to_send()
    assert sent_packet(ack).body.sequence == 1700000000000006  # type: ignore[union-attr]


def test_a_frame_encrypted_for_someone_else_is_a_bad_packet() -> None:
    client, _ids = login("alice", "res-alice-1", "web17958631083170", "web17958631083261", 1)
    client.receive_data(frame_bytes("s2c_bind_resp_ok", 1), now=0.0)
    client.events_received()
    # A frame for bob decrypts to junk with alice's key: one bad packet, the session goes on.
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    [event] = client.events_received()
    assert isinstance(event, BadPacket)
    assert client.data_to_send() == []
    assert client.state is ClientState.BOUND


def test_same_key_other_resource_is_not_for_us() -> None:
    client = ClientSession(APP_ID, "bob", "another-resource", ids=lambda: "id")
    client.login(token_answer("bob"), now=0.0)
    client.receive_data(frame_bytes("s2c_conn_resp", 0), now=0.0)
    client.receive_data(frame_bytes("s2c_bind_resp_ok", 0), now=0.0)
    client.events_received()
    client.data_to_send()
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    [event] = client.events_received()
    assert isinstance(event, BadPacket)
    assert event.reason == "not-for-us"
    assert client.data_to_send() == []  # 6.8 step 2: no ack
    # 10.11: a UC packet is dropped only when uuid AND resource differ; here the uuid matches
    client.receive_data(frame_bytes("s2c_uc_join_resp", 0), now=1.0)
    assert [type(e) for e in client.events_received()] == [UCJoinResult]


@pytest.mark.parametrize("junk", [b"", b"\x00" * 18, frame_bytes("s2c_ping", 0)[:-1]])
def test_a_bad_frame_is_a_protocol_failure_and_a_close(junk: bytes) -> None:
    client = bound_client()
    client.receive_data(junk, now=1.0)
    [event] = client.events_received()
    assert isinstance(event, ProtocolFailure)
    assert client.close_requested
    assert client.state is ClientState.CLOSED
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    assert client.events_received() == []  # closed: everything after is ignored


def test_a_frame_the_state_does_not_expect_is_a_bad_packet() -> None:
    client = bound_client()
    client.receive_data(frame_bytes("s2c_conn_resp", 0), now=1.0)
    [event] = client.events_received()
    assert isinstance(event, BadPacket)
    assert event.reason == "unexpected-cmd"
    assert client.state is ClientState.BOUND
