"""The official web SDK 1.0.3, replayed byte for byte against the real local server.

We cannot run the official SDK here, but tests/vectors hold every kind of frame it sent (c2s) and
every kind of frame it accepted, with the handler calls it made (s2c, ``observed``). These tests
start the real :class:`~mimc_rx.server.LocalServer` (uvicorn, hub, SQLite, 127.0.0.1, port 0),
open raw ``websockets`` connections and send the SDK's captured frames in the capture's order.
Every frame the server answers is judged by ``sdk_model.SdkUser``, a model of what SDK 1.0.3 does
with a frame (docs/protocol.md 2, 5, 6), written independently of ``mimc_rx.protocol`` and itself
checked against the capture (:func:`test_the_model_reproduces_the_sdk`). For each answer the tests
require:

* the handler calls the SDK would make, equal to the ones it made in the capture, except for
  values the server assigns (timestamps, our sequences; see below);
* every field that was present in the capture's accepted frame of the same kind is present in
  ours (:func:`check_shape`), nested payloads included;
* the replies the SDK would send (SEQUENCE_ACK after a COMPOUND, UC SEQ_ACK after a
  MESSAGE_LIST) are then sent, and the server's state moves accordingly.

**Seeding.** The server is seeded with the capture's fake app (id, key, secret, package), its
accounts with the capture's uuids, security keys and tokens (``LocalServer.seed_user``), the
normal group 30000000000000001 of alice and bob (``seed_topic``) and the unlimited group
40000000000000001 (``seed_uc_topic``, owned by an account outside the capture, so that the
captured ``GET /api/uctopic/topics`` answers ``[]`` as it did). The CONN challenges come from a
:class:`ChallengeQueue` injected as ``ServerConfig.challenges``: each connection gets the
challenge its captured BIND was signed over, so the BIND signatures verify unchanged.

**Replayed verbatim** (the captured bytes): CONN and BIND of bob, alice and eve; alice's two P2P
messages and her group message; bob's captured SEQUENCE_ACKs (#12, #17, #18); every UC JOIN, the
UC MESSAGE, every UC PING, the UC QUIT; both PINGs (also used as ordering barriers); PULL; both
UBNDs; the captured HTTP requests (uctopic list and dismiss, with their token headers).

**Rebuilt**, from the captured frame of the same kind with only ids and values changed
(:func:`sdk_model.rebuild_secmsg`, checked to reproduce captured frames exactly when nothing is
changed):

* the SDK's SEQUENCE_ACK for a COMPOUND whose ack is not among the vectors (the group message,
  the pulled messages), and its UC SEQ_ACK, whose sequence must be ours (the capture's was 1);
* the two "offline" messages: the capture server stored them through a control API of its own;
  here alice sends them (her P2P frame with payload ``offline-N`` and bizType ``OFFLINE``) while
  bob is logged out, so they wait in his backlog;
* the capture created 40000000000000101 with ``POST /api/uctopic``; the server picks topic ids
  at random, so the test seeds that topic with the captured id just before alice's captured
  JOIN of it.

**Not reproducible, by design.** Timestamps are the server's clock (a fake one here). Sequences
are per user on our server (docs/protocol.md 6.15) while the capture server had one counter for all:
with the users seeded at the capture's starting sequence, alice's and bob's P2P sequences equal
the captured ones (so the captured SEQUENCE_ACKs are exactly right), bob's group message gets
...003 where the capture had ...004, and UC sequences are per topic (ours are not 1). The
capture server also produced frames on command that ours produces only for a reason: the
duplicate COMPOUND (#16; ours redelivers only at login), the repeated pull notification (#48),
and a KICK (#58; ours kicks when the same uuid/resource logs in again, which the test does).
Bob logs out (#59) before the offline messages and logs in again to receive the pull
notification, so #59 is played twice.
"""

from __future__ import annotations

import base64

from google.protobuf.message import Message

from mimc_rx.protocol._pb import mimc_pb2 as pb

from .capture import example, exchanges, frame, s2c_examples
from .replay import (
    ALICE,
    BOB,
    CREATED_NAME,
    CREATED_ROOM,
    EVE,
    FIRST_SEQUENCE,
    INVALID_SIG,
    NOW_MS,
    ROOM,
    Replay,
    decoded,
    delivered,
    observed_call,
    sequence_ack,
    with_values,
)
from .sdk_model import Call, SdkUser, build_frame, parse_frame, rebuild_secmsg
from .sdk_wire import SdkConnection, web_ids

