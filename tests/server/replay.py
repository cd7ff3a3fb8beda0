"""The capture-replay setup shared by the SDK replay tests: the seeded server and its helpers.

See test_sdk_capture_replay.py for what is replayed and why. :func:`open_replay` starts the real
LocalServer on 127.0.0.1 (port 0) with the capture's fake app, seeds the capture's accounts (uuid,
security key, token, starting sequence), its groups, and injects a :class:`ChallengeQueue` so the
captured BIND frames verify; conftest.py exposes it as the ``replay`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.message import Message

from mimc_rx.protocol._pb import mimc_pb2 as pb
from mimc_rx.server import LocalServer, ServerConfig

from .capture import APP, Identity, example, exchanges, first_example, frame, identity
from .conftest import TIMEOUT, FakeClock
from .sdk_model import Call, SdkUser, Seen, field_paths, rebuild_secmsg
from .sdk_wire import ChallengeQueue, SdkConnection, web_ids

__all__ = [
    "ALICE",
    "BOB",
    "CLOCK",
    "CREATED_NAME",
    "CREATED_ROOM",
    "EVE",
    "FIRST_SEQUENCE",
    "GROUP",
    "INVALID_SIG",
    "NOW_MS",
    "PINGS",
    "ROOM",
    "Replay",
    "check_shape",
    "decoded",
    "delivered",
    "observed_call",
    "open_replay",
    "sequence_ack",
    "with_values",
]

ALICE, BOB, EVE = identity("alice"), identity("bob"), identity("eve")

CLOCK = 1_690_000_000.0
"""The fake wall clock (s). Sequences are max(previous + 1, now_ms * 1000) (docs/server.md), so
with now_ms * 1000 below the capture's sequences the seeded counters decide them."""
NOW_MS = str(int(CLOCK * 1000))
FIRST_SEQUENCE = 1_700_000_000_000_000
"""The capture's sequences start right above this value (1700000000000001)."""


def decoded(frame_n: int) -> dict[str, Any]:
    """The innermost decoded message of a captured SECMSG (P2P, P2T, UC body...)."""
    payload: dict[str, Any] = example(frame_n)["decoded"]["payload_decoded"]["payload_decoded"]
    inner: dict[str, Any] = payload.get("payload_decoded", payload)
    return inner


GROUP = int(decoded(19)["to"]["topicId"])  # 30000000000000001
ROOM = int(decoded(23)["group"]["topicId"])  # 40000000000000001
CREATED_ROOM = int(decoded(30)["group"]["topicId"])  # 40000000000000101, created over HTTP
CREATED_NAME = next(
    x["resp"]["data"]["topicName"] for x in exchanges("/api/uctopic") if x["method"] == "POST"
)
INVALID_SIG = ["auth", "invalid-sig", "signature mismatch"]  # our BIND refusal (6.4)
PINGS = {ALICE.account: frame(36, "c2s_ping"), BOB.account: frame(38, "c2s_ping")}

# Fields present in a captured accepted frame that ours may lack, and why the SDK does not care.
IGNORED_FIELDS: dict[str, dict[str, str]] = {
    "s2c_conn_resp": {
        "payload.host": "a front-end name; the SDK reads only the challenge (6.1 step 3)",
    },
}


# ----------------------------------------------------------------------------- helpers


def observed_call(frame_n: int) -> Call:
    """The handler call the SDK made for captured s2c frame ``frame_n``.

    The capture appends the JS types of the arguments as a last ``{"types": ...}`` element, and
    UC join/quit callbacks get the app's context object as a fourth argument, which is SDK-side
    state the server never sees; both are left out.
    """
    obs = example(frame_n)["observed"]
    args = [a for a in obs["args"] if not (isinstance(a, dict) and set(a) == {"types"})]
    if obs["handler"] in ("ucJoinResp", "ucQuitResp"):
        args = args[:3]
    return Call(obs["handler"], args)


def with_values(call: Call, **values: Any) -> Call:
    """``call`` with some fields of its single object argument replaced (server-assigned ones)."""
    (arg,) = call.args
    return Call(call.handler, [{**arg, **values}])


