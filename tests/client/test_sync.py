"""The blocking wrapper: a loop thread runs the async user for plain code."""

from __future__ import annotations

import threading

import pytest

from mimc_rx.errors import LoginError, NotLoggedIn
from mimc_rx.protocol.events import P2PMessage, StatusChange
from mimc_rx.sync import LoopThread, SyncMIMCUser

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
        packet_id="x",
        sequence=1,
        timestamp=0,
        from_account="b",  # type: ignore[arg-type]
        from_resource="",
        to_account="alice",
        to_resource="",
        payload=b"hey",
    )
    user.runner.call(net.current.push, msg)
    assert [m.text for m in got] == ["hey"]
    user.close()
