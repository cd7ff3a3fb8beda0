"""MIMCUser over an in-memory fake core and transport: dispatch, errors, acks, reconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from reactivex.testing import TestScheduler

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.user import MIMCUser
from mimc_rx.client.values import Disconnected, DisconnectReason, Reconnecting
from mimc_rx.errors import LoginError, NotLoggedIn, PayloadTooLarge, SendTimeout, TokenError
from mimc_rx.protocol.events import (
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    PacketId,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
)

from .conftest import TIMEOUT, eventually
from .fakes import FakeNet, token_answer


def make_user(net: FakeNet, fetch: Any = None, **kwargs: Any) -> MIMCUser:
    fetch = fetch or (lambda: token_answer())
    # A failed first login is retried with real backoff delays; the tests that are about those
    # retries ask for them, the others see the first failure at once.
    kwargs.setdefault("login_retries", 0)
    return MIMCUser("alice", app_id="1001", token_fetcher=fetch, **net.kwargs(), **kwargs)


def p2p(seq: int, text: str = "hi") -> P2PMessage:
    return P2PMessage(
        packet_id=PacketId(f"p{seq}"),
        sequence=seq,
        timestamp=1,
        from_account="bob",
        from_resource="r",
        to_account="alice",
        to_resource="",
        payload=text.encode(),
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- login


async def test_login_resolves_with_the_bind_status_and_status_replays(net: FakeNet) -> None:
    user = make_user(net)
    seen: list[StatusChange] = []
    user.status.subscribe(seen.append)
    assert seen == [StatusChange(online=False)]
    status = await user.login()
    assert status == StatusChange(online=True)
    assert user.is_logged_in
    assert user.is_connected
    assert (user.uuid, user.token) == (77, "tok-alice")
    late: list[StatusChange] = []
    user.status.subscribe(late.append)
    assert late == [StatusChange(online=True)]
    assert "online" in repr(user)
    assert "alice" in user._repr_html_()


async def test_app_id_may_be_an_int(net: FakeNet) -> None:
    user = MIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs())
    assert user.app_id == 1001
    assert net.sessions == []
    await user.login()
    assert net.sessions[0].app_id == 1001


async def test_async_fetcher_is_awaited(net: FakeNet) -> None:
    async def fetch() -> dict[str, Any]:
        await asyncio.sleep(0)
        return token_answer()

    assert (await make_user(net, fetch).login()).online


async def test_fetcher_raising_becomes_an_offline_status(net: FakeNet) -> None:
    def fetch() -> dict[str, Any]:
        raise RuntimeError("backend down")

    user = make_user(net, fetch)
    status = await user.login()
    assert status.online is False
    assert status.err_type == "get token failed"
    assert "backend down" in status.err_desc
    assert net.transports == []  # nothing was opened
    assert not user.is_logged_in


async def test_token_error_fields_are_kept(net: FakeNet) -> None:
    def fetch() -> dict[str, Any]:
        raise TokenError("get token failed", "token service answered HTTP 500", "oops")

    status = await make_user(net, fetch).login()
    assert (status.err_reason, status.err_desc) == ("token service answered HTTP 500", "oops")


async def test_an_answer_the_core_refuses_opens_no_connection(net: FakeNet) -> None:
    status = await make_user(net, lambda: {"code": 500, "message": "no"}).login()
    assert status == StatusChange(
        online=False, err_type="get token failed", err_reason="bad answer"
    )
    assert net.transports == []


async def test_connect_failure_is_an_offline_status(net: FakeNet) -> None:
    net.connect_errors.append("cannot connect to ws://x: refused")
    status = await make_user(net, login_retries=0).login()
    assert (status.online, status.err_type) == (False, "connect failed")
    assert "refused" in status.err_desc


async def test_a_first_login_retries_a_failed_connect_with_the_backoff(net: FakeNet) -> None:
    net.connect_errors.append("cannot connect to ws://x: refused")
    user = make_user(net, reconnect=Backoff(initial=0.001, jitter=0.0), login_retries=3)
    retries: list[Reconnecting] = []
    user.reconnects.subscribe(retries.append)
    assert (await user.login()).online
    assert retries == [Reconnecting(attempt=1, delay=0.001)]


async def test_bind_refused_closes_and_reports_login_failed(net: FakeNet) -> None:
    refused = StatusChange(online=False, err_type="auth", err_reason="invalid-sig", err_desc="x")
    net.bind_results.append(refused)
    user = make_user(net)
    drops: list[Disconnected] = []
    user.disconnects.subscribe(drops.append)
    assert await user.login() == refused
    await settle()
    assert [d.reason for d in drops] == [DisconnectReason.LOGIN_FAILED]
    assert drops[0].will_reconnect is False
    assert not user.is_connected


async def test_login_times_out_without_a_bind_answer(net: FakeNet) -> None:
    net.bind_results.append(None)  # the server never answers BIND
    status = await make_user(net, login_timeout=0.01, login_retries=0).login()
    assert (status.online, status.err_type) == (False, "login timeout")


async def test_async_with_raises_login_error_on_refusal(net: FakeNet) -> None:
    net.bind_results.append(StatusChange(online=False, err_type="auth", err_reason="bad"))
    with pytest.raises(LoginError) as info:
        async with make_user(net):
            pass
    assert info.value.err_reason == "bad"


async def test_async_with_logs_in_and_out(net: FakeNet) -> None:
    async with make_user(net) as user:
        assert user.is_logged_in
    assert not user.is_logged_in
    assert ("logout", ()) in net.sessions[0].sent


# ---------------------------------------------------------------- sends


async def test_sending_before_login_is_a_clear_error(net: FakeNet) -> None:
    user = make_user(net)
    with pytest.raises(NotLoggedIn, match="not logged in"):
        user.send_message("bob", "hi")
    with pytest.raises(NotLoggedIn):
        user.send_group_message(5, "hi")
    with pytest.raises(NotLoggedIn):
        user.pull()


async def test_sends_go_to_the_core_and_wake_the_transport(net: FakeNet) -> None:
    user = make_user(net)
    await user.login()
    pid = user.send_message("bob", "smile 😀 end", biz_type="t", is_store=False)
    gid = user.send_group_message("42", b"\x00\xff")
    uid = user.send_unlimited_group_message(9, "u")
    assert (pid, gid, uid) == ("pid1", "pid2", "pid3")
    sent = net.sessions[0].sent
    assert sent[0] == ("p2p", ("bob", "smile 😀 end".encode(), False, "t"))
    assert sent[1] == ("p2t", (42, b"\x00\xff", True, ""))
    assert sent[2] == ("uc", (9, b"u", False, ""))
    assert net.current.wakes >= 3


async def test_oversized_payload_raises_and_sends_nothing(net: FakeNet) -> None:
    user = make_user(net)
    await user.login()
    with pytest.raises(PayloadTooLarge) as info:
        user.send_message("bob", "x" * 15361)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PayloadTooLarge):
        user.send_message("bob", "😀" * 7681)  # 15362 UTF-16 units, 7681 characters
    with pytest.raises(PayloadTooLarge):
        user.send_unlimited_group_message(1, "x" * 10241)
    with pytest.raises(PayloadTooLarge):
        user.send_group_message(1, b"x" * (3 * 15360 + 1))
    user.send_message("bob", "x" * 15360)
    user.send_message("bob", "😀" * 7680)
    assert [kind for kind, _ in net.sessions[0].sent] == ["p2p", "p2p"]


# ---------------------------------------------------------------- streams


async def test_messages_are_dispatched_by_kind_and_deduplicated(net: FakeNet) -> None:
    user = make_user(net)
    await user.login()
    got: list[object] = []
    for stream in (
        user.p2p_messages,
        user.group_messages,
        user.uc_join_results,
        user.uc_dismissals,
        user.pull_notifications,
    ):
        stream.subscribe(got.append)
    group = P2TMessage(
        packet_id=PacketId("g"),
        sequence=3,
        timestamp=1,
        from_account="bob",
        from_resource="r",
        topic_id=8,
        payload=b"x",
    )
    events: list[ClientEvent] = [
        p2p(1),
        p2p(2),
        p2p(1),
        group,
        UCJoinResult(topic_id=5, code=0),
        UCDismissed(topic_id=5),
        PullNotification(min_sequence=1, max_sequence=9),
    ]
    net.current.push(*events)
    assert got == [p2p(1), p2p(2), group, *events[4:]]
    assert user.counts["duplicates"] == 1


async def test_a_raising_subscriber_neither_breaks_the_session_nor_other_subscribers(
    net: FakeNet, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(net)
    await user.login()
    good: list[int] = []

    def bad(_msg: P2PMessage) -> None:
        raise ValueError("subscriber bug")

    user.p2p_messages.subscribe(bad)
    user.p2p_messages.subscribe(lambda m: good.append(m.sequence))
    with caplog.at_level(logging.ERROR, logger="mimc_rx.client.streams"):
        net.current.push(p2p(1))
        net.current.push(p2p(2))
    assert good == [1, 2]
    assert "subscriber bug" in caplog.text
    assert user.is_logged_in
    assert user.send_message("bob", "still fine")


# ---------------------------------------------------------------- acks on virtual time


async def test_ack_observable_times_out_on_virtual_time(net: FakeNet) -> None:
    scheduler = TestScheduler()
    user = make_user(net, scheduler=scheduler)
    await user.login()
    pid = user.send_message("bob", "hi")
    results: list[object] = []
    user.ack_observable(pid, timeout=5.0).subscribe(results.append, results.append)
    scheduler.advance_to(4.999)
    assert results == []
    scheduler.advance_to(5.0)
    assert len(results) == 1
    error = results[0]
    assert isinstance(error, SendTimeout)
    assert isinstance(error, TimeoutError)
    assert error.packet_id == pid
    assert user._acks.waiting == 0  # the waiter was forgotten


async def test_ack_observable_emits_the_ack_before_the_timeout(net: FakeNet) -> None:
    scheduler = TestScheduler()
    user = make_user(net, scheduler=scheduler)
    await user.login()
    pid = user.send_message("bob", "hi")
    results: list[object] = []
    user.ack_observable(pid, 5.0).subscribe(
        results.append, results.append, lambda: results.append("done")
    )
    scheduler.advance_to(3.0)
    ack = ServerAck(packet_id=pid, sequence=10, timestamp=123)
    net.current.push(ServerAck(packet_id=PacketId("other"), sequence=9, timestamp=1), ack)
    scheduler.advance_to(100.0)
    assert results == [ack, "done"]


async def test_await_ack_returns_an_ack_that_arrived_earlier(net: FakeNet) -> None:
    user = make_user(net)
    await user.login()
    pid = user.send_message("bob", "hi")
    ack = ServerAck(packet_id=pid, sequence=10, timestamp=123, err_msg="")
    net.current.push(ack)
    assert await user.ack(pid, timeout=TIMEOUT) == ack


async def test_await_ack_raises_send_timeout(net: FakeNet) -> None:
    user = make_user(net)
    await user.login()
    pid = user.send_message("bob", "hi")
    with pytest.raises(SendTimeout):
        await user.ack(pid, timeout=0.01)


# ---------------------------------------------------------------- disconnect and reconnect


async def test_drop_reconnects_with_a_fresh_token_and_keeps_dedup(net: FakeNet) -> None:
    scheduler = TestScheduler()
    fetches: list[int] = []

    def fetch() -> dict[str, Any]:
        fetches.append(1)
        return token_answer()

    user = make_user(net, fetch, scheduler=scheduler, reconnect=Backoff(jitter=0.0))
    statuses: list[StatusChange] = []
    drops: list[Disconnected] = []
    plans: list[Reconnecting] = []
    got: list[int] = []
    user.status.subscribe(statuses.append)
    user.disconnects.subscribe(drops.append)
    user.reconnects.subscribe(plans.append)
    user.p2p_messages.subscribe(lambda m: got.append(m.sequence))
    await user.login()
    net.current.push(p2p(1))
    net.current.drop(DisconnectReason.CONNECTION_LOST, "reset")
    await settle()
    assert not user.is_logged_in
    assert drops == [
        Disconnected(
            reason=DisconnectReason.CONNECTION_LOST, detail="reset", code=1006, will_reconnect=True
        )
    ]
    assert plans == [Reconnecting(attempt=1, delay=1.0)]
    assert statuses[-1].online is False
    assert statuses[-1].err_reason == "connection-lost"
    # First attempt: the server is unreachable; second: fine.
    net.connect_errors.append("refused")
    scheduler.advance_by(1.0)
    await eventually(lambda: len(plans) == 2)
    assert plans[-1] == Reconnecting(attempt=2, delay=2.0)
    scheduler.advance_by(2.0)
    await eventually(lambda: user.is_logged_in)
    assert len(fetches) == 3  # one fresh token per attempt
    net.current.push(p2p(1), p2p(2))  # the server redelivers 1
    assert got == [1, 2]
    assert statuses[-1] == StatusChange(online=True)


async def test_kick_does_not_reconnect(net: FakeNet) -> None:
    scheduler = TestScheduler()
    user = make_user(net, scheduler=scheduler)
    drops: list[Disconnected] = []
    user.disconnects.subscribe(drops.append)
    await user.login()
    net.current.push(Kicked(err_type="kick", err_reason="same resource", err_desc="newer login"))
    assert not user.is_logged_in
    net.current.drop(DisconnectReason.SERVER_CLOSED)
    await settle()
    assert drops[0].reason is DisconnectReason.KICKED
    assert "same resource" in drops[0].detail
    assert drops[0].will_reconnect is False
    scheduler.advance_by(1000.0)
    await settle()
    assert len(net.transports) == 1


async def test_reconnect_disabled(net: FakeNet) -> None:
    user = make_user(net, reconnect=False)
    drops: list[Disconnected] = []
    user.disconnects.subscribe(drops.append)
    await user.login()
    net.current.drop()
    await settle()
    assert drops[0].will_reconnect is False
    assert len(net.transports) == 1


async def test_logout_reports_logout_and_stops(net: FakeNet) -> None:
    user = make_user(net, scheduler=TestScheduler())
    drops: list[Disconnected] = []
    user.disconnects.subscribe(drops.append)
    await user.login()
    await user.logout()
    assert [d.reason for d in drops] == [DisconnectReason.LOGOUT]
    assert user.current_status.online is False
    with pytest.raises(NotLoggedIn):
        user.send_message("bob", "x")
    await user.logout()  # idempotent