def check_shape(seen: Seen, kind: str, key: str) -> None:
    """Every field present in the capture's accepted ``kind`` frame is present in ``seen``."""
    captured = first_example(kind)
    captured_key = captured.get("context", {}).get("security_key_b64")
    theirs = field_paths(bytes.fromhex(captured["hex"]), captured_key)
    ours = field_paths(seen.raw, key)
    missing = theirs - ours - set(IGNORED_FIELDS.get(kind, {}))
    assert not missing, f"{kind}: fields the SDK got in the capture are missing: {missing}"


def delivered(seen: Seen) -> list[Message]:
    """The P2P / P2T messages inside a COMPOUND, decoded."""
    assert seen.packet is not None
    lst = pb.MIMCPacketList.FromString(seen.packet.payload)
    kinds: dict[int, type[Message]] = {1: pb.MIMCP2PMessage, 2: pb.MIMCP2TMessage}
    return [kinds[p.type].FromString(p.payload) for p in lst.packets]


def sequence_ack(sequence: str) -> bytes:
    """The SEQUENCE_ACK the SDK sends after a COMPOUND (6.9), rebuilt from bob's #12."""

    def change(packet: pb.MIMCPacket, body: Message) -> None:
        assert isinstance(body, pb.MIMCSequenceAck)
        body.sequence = int(sequence)

    return rebuild_secmsg(frame(12, "c2s_secmsg_sequence_ack"), web_ids(), change)


@dataclass
class Replay:
    """A running server seeded with the capture, and the connections of the test."""

    server: LocalServer
    challenges: ChallengeQueue
    http: httpx.AsyncClient
    conns: list[SdkConnection] = field(default_factory=list)
    shapes: set[str] = field(default_factory=set)

    @property
    def store(self) -> Any:
        assert self.server.hub is not None
        return self.server.hub.store

    def shape(self, seen: Seen, kind: str, who: Identity) -> None:
        check_shape(seen, kind, who.security_key)
        self.shapes.add(kind)

    async def connect(self, who: Identity, **model: Any) -> SdkConnection:
        """Open a websocket and play the account's captured CONN (6.1)."""
        user = SdkUser(
            uuid=who.data["miUserId"], resource=who.resource, security_key=who.security_key, **model
        )
        conn = SdkConnection(self.server.ws_url, user, PINGS.get(who.account))
        self.conns.append(conn)
        await conn.open()
        self.challenges.push(who.challenge)
        reply = await conn.request(frame(who.conn_frame, "c2s_conn"))
        assert (reply.cmd, user.challenge, reply.replies) == ("CONN", who.challenge, [("BIND",)])
        self.shape(reply, "s2c_conn_resp", who)
        return conn

    async def login(self, who: Identity, **model: Any) -> SdkConnection:
        """CONN, then the captured BIND: the SDK must report a successful login (6.4)."""
        conn = await self.connect(who, **model)
        status = await conn.request(frame(who.bind_frame, "c2s_bind"))
        expected = observed_call(8 if who is ALICE else 6)
        assert status.calls == [expected] == [Call("statusChange", [True, "", "", ""])]
        self.shape(status, "s2c_bind_resp_ok", who)
        return conn


@contextlib.asynccontextmanager
async def open_replay(tmp_path: Path) -> AsyncIterator[Replay]:
    """The seeded server (see the module docstring); its connections are closed at the end."""
    challenges = ChallengeQueue()
    config = ServerConfig(clock=FakeClock(CLOCK), challenges=challenges, backlog_limit=1)
    async with (
        LocalServer(db=tmp_path / "replay.db", apps=[APP], config=config) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        for who in (ALICE, BOB, EVE):
            data = server.seed_user(
                who.account,
                uuid=who.uuid,
                security_key=who.security_key,
                token=who.token,
                last_sequence=FIRST_SEQUENCE,
            )
            # The seeded account is the captured one: the token answer matches the recorded
            # answer field for field (but the front-end host, which only TCP SDKs read).
            assert {**data, "feDomainName": "-"} == {**who.data, "feDomainName": "-"}
        server.seed_topic(GROUP, owner=ALICE.account, members=[BOB.account], name="capture")
        server.seed_uc_topic(ROOM, owner="room-owner", name="capture room")
        state = Replay(server, challenges, http)
        yield state
        for conn in state.conns:
            await conn.close()
