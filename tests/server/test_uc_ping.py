"""UC PING / PONG on the wire (docs/protocol.md 6.12, 10.10), with the official SDK's own frames.

Every 10 s the web SDK sends a UC PING listing every unlimited group it believes it joined. Its
list is never pruned (10.10): it keeps naming groups it quit, groups that were dismissed, and
may repeat entries. The server must answer PONG and must not act on the list: naming a group in
a PING neither joins it, nor keeps a membership alive, nor creates the group.

The PINGs are the captured ones (#32, #34, #40), or rebuilt from them with another group list.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from mimc_rx.protocol._pb import mimc_pb2 as pb

from .capture import APP, exchanges, frame
from .replay import ALICE, BOB, CREATED_ROOM, GROUP, ROOM, Replay
from .sdk_model import rebuild_secmsg
from .sdk_wire import SdkConnection, web_ids


def uc_ping(template: int, groups: list[tuple[int, int]]) -> bytes:
    """A captured UC PING of the same user with another list of (appId, topicId) groups."""

    def change(packet: pb.MIMCPacket, body: Message) -> None:
        assert isinstance(body, pb.UCPing)
        del body.group[:]
        for app_id, topic_id in groups:
            body.group.add(appId=app_id, topicId=topic_id)

    return rebuild_secmsg(frame(template, "c2s_uc_ping"), web_ids(), change)


def memberships(replay: Replay) -> dict[str, Any]:
    """Everything a UC PING must leave alone: groups and their members."""
    store = replay.store
    return {
        "uc": {t: sorted(topic.members) for t, topic in store.uc_topics.items()},
        "topics": {t: sorted(topic.members) for t, topic in store.topics.items()},
    }


async def pong_of(replay: Replay, conn: SdkConnection, ping: bytes) -> None:
    """Send one UC PING: one PONG comes back, addressed to this session, and nothing else."""
    pong = await conn.request(ping)
    assert (pong.kind, pong.calls, pong.dropped) == ("UC_PONG", [], None)
    assert pong.packet is not None
    assert pong.uc is not None
    user = pong.uc.user
    who = ALICE if user.appAccount == ALICE.account else BOB
    assert conn.user.uuid == str(who.uuid)
    assert (user.appId, user.uuid, user.resource) == (APP.app_id, who.uuid, who.resource)
    assert pong.uc.payload == b""
    assert pong.uc.packetId == pong.packet.packetId != ""  # one id for both (6.12)
    replay.shape(pong, "s2c_uc_pong", who)
    assert await conn.settle() == []


async def test_every_uc_ping_gets_one_pong(replay: Replay) -> None:
    alice, bob = await replay.login(ALICE), await replay.login(BOB)
    joined = await alice.request(frame(25, "c2s_uc_join"))
    assert [c.handler for c in joined.calls] == ["ucJoinResp"]
    for _ in range(3):
        await pong_of(replay, alice, frame(34, "c2s_uc_ping"))  # names ROOM and CREATED_ROOM
    await pong_of(replay, alice, uc_ping(34, []))  # the SDK skips an empty list; still PONG
    assert await bob.settle() == []  # other members hear nothing of it


async def test_uc_ping_ignores_unknown_and_left_topics(replay: Replay) -> None:
    alice, bob = await replay.login(ALICE), await replay.login(BOB)
    # bob joins ROOM and quits it (captured #23, #44): the SDK keeps ROOM in its list.
    assert [c.args[1] for c in (await bob.request(frame(23, "c2s_uc_join"))).calls] == [0]
    assert [c.args[1] for c in (await bob.request(frame(44, "c2s_uc_quit"))).calls] == [0]
    # A room bob is in and that gets dismissed: the SDK keeps that one too.
    replay.server.seed_uc_topic(CREATED_ROOM, owner=ALICE.account, members=[BOB.account])
    (dismiss,) = [x for x in exchanges("/api/uctopic") if x["method"] == "DELETE"]
    answer = await replay.http.delete(dismiss["path"], headers=dismiss["req_headers"])
    assert answer.json()["code"] == 200
    for member in (alice, bob):
        assert [c.handler for c in (await member.receive()).calls] == ["ucDismiss"]
    other_room = replay.server.seed_uc_topic(41, owner=ALICE.account)  # bob never joined it
    before = memberships(replay)

    await pong_of(replay, bob, frame(40, "c2s_uc_ping"))  # the captured PING naming ROOM
    names = [
        (APP.app_id, ROOM),  # left
        (APP.app_id, ROOM),  # repeated (10.10)
        (APP.app_id, CREATED_ROOM),  # dismissed
        (APP.app_id, other_room),  # never joined
        (APP.app_id, 999),  # never existed
        (APP.app_id, GROUP),  # a normal group's id, not an unlimited one
        (APP.app_id, 0),  # what a JS number becomes (10.8)
        (APP.app_id + 1, ROOM),  # another app
    ]
    await pong_of(replay, bob, uc_ping(40, names))
    assert memberships(replay) == before  # nothing joined, created or dropped
    assert await alice.settle() == []

    # bob is really out of ROOM: alice's UC message (captured #27) does not reach him...
    await alice.request(frame(25, "c2s_uc_join"))
    await alice.send(frame(27, "c2s_uc_message"))
    assert await alice.settle() == []
    assert await bob.settle() == []
    # ...until he joins again (so the silence above was not a broken delivery path).
    await bob.request(frame(23, "c2s_uc_join"))
    await alice.send(frame(27, "c2s_uc_message"))
    listing = await bob.receive()
    assert [c.handler for c in listing.calls] == ["ucMsg"]
    assert listing.calls[0].args[0]["topicId"] == str(ROOM)
