"""The blocking wrapper: a loop thread runs the async user for plain code."""

from __future__ import annotations

import inspect
import threading

import pytest

from mimc_rx.client.sync import LoopThread, SyncMIMCUser
from mimc_rx.errors import LoginError, NotLoggedIn
from mimc_rx.protocol.events import P2PMessage, PacketId, StatusChange

from .conftest import TIMEOUT
from .fakes import FakeNet, token_answer


def test_sync_user_logs_in_sends_and_closes() -> None:
    net = FakeNet()
    user = SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs())
    seen: list[tuple[StatusChange, str]] = []
    user.status.subscribe(lambda s: seen.append((s, threading.current_thread().name)))
    with pytest.raises(NotLoggedIn):
        user.send_message("bob", "early")
    assert user.login().online
    assert user.is_logged_in
    assert user.send_message("bob", "hi") == "pid1"
    user.close()
    assert not user.runner.loop.is_running()
    # Emissions happen on the loop thread, never on the caller's.
    assert seen[1] == (StatusChange(online=True), "mimc-rx loop")


def test_sync_context_manager_raises_login_error() -> None:
    net = FakeNet()
    net.bind_results.append(StatusChange(online=False, err_type="auth", err_reason="no"))
    with (
        pytest.raises(LoginError),
        SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs()),
    ):
        pass


def test_loop_thread_runs_coroutines_and_refuses_reentry() -> None:
    runner = LoopThread()
    try:

        async def inner() -> int:
            return 1

        async def reenter() -> int:
            coro = inner()
            try:
                return runner.run(coro)
            finally:
                coro.close()

        assert runner.run(inner(), TIMEOUT) == 1
        with pytest.raises(RuntimeError, match="deadlock"):
            runner.run(reenter(), TIMEOUT)
    finally:
        runner.stop()


def test_message_received_while_blocked_elsewhere() -> None:
    net = FakeNet()
    user = SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs())
    got: list[P2PMessage] = []
    user.p2p_messages.subscribe(got.append)
    user.login()
    msg = P2PMessage(
        packet_id=PacketId("x"),
        sequence=1,
        timestamp=0,
        from_account="b",
        from_resource="",
        to_account="alice",
        to_resource="",
        payload=b"hey",
    )
    user.runner.call(net.current.push, msg)
    assert [m.text for m in got] == ["hey"]
    user.close()


def _message(text: str) -> P2PMessage:
    return P2PMessage(
        packet_id=PacketId(f"m-{text}"),
        sequence=1,
        timestamp=0,
        from_account="bob",
        from_resource="",
        to_account="alice",
        to_resource="",
        payload=text.encode(),
    )


def test_a_subscriber_may_send_through_the_sync_user() -> None:
    # Subscribers run on the loop thread; an echo bot calls send_message from there.
    net = FakeNet()
    user = SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs())
    replies: list[str] = []
    user.p2p_messages.subscribe(lambda m: replies.append(user.send_message(m.from_account, "re")))
    try:
        assert user.login().online
        user.runner.call(net.current.push, _message("ping"))
        assert replies == ["pid1"]
        assert net.sessions[-1].sent[0][0] == "p2p"
    finally:
        user.close()


def test_call_on_the_loop_thread_runs_directly_and_run_closes_a_refused_coroutine() -> None:
    runner = LoopThread()
    try:

        async def inner() -> int:
            return 1

        async def on_loop() -> tuple[str, str]:
            name = runner.call(lambda: threading.current_thread().name)
            coro = inner()
            with pytest.raises(RuntimeError, match="deadlock"):
                runner.run(coro)
            return name, inspect.getcoroutinestate(coro)

        assert runner.run(on_loop(), TIMEOUT) == ("mimc-rx loop", inspect.CORO_CLOSED)
    finally:
        runner.stop()


def _loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "mimc-rx loop"}


def test_a_failing_constructor_stops_the_loop_thread_it_started() -> None:
    before = _loop_threads()
    with pytest.raises(TypeError):
        SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, no_such_option=1)
    assert _loop_threads() - before == set()


def test_a_failing_constructor_leaves_a_shared_loop_thread_running() -> None:
    runner = LoopThread()
    try:
        with pytest.raises(TypeError):
            SyncMIMCUser("alice", loop_thread=runner, app_id=1001, no_such_option=1)
        assert runner.loop.is_running()
    finally:
        runner.stop()


def test_the_members_the_twin_used_to_lack_work_too() -> None:
    net = FakeNet()
    user = SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs())
    try:
        events: list[object] = []
        user.events.subscribe(events.append)
        assert user.reconnects is user.user.reconnects
        assert user.login().online
        pid = user.send_message("bob", "hi")
        acks: list[object] = []
        user.ack_observable(pid, None).subscribe(acks.append)
        assert user.counts["sent"] == 1
        assert user.api_url == user.user.api_url
        assert user.current_status == StatusChange(online=True)
        assert StatusChange(online=True) in events
    finally:
        user.close()