# ----------------------------------------------------------------------------- the model itself


def test_the_model_reproduces_the_sdk() -> None:
    """Fed the captured s2c frames in capture order, the model makes the SDK's handler calls."""
    by_connection = {example(who.conn_frame)["connection"]: who for who in (ALICE, BOB, EVE)}
    users = {
        who.account: SdkUser(
            uuid=who.data["miUserId"],
            resource=who.resource,
            security_key=who.security_key,
            pull_handler=lambda low, high: False,
        )
        for who in (ALICE, BOB, EVE)
    }
    checked = 0
    for name, ex in sorted(s2c_examples(), key=lambda item: item[1]["frame_n"]):
        who = by_connection[ex["connection"]]
        seen = users[who.account].receive(bytes.fromhex(ex["hex"]))
        obs = ex["observed"]
        assert seen.dropped is None, (name, seen.dropped)
        if isinstance(obs, str):  # "no handler exists for this frame"
            assert seen.calls == [], name
        elif isinstance(obs, list):
            assert seen.calls == [Call(o["handler"], o["args"]) for o in obs], name
        elif obs.get("client_reply") == "c2s_bind":
            assert (seen.calls, seen.replies) == ([], [("BIND",)]), name
        elif obs["handler"] is None:
            assert seen.calls == [], name
            # The SDK's answer: the ack it sent next (#17 for the duplicate, #49 for the repeat).
            sequence = obs.get("sequence") or decoded(obs["frame_n"])["sequence"]
            assert seen.replies == [("SEQUENCE_ACK", sequence)], name
        else:
            assert seen.calls == [observed_call(ex["frame_n"])], name
        checked += 1
    assert checked == len(s2c_examples())


def test_the_model_serializes_like_the_sdk() -> None:
    """Captured c2s frames re-serialize to their exact bytes: rebuilt frames are the SDK's."""
    for frame_n in (1, 5, 9, 12, 19, 23, 27, 29, 32, 36, 44, 51, 59):
        raw = frame(frame_n)
        assert build_frame(*parse_frame(raw)) == raw
    for frame_n in (9, 12, 29, 34):
        raw = frame(frame_n)
        same_id = parse_frame(raw)[0].id
        assert rebuild_secmsg(raw, same_id, lambda packet, body: None) == raw


def test_a_captured_bind_needs_its_challenge() -> None:
    """The injected challenge is what makes the replay work: the signature covers it (6.3)."""
    bind = example(BOB.bind_frame)
    assert bind["signature"]["params_in_order"]["challenge"] == BOB.challenge
    assert bind["signature"]["verified"] is True
    assert example(EVE.bind_frame)["signature"]["verified"] is False  # tampered on purpose


async def test_a_captured_bind_on_another_challenge_is_refused(replay: Replay) -> None:
    replay.challenges.push("0" * 32)
    user = SdkUser(uuid=BOB.data["miUserId"], resource=BOB.resource, security_key=BOB.security_key)
    conn = SdkConnection(replay.server.ws_url, user)
    replay.conns.append(conn)
    await conn.open()
    await conn.request(frame(BOB.conn_frame))
    status = await conn.request(frame(BOB.bind_frame))
    assert status.calls == [Call("statusChange", [False, *INVALID_SIG])]
    assert replay.server.hub is not None
    assert replay.server.hub.online_resources(BOB.uuid) == []


# ----------------------------------------------------------------------------- eve


async def test_eve_tampered_signature_is_refused_as_captured(replay: Replay) -> None:
    """Eve's BIND was signed with a tampered key: the SDK reported exactly this refusal."""
    eve = await replay.connect(EVE)
    status = await eve.request(frame(EVE.bind_frame, "c2s_bind"))
    assert status.calls == [observed_call(57)]
    assert status.calls == [Call("statusChange", [False, *INVALID_SIG])]
    replay.shape(status, "s2c_bind_resp_fail", EVE)
    assert eve.user.logged_in is False
    # Her captured logout (UBND on a connection that never bound): the server closes the socket.
    await eve.send(frame(60, "c2s_ubnd"))
    assert await eve.closed_by_server() == []
    assert replay.server.hub is not None
    assert replay.server.hub.online_resources(EVE.uuid) == []


