"""MIMCUser against the real local server on 127.0.0.1 (port 0, in-memory store)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.streams import first_value
from mimc_rx.client.user import MIMCUser
from mimc_rx.client.values import Disconnected, DisconnectReason, Reconnecting
from mimc_rx.errors import NotLoggedIn, PayloadTooLarge
from mimc_rx.protocol.events import P2PMessage, StatusChange
from mimc_rx.server import LocalServer, ServerConfig

from .conftest import TIMEOUT, eventually

FAST = Backoff(initial=0.02, factor=2.0, max_delay=0.2, jitter=0.0)


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer(db=":memory:") as srv:
        yield srv


@pytest.fixture
async def small_backlog_server() -> AsyncIterator[LocalServer]:
    async with LocalServer(
        db=":memory:", config=ServerConfig(backlog_limit=5, pull_limit=3)
    ) as srv:
        yield srv


def make(server: LocalServer, account: str, fetcher: Any = None, **kwargs: Any) -> MIMCUser:
    kwargs.setdefault("resource", f"res-{account}")
    kwargs.setdefault("reconnect", FAST)
    kwargs.setdefault("login_timeout", TIMEOUT)
    return MIMCUser(
        account,
        app_id=str(server.app.app_id),
        token_fetcher=fetcher or server.token_fetcher(account),
        url=server.ws_url,
        **kwargs,
    )


async def online(*users: MIMCUser) -> None:
    for user in users:
        status = await user.login()
        assert status == StatusChange(online=True), status


async def offline(*users: MIMCUser) -> None:
    for user in users:
        await user.logout()


BARRIER = "barrier"
"""The text of the messages ``round_trip`` sends; tests that count messages leave them out."""


async def round_trip(user: MIMCUser) -> None:
    """A barrier for tests of absence: a message from ``user`` to itself, acked and delivered.

    The server writes to one connection in order, so once the message came back on the same
    connection, whatever the server had queued for ``user`` before it has arrived too. Only
    then does "nothing else arrived" mean something (a fixed sleep passes on a slow machine).
    """
    arrival = first_value(user.p2p_messages, lambda m: m.text == BARRIER, timeout=TIMEOUT)
    pid = user.send_message(user.app_account, BARRIER)
    assert (await user.ack(pid, timeout=TIMEOUT)).ok
    await arrival


# ---------------------------------------------------------------- login


async def test_login_ok_then_logout(server: LocalServer) -> None:
    alice = make(server, "alice")
    drops: list[Disconnected] = []
    alice.disconnects.subscribe(drops.append)
    await online(alice)
    assert alice.is_logged_in
    assert alice.is_connected
    assert alice.uuid is not None
    assert alice.token
    await alice.logout()
    assert not alice.is_connected
    assert [d.reason for d in drops] == [DisconnectReason.LOGOUT]


async def test_login_with_a_refused_token_answer(server: LocalServer) -> None:
    status = await make(server, "alice", lambda: {"code": 401, "message": "bad key"}).login()
    assert status.online is False
    assert status.err_type == "get token failed"
    assert "401" in status.err_reason


async def test_login_with_garbage_token_answer(server: LocalServer) -> None:
    status = await make(server, "alice", lambda: b"<html>not json</html>").login()
    assert status.online is False
    assert status.err_type


async def test_login_with_another_accounts_token(server: LocalServer) -> None:
    status = await make(server, "alice", server.token_fetcher("bob")).login()
    assert (status.online, status.err_reason) == (False, "account not same")


async def test_login_with_another_apps_token(server: LocalServer) -> None:
    answer = await server.fetch_token("alice")
    answer["data"]["appId"] = "12345"
    status = await make(server, "alice", lambda: answer).login()
    assert (status.online, status.err_reason) == (False, "appid not same")


async def test_login_when_the_fetcher_raises(server: LocalServer) -> None:
    async def fetch() -> dict[str, Any]:
        raise ConnectionError("backend unreachable")

    alice = make(server, "alice", fetch)
    status = await alice.login()
    assert (status.online, status.err_type) == (False, "get token failed")
    assert "backend unreachable" in status.err_desc
    assert not alice.is_connected


async def test_login_refused_by_the_server(server: LocalServer) -> None:
    answer = await server.fetch_token("alice")
    answer["data"]["token"] = "forged-token"
    alice = make(server, "alice", lambda: answer)
    drops: list[Disconnected] = []
    alice.disconnects.subscribe(drops.append)
    status = await alice.login()
    assert status.online is False
    assert status.err_type  # the server's BIND error fields
    await eventually(lambda: drops)
    assert drops[0].reason is DisconnectReason.LOGIN_FAILED
    assert not drops[0].will_reconnect
    with pytest.raises(NotLoggedIn):
        alice.send_message("bob", "x")


async def test_login_to_a_closed_port() -> None:
    async with LocalServer(db=":memory:") as srv:
        fetch = srv.token_fetcher("alice")
        answer = await fetch()
        url = srv.ws_url
    alice = MIMCUser(
        "alice", app_id=srv.app.app_id, token_fetcher=lambda: answer, url=url, reconnect=FAST
    )
    retries: list[Reconnecting] = []
    alice.reconnects.subscribe(retries.append)
    status = await alice.login()
    assert (status.online, status.err_type) == (False, "connect failed")
    assert [r.attempt for r in retries] == [1, 2, 3]  # login_retries, with the backoff


async def test_a_first_login_that_fails_for_a_transient_reason_is_retried(
    server: LocalServer,
) -> None:
    real = server.token_fetcher("alice")
    calls = 0

    async def flaky() -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError("token backend restarting")
        return await real()

    alice = make(server, "alice", flaky)
    assert await alice.login() == StatusChange(online=True)
    assert calls == 3
    await alice.logout()


async def test_a_refused_first_login_is_not_retried(server: LocalServer) -> None:
    calls = 0

    def refused() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"code": 500, "message": "no such app"}

    status = await make(server, "alice", refused).login()
    assert not status.online
    assert calls == 1


# ---------------------------------------------------------------- messages


async def test_p2p_round_trip_with_ack(server: LocalServer) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice, bob)
    arrival = first_value(bob.p2p_messages, timeout=TIMEOUT)
    pid = alice.send_message("bob", "smile 😀 end", biz_type="chat")
    ack = await alice.ack(pid, timeout=TIMEOUT)
    message = await arrival
    assert ack.ok
    assert ack.packet_id == pid
    assert message.text == "smile 😀 end"
    assert (message.packet_id, message.sequence) == (pid, ack.sequence)
    assert (message.from_account, message.from_resource, message.biz_type) == (
        "alice",
        "res-alice",
        "chat",
    )
    arrival = first_value(alice.p2p_messages, timeout=TIMEOUT)
    raw = bytes(range(256))
    await bob.ack(bob.send_message("alice", raw), timeout=TIMEOUT)
    assert (await arrival).payload == raw
    await offline(alice, bob)


async def test_group_round_trip_with_ack(server: LocalServer) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice, bob)
    topic = await alice.create_group("team", ["bob"])
    arrival = first_value(bob.group_messages, timeout=TIMEOUT)
    pid = alice.send_group_message(topic, "hi all")
    ack = await alice.ack(pid, timeout=TIMEOUT)
    message = await arrival
    assert ack.ok
    assert (message.topic_id, message.text, message.from_account) == (topic, "hi all", "alice")
    await offline(alice, bob)


async def test_group_message_from_a_non_member_gets_an_error_ack(server: LocalServer) -> None:
    alice, carol = make(server, "alice"), make(server, "carol")
    await online(alice, carol)
    topic = await alice.create_group("private", [])
    ack = await carol.ack(carol.send_group_message(topic, "let me in"), timeout=TIMEOUT)
    assert not ack.ok
    await offline(alice, carol)


async def test_offline_messages_arrive_at_login_in_order(server: LocalServer) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice)
    pids = [alice.send_message("bob", f"m{i}") for i in range(3)]
    for pid in pids:
        assert (await alice.ack(pid, timeout=TIMEOUT)).ok
    got: list[P2PMessage] = []
    bob.p2p_messages.subscribe(got.append)
    await online(bob)
    await eventually(lambda: len(got) >= 3)
    assert [m.text for m in got] == ["m0", "m1", "m2"]
    await offline(alice, bob)


async def test_oversized_payload_is_refused_at_the_call(server: LocalServer) -> None:
    alice = make(server, "alice")
    await online(alice)
    with pytest.raises(PayloadTooLarge):
        alice.send_message("bob", "x" * 15361)
    with pytest.raises(PayloadTooLarge):
        alice.send_unlimited_group_message(1, "y" * 10241)
    assert alice.counts["sent"] == 0
    assert alice.is_logged_in
    await offline(alice)


async def test_a_raising_subscriber_does_not_stop_delivery(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice, bob)

    def explode(message: P2PMessage) -> None:
        raise RuntimeError(f"cannot handle {message.text}")

    bob.p2p_messages.subscribe(explode)
    got: list[str] = []
    bob.p2p_messages.subscribe(lambda m: got.append(m.text))
    with caplog.at_level(logging.ERROR):
        alice.send_message("bob", "one")
        alice.send_message("bob", "two")
        await eventually(lambda: len(got) == 2)
    assert got == ["one", "two"]
    assert "cannot handle one" in caplog.text
    assert bob.is_logged_in
    await offline(alice, bob)


# ---------------------------------------------------------------- connection life


async def test_reconnect_after_server_drop_loses_and_duplicates_nothing(
    server: LocalServer,
) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    fetches: list[int] = []
    plain = server.token_fetcher("bob")

    async def counting_fetch() -> dict[str, Any]:
        fetches.append(1)
        return await plain()

    bob = make(server, "bob", counting_fetch)
    drops: list[Disconnected] = []
    statuses: list[StatusChange] = []
    got: list[P2PMessage] = []
    bob.disconnects.subscribe(drops.append)
    bob.status.subscribe(statuses.append)
    bob.p2p_messages.subscribe(got.append)
    await online(alice, bob)
    for i in range(5):
        await alice.ack(alice.send_message("bob", f"before {i}"), timeout=TIMEOUT)
    await eventually(lambda: len(got) == 5)

    assert server.hub is not None
    (conn,) = [c for c in server.hub.connections if c.user and c.user.account == "bob"]
    conn.close(1011, "test drop")
    await eventually(lambda: drops)
    assert drops[0].reason is DisconnectReason.CONNECTION_LOST
    assert drops[0].will_reconnect
    for i in range(5):  # sent while bob is away or coming back
        await alice.ack(alice.send_message("bob", f"during {i}"), timeout=TIMEOUT)
    await eventually(lambda: bob.is_logged_in)
    for i in range(5):
        await alice.ack(alice.send_message("bob", f"after {i}"), timeout=TIMEOUT)
    await eventually(lambda: len(got) >= 15)
    await round_trip(bob)  # a wrong duplicate queued for bob would have arrived by now
    got = [m for m in got if m.text != BARRIER]
    texts = [m.text for m in got]
    expected = [f"{p} {i}" for p in ("before", "during", "after") for i in range(5)]
    assert sorted(texts) == sorted(expected)
    assert len({m.sequence for m in got}) == 15
    assert len(fetches) >= 2  # a fresh token for the reconnect
    assert statuses[-1] == StatusChange(online=True)
    assert any(s.err_type == "disconnected" for s in statuses)
    await offline(alice, bob)


async def test_second_login_of_the_same_resource_kicks_the_first(server: LocalServer) -> None:
    first = make(server, "alice", resource="tab")
    second = make(server, "alice", resource="tab")
    drops: list[Disconnected] = []
    first.disconnects.subscribe(drops.append)
    await online(first, second)
    await eventually(lambda: drops)
    assert drops[0].reason is DisconnectReason.KICKED
    assert not drops[0].will_reconnect
    assert not first.is_logged_in
    await asyncio.sleep(FAST.max_delay)  # past the backoff: a reconnect would have started
    await round_trip(second)  # and its kick of the second login would have arrived
    assert second.is_logged_in
    assert not first.is_connected
    await offline(second)


async def test_different_resources_are_concurrent(server: LocalServer) -> None:
    phone, laptop, bob = (
        make(server, "alice", resource="phone"),
        make(server, "alice", resource="laptop"),
        make(server, "bob"),
    )
    await online(phone, laptop, bob)
    arrivals = [first_value(u.p2p_messages, timeout=TIMEOUT) for u in (phone, laptop)]
    bob.send_message("alice", "to every device")
    assert [m.text for m in await asyncio.gather(*arrivals)] == ["to every device"] * 2
    await offline(phone, laptop, bob)


# ---------------------------------------------------------------- unlimited groups, pull


async def test_unlimited_group_flow(server: LocalServer) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice, bob)
    alice_joined = first_value(alice.uc_join_results, timeout=TIMEOUT)
    room = await alice.create_unlimited_group("room")
    assert (await alice_joined).ok
    bob_joined = first_value(bob.uc_join_results, timeout=TIMEOUT)
    bob.join_unlimited_group(room)
    assert (await bob_joined).topic_id == room
    assert room in await bob.unlimited_groups()

    arrival = first_value(bob.uc_messages, timeout=TIMEOUT)
    alice.send_unlimited_group_message(room, "room message 🎉", biz_type="x")
    message = await arrival
    assert (message.topic_id, message.text, message.from_account) == (
        room,
        "room message 🎉",
        "alice",
    )

    quit_result = first_value(bob.uc_quit_results, timeout=TIMEOUT)
    bob.quit_unlimited_group(room)
    assert (await quit_result).ok
    bob_rejoined = first_value(bob.uc_join_results, timeout=TIMEOUT)
    bob.join_unlimited_group(room)
    await bob_rejoined

    dismissed = first_value(bob.uc_dismissals, timeout=TIMEOUT)
    await alice.dismiss_unlimited_group(room)
    assert (await dismissed).topic_id == room
    await offline(alice, bob)


async def test_pull_notification_then_pull(small_backlog_server: LocalServer) -> None:
    server = small_backlog_server
    alice, bob = make(server, "alice"), make(server, "bob", auto_pull=False)
    await online(alice)
    for i in range(8):  # over the server's backlog_limit of 5
        await alice.ack(alice.send_message("bob", f"backlog {i}"), timeout=TIMEOUT)
    notice = first_value(bob.pull_notifications, timeout=TIMEOUT)
    got: list[str] = []
    bob.p2p_messages.subscribe(lambda m: got.append(m.text))
    await online(bob)
    note = await notice
    assert note.min_sequence <= note.max_sequence
    await round_trip(bob)  # what the server queued for bob before this has arrived
    assert [text for text in got if text != BARRIER] == []  # the backlog is not pushed
    await offline(alice, bob)


async def test_auto_pull_fetches_the_backlog(small_backlog_server: LocalServer) -> None:
    server = small_backlog_server
    alice, bob = make(server, "alice"), make(server, "bob")
    await online(alice)
    for i in range(8):
        await alice.ack(alice.send_message("bob", f"backlog {i}"), timeout=TIMEOUT)
    got: list[str] = []
    notes: list[object] = []
    bob.p2p_messages.subscribe(lambda m: got.append(m.text))
    bob.pull_notifications.subscribe(notes.append)
    await online(bob)
    await eventually(lambda: len(got) >= 8)
    await round_trip(bob)
    # One notice at login, then one after each pull answer that filled pull_limit (3): the
    # server says "more" until the backlog is drained, each notice starting further on.
    assert len(notes) == 3
    mins = [note.min_sequence for note in notes]  # type: ignore[attr-defined]
    assert mins == sorted(set(mins))
    assert sorted(t for t in got if t != BARRIER) == sorted(f"backlog {i}" for i in range(8))
    await offline(alice, bob)


async def test_a_cancelled_login_does_not_haunt_the_retry(server: LocalServer) -> None:
    # A caller's wait_for (or a notebook interrupt) cancels login() after the socket opened;
    # the retry with the same resource must stay online and keep reconnecting.
    answer = await server.token_fetcher("carol")()

    async def fast() -> Any:
        return answer

    user = make(server, "carol", fast)
    drops: list[Disconnected] = []
    user.disconnects.subscribe(drops.append)
    first = asyncio.create_task(user.login())
    await eventually(lambda: user.is_connected)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await online(user)
    hub = server.hub
    assert hub is not None
    await eventually(lambda: len(hub.connections) == 1)
    await round_trip(user)  # a KICK caused by the orphan would have arrived before this
    assert user.is_logged_in
    assert user.current_status == StatusChange(online=True)
    assert DisconnectReason.KICKED not in [d.reason for d in drops]
    for conn in list(hub.connections):
        conn.close(1011, "test drop")
    await eventually(lambda: any(d.will_reconnect for d in drops))
    await eventually(lambda: user.is_logged_in)
    await user.close()
