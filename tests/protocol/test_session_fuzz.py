"""Peer bytes never raise out of ``receive_data``: random, mutated and well-framed-but-junk
input only ever produces the documented events (docs/sansio.md), never an exception and
never our own ``internal-error``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimc_rx.protocol import codec
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.codec import Cmd, Header, MIMCPacket
from mimc_rx.protocol.crypto import rc4_payload
from mimc_rx.protocol.events import BadPacket, ProtocolFailure
from mimc_rx.protocol.framing import FRAME_ERROR_REASONS, Frame, adler32, serialize_frame
from mimc_rx.protocol.server import ServerSession

from .test_codec import packets
from .vectors import APP_ID, BOB_RESOURCE, PACKAGE, all_examples, frame_bytes, token_answer

BOB_KEY = token_answer("bob")["data"]["miUserSecurityKey"]
BOB_UUID = 20000000000000002

CLIENT_FAILURES = FRAME_ERROR_REASONS | {"bad-conn-reply", "bad-bind-reply"}
CLIENT_BAD_PACKETS = {"unexpected-cmd", "not-for-us", "bad-protobuf", "bad-utf8", "bad-packet"}
SERVER_FAILURES = FRAME_ERROR_REASONS | {"unexpected-cmd", "bad-conn", "bad-bind"}
SERVER_BAD_PACKETS = {
    "bad-protobuf",
    "bad-utf8",
    "sender-mismatch",
    "missing-packet-id",
    "unexpected-type",
    "unsupported-cipher",
}
ALL_FRAMES = [bytes.fromhex(e["hex"]) for _, _, e in all_examples()]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def client_in(stage: str) -> ClientSession:
    client = ClientSession(APP_ID, "bob", BOB_RESOURCE, ids=lambda: "web1")
    if stage == "idle":
        return client
    client.login(token_answer("bob"), now=0.0)
    if stage != "connecting":
        client.receive_data(frame_bytes("s2c_conn_resp", 0), now=0.0)
    if stage == "bound":
        client.receive_data(frame_bytes("s2c_bind_resp_ok", 0), now=0.0)
    client.events_received()
    client.data_to_send()
    return client


def server_in(stage: str) -> ServerSession:
    server = ServerSession(challenges=lambda: "35c713d97320a0628745cb0d67db0adb")
    if stage == "await-conn":
        return server
    server.receive_data(frame_bytes("c2s_conn", 0), now=0.0)
    if stage == "bound":
        server.receive_data(frame_bytes("c2s_bind", 0), now=0.0)
        assert server.accept_bind(BOB_KEY, app_id=APP_ID, package=PACKAGE, app_account="bob")
    server.events_received()
    server.data_to_send()
    return server


def check_client(client: ClientSession, data: bytes) -> None:
    client.receive_data(data, now=1.0)
    for event in client.events_received():
        if isinstance(event, ProtocolFailure):
            assert event.reason in CLIENT_FAILURES, event
            assert client.close_requested
        elif isinstance(event, BadPacket):
            assert event.reason in CLIENT_BAD_PACKETS, event
    for frame in client.data_to_send():
        assert isinstance(frame, bytes)
    client.next_deadline()


def check_server(server: ServerSession, data: bytes) -> None:
    server.receive_data(data, now=1.0)
    for event in server.events_received():
        if isinstance(event, ProtocolFailure):
            assert event.reason in SERVER_FAILURES, event
            assert server.close_requested
            assert server.data_to_send() == []  # nothing about the failure goes to the peer
        elif isinstance(event, BadPacket):
            assert event.reason in SERVER_BAD_PACKETS, event


def mutate(raw: bytes, flips: list[tuple[int, int]], fix_checksum: bool) -> bytes:
    data = bytearray(raw)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if fix_checksum and len(data) >= 4:
        data[-4:] = adler32(bytes(data[:-4])).to_bytes(4, "big")
    return bytes(data)


flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4)
client_stages = st.sampled_from(["idle", "connecting", "binding", "bound"])
server_stages = st.sampled_from(["await-conn", "await-bind", "bound"])


@FUZZ
@given(client_stages, server_stages, st.binary(max_size=200))
def test_random_bytes(client_stage: str, server_stage: str, data: bytes) -> None:
    check_client(client_in(client_stage), data)
    check_server(server_in(server_stage), data)


@FUZZ
@given(client_stages, server_stages, st.sampled_from(ALL_FRAMES), flips, st.booleans())
def test_mutated_captured_frames(
    client_stage: str, server_stage: str, raw: bytes, flip: list[tuple[int, int]], fix: bool
) -> None:
    data = mutate(raw, flip, fix)
    check_client(client_in(client_stage), data)
    check_server(server_in(server_stage), data)


@FUZZ
@given(client_stages, server_stages, st.sampled_from(ALL_FRAMES))
def test_every_captured_frame_in_every_state(
    client_stage: str, server_stage: str, raw: bytes
) -> None:
    check_client(client_in(client_stage), raw)
    check_server(server_in(server_stage), raw)


def secmsg(packet: MIMCPacket, *, encrypt: bool, cipher: int | None) -> bytes:
    header = Header(
        chid=9,
        uuid=BOB_UUID,
        server="xiaomi.com",
        resource=BOB_RESOURCE,
        cmd=Cmd.SECMSG,
        id="fuzz-1",
        cipher=cipher,
    )
    payload = codec.encode_packet(packet)
    if encrypt:
        payload = rc4_payload(BOB_KEY, "fuzz-1", payload)
    return serialize_frame(Frame(header=header, payload=payload))


@FUZZ
@given(packets)
def test_arbitrary_well_formed_packets_reach_the_dispatchers(packet: MIMCPacket) -> None:
    check_client(client_in("bound"), secmsg(packet, encrypt=True, cipher=1))
    check_server(server_in("bound"), secmsg(packet, encrypt=False, cipher=None))
    check_server(server_in("bound"), secmsg(packet, encrypt=True, cipher=1))


@FUZZ
@given(st.binary(max_size=120), st.sampled_from([Cmd.CONN, Cmd.BIND, Cmd.KICK, Cmd.SECMSG]))
def test_junk_payloads_under_every_cmd(payload: bytes, cmd: str) -> None:
    header = Header(chid=9, uuid=BOB_UUID, resource=BOB_RESOURCE, cmd=cmd, id="j")
    data = serialize_frame(Frame(header=header, payload=payload))
    for stage in ("connecting", "binding", "bound"):
        check_client(client_in(stage), data)
    for server_stage in ("await-conn", "await-bind", "bound"):
        check_server(server_in(server_stage), data)


def test_commands_after_a_failure_do_not_crash() -> None:
    actions: list[Callable[[], Any]] = []
    client = client_in("bound")
    client.receive_data(b"junk", now=1.0)
    actions.append(lambda: client.expire(100.0))
    actions.append(client.receive_eof)
    actions.append(lambda: client.logout(now=1.0))
    for action in actions:
        action()
    assert client.next_deadline() is None