# ----------------------------------------------------------------------------- the session


async def test_the_captured_session_replays_against_the_server(replay: Replay) -> None:
    """The capture's whole session, in its order (see the module docstring)."""
    bob = await replay.login(BOB)  # frames 1, 5
    alice = await replay.login(ALICE)  # frames 3, 7
    await _uctopic_lists(replay)
    await _p2p(replay, alice, bob)
    await _p2t(replay, alice, bob)
    await _unlimited_group(replay, alice, bob)
    await _pings(replay, alice, bob)
    await _quit_and_dismiss(replay, alice, bob)
    await _pings_naming_left_topics(replay, alice, bob)
    await _logout(replay, bob)
    bob = await _offline_messages_and_pull(replay, alice)
    await _kick_by_a_newer_login(replay, alice)
    await _logout(replay, bob)
    not_produced = {
        "s2c_bind_resp_fail": "eve's refusal, in its own test",
        "s2c_secmsg_compound_duplicate": "made on command by the capture server",
        "s2c_secmsg_compound_exceed_limit_repeat": "made on command by the capture server",
    }
    every_kind = {name for name, _ in s2c_examples()}
    assert replay.shapes == every_kind - set(not_produced)


async def _uctopic_lists(replay: Replay) -> None:
    # The SDK lists the joined unlimited groups once after login (6.12, 8.2).
    for x in exchanges("/api/uctopic/topics"):
        answer = await replay.http.get(x["path"], headers=x["req_headers"])
        assert answer.json() == x["resp"]


async def _p2p(replay: Replay, alice: SdkConnection, bob: SdkConnection) -> None:
    for sent, ack_n, compound_n, acks in ((9, 10, 11, (12,)), (13, 14, 15, (17, 18))):
        ack = await alice.request(frame(sent, "c2s_secmsg_p2p_message"))
        expected = observed_call(ack_n)
        expected.args[2] = NOW_MS  # the timestamp is the server's clock
        assert ack.calls == [expected]  # serverAck(packetId, sequence, timestamp, errorMsg)
        replay.shape(ack, "s2c_secmsg_packet_ack", ALICE)

        compound = await bob.receive()
        assert compound.dropped is None  # addressed to bob's uuid and resource (6.8, 10.5)
        assert compound.calls == [with_values(observed_call(compound_n), timeStamp=NOW_MS)]
        (message,) = delivered(compound)
        assert isinstance(message, pb.MIMCP2PMessage)
        assert message.payload == base64.b64decode(decoded(sent)["payload"])  # bytes unchanged
        replay.shape(compound, "s2c_secmsg_compound_p2p", BOB)

        # The SDK acks the list's maxSequence: exactly what it acked in the capture.
        captured_ack = decoded(acks[0])["sequence"]
        assert compound.replies == [("SEQUENCE_ACK", captured_ack)]
        for ack_frame in acks:
            await bob.send(frame(ack_frame, "c2s_secmsg_sequence_ack"))
        assert await bob.settle() == []  # no reply to a SEQUENCE_ACK (6.9)
        assert replay.store.cursor(BOB.uuid, BOB.resource) == int(captured_ack)
    assert await alice.settle() == []  # the sender gets no copy of its P2P


async def _p2t(replay: Replay, alice: SdkConnection, bob: SdkConnection) -> None:
    ack = await alice.request(frame(19, "c2s_secmsg_p2t_message"))
    expected = observed_call(20)
    expected.args[2] = NOW_MS
    assert ack.calls == [expected]  # alice's sequence ...003, as captured
    replay.shape(ack, "s2c_secmsg_packet_ack_p2t", ALICE)

    compound = await bob.receive()
    ours = str(FIRST_SEQUENCE + 3)  # bob's third sequence; the capture's shared counter said 4
    assert compound.calls == [with_values(observed_call(21), timeStamp=NOW_MS, sequence=ours)]
    replay.shape(compound, "s2c_secmsg_compound_p2t", BOB)
    assert compound.replies == [("SEQUENCE_ACK", ours)]
    await bob.send(sequence_ack(ours))
    assert await bob.settle() == []
    assert replay.store.cursor(BOB.uuid, BOB.resource) == int(ours)
    assert await alice.settle() == []  # the sending session is left out (6.7)


async def _unlimited_group(replay: Replay, alice: SdkConnection, bob: SdkConnection) -> None:
    for conn, who, join_n, resp_n in ((bob, BOB, 23, 24), (alice, ALICE, 25, 26)):
        resp = await conn.request(frame(join_n, "c2s_uc_join"))
        assert resp.calls == [observed_call(resp_n)]  # ucJoinResp(topicId, 0, "success")
        assert resp.uc is not None  # the receiving user with uuid and resource (6.12)
        assert (resp.uc.user.uuid, resp.uc.user.resource) == (who.uuid, who.resource)
        assert resp.uc.user.appAccount == who.account
        replay.shape(resp, "s2c_uc_join_resp", who)
    assert set(replay.store.uc_topics[ROOM].members) >= {ALICE.uuid, BOB.uuid}

    await alice.send(frame(27, "c2s_uc_message"))
    listing = await bob.receive()
    sequence = str(replay.store.uc_topics[ROOM].last_seq)  # per topic (6.12); the capture's was 1
    expected = with_values(observed_call(28), timeStamp=NOW_MS, sequence=sequence)
    assert listing.calls == [expected]  # the receiver sees the inner UCMessage id (10.9)
    assert listing.uc is not None
    assert (listing.uc.user.uuid, listing.uc.user.resource) == (BOB.uuid, BOB.resource)
    replay.shape(listing, "s2c_uc_message_list", BOB)
    assert listing.replies == [("UC_SEQ_ACK", str(ROOM), sequence)]

    def change(packet: pb.MIMCPacket, body: Message) -> None:
        assert isinstance(body, pb.UCSequenceAck)
        body.sequence = int(sequence)

    await bob.send(rebuild_secmsg(frame(29, "c2s_uc_seq_ack"), web_ids(), change))
    assert await bob.settle() == []  # UC SEQ_ACK has no reply
    assert await alice.settle() == []  # nothing goes back to the UC sender (10.19)

    # The capture created CREATED_ROOM over HTTP; the server picks ids at random, so it is seeded.
    replay.server.seed_uc_topic(CREATED_ROOM, owner=ALICE.account, name=CREATED_NAME)
    resp = await alice.request(frame(30, "c2s_uc_join"))  # the SDK's JOIN after create
    assert resp.calls == [observed_call(31)]


async def _pings(replay: Replay, alice: SdkConnection, bob: SdkConnection) -> None:
    for conn, who, ping_n in ((bob, BOB, 32), (alice, ALICE, 34), (bob, BOB, 40)):
        pong = await conn.request(frame(ping_n, "c2s_uc_ping"))
        assert (pong.kind, pong.calls, pong.dropped) == ("UC_PONG", [], None)
        replay.shape(pong, "s2c_uc_pong", who)
    for conn, who, ping_n in ((alice, ALICE, 36), (bob, BOB, 38)):
        echo = await conn.request(frame(ping_n, "c2s_ping"))
        assert (echo.cmd, echo.calls) == ("PING", [])  # ignored by the SDK (6.5)
        assert echo.header.id == parse_frame(frame(ping_n))[0].id
        replay.shape(echo, "s2c_ping", who)


async def _quit_and_dismiss(replay: Replay, alice: SdkConnection, bob: SdkConnection) -> None:
    resp = await bob.request(frame(44, "c2s_uc_quit"))
    assert resp.calls == [observed_call(45)]  # ucQuitResp(topicId, 0, "success")
    replay.shape(resp, "s2c_uc_quit_resp", BOB)
    assert BOB.uuid not in replay.store.uc_topics[ROOM].members

    (dismiss,) = [x for x in exchanges("/api/uctopic") if x["method"] == "DELETE"]
    answer = await replay.http.delete(dismiss["path"], headers=dismiss["req_headers"])
    assert answer.json() == dismiss["resp"]
    pushed = await alice.receive()
    assert pushed.calls == [observed_call(46)]  # ucDismiss("40000000000000101")
    replay.shape(pushed, "s2c_uc_dismiss", ALICE)
    assert await bob.settle() == []  # bob was never in that room
    assert CREATED_ROOM not in replay.store.uc_topics


async def _pings_naming_left_topics(
    replay: Replay, alice: SdkConnection, bob: SdkConnection
) -> None:
    # docs/protocol.md 10.10: the SDK never prunes its UC list, so its PINGs keep naming topics it
    # left (bob's ROOM) or that are gone (alice's CREATED_ROOM). PONG, and nothing changes.
    for conn, ping_n in ((bob, 40), (alice, 34)):
        pong = await conn.request(frame(ping_n, "c2s_uc_ping"))
        assert (pong.kind, pong.calls) == ("UC_PONG", [])
        assert await conn.settle() == []
    assert BOB.uuid not in replay.store.uc_topics[ROOM].members
    assert ALICE.uuid in replay.store.uc_topics[ROOM].members
    assert CREATED_ROOM not in replay.store.uc_topics


async def _logout(replay: Replay, bob: SdkConnection) -> None:
    await bob.send(frame(59, "c2s_ubnd"))
    assert await bob.closed_by_server() == []  # UBND closes the socket (6.13)
    assert replay.server.hub is not None
    assert replay.server.hub.online_resources(BOB.uuid) == []


async def _offline_messages_and_pull(replay: Replay, alice: SdkConnection) -> SdkConnection:
    """Two stored messages wait for bob; at login he gets a pull notification, then PULLs."""
    sent: list[str] = []
    for i, text in enumerate(("offline-1", "offline-2")):
        packet_id = web_ids()

        def change(packet: pb.MIMCPacket, body: Message, text: str = text) -> None:
            assert isinstance(body, pb.MIMCP2PMessage)
            body.payload, body.bizType, body.isStore = text.encode(), "OFFLINE", True

        ack = await alice.request(rebuild_secmsg(frame(9), packet_id, change))
        alice_sequence = str(FIRST_SEQUENCE + 4 + i)  # after 2 P2P and 1 P2T
        assert ack.calls == [Call("serverAck", [packet_id, alice_sequence, NOW_MS, ""])]
        sent.append(packet_id)

    # Backlog of 2 > backlog_limit 1: the app is told, and this app's handler does not ack.
    bob = await replay.login(BOB, pull_handler=lambda low, high: False)
    low, high = str(FIRST_SEQUENCE + 4), str(FIRST_SEQUENCE + 5)
    notice = await bob.receive()
    assert (notice.calls, notice.replies) == ([Call("pullNotification", [low, high])], [])
    replay.shape(notice, "s2c_secmsg_compound_exceed_limit", BOB)
    assert replay.store.cursor(BOB.uuid, BOB.resource) == FIRST_SEQUENCE + 3

    pulled = await bob.request(frame(51, "c2s_secmsg_pull"))  # the SDK's pull() (6.11)
    captured = [Call(o["handler"], o["args"]) for o in example(52)["observed"]]
    assert len(pulled.calls) == len(captured) == 2
    for i, (call, theirs) in enumerate(zip(pulled.calls, captured, strict=True)):
        # Assigned by the server or made by the capture's control API: id, sequence, sender
        # resource (ours is alice's session), time. The rest is what the capture delivered.
        assert call == with_values(
            theirs,
            packetId=sent[i],
            sequence=str(FIRST_SEQUENCE + 4 + i),
            fromResource=ALICE.resource,
            timeStamp=NOW_MS,
        )
    replay.shape(pulled, "s2c_secmsg_compound_after_pull", BOB)
    assert pulled.replies == [("SEQUENCE_ACK", high)]
    await bob.send(sequence_ack(high))
    assert await bob.settle() == []
    assert replay.store.cursor(BOB.uuid, BOB.resource) == int(high)
    return bob


async def _kick_by_a_newer_login(replay: Replay, alice: SdkConnection) -> None:
    """The same uuid/resource logs in again: the older socket gets KICK and is closed (6.13)."""
    newer = await replay.login(ALICE)
    (kick,) = await alice.closed_by_server()
    assert kick.calls == [observed_call(58)] == [Call("disconnect", [])]
    replay.shape(kick, "s2c_kick", ALICE)
    assert replay.server.hub is not None
    assert replay.server.hub.online_resources(ALICE.uuid) == [ALICE.resource]
    assert await newer.settle() == []
