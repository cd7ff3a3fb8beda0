"""Races of the connection lifecycle: cancelled logins, logout during login, stale connections.

Each test here reproduces a bug a reviewer found; all run over the in-memory fakes, so the
interleavings are forced step by step rather than hoped for with timing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from reactivex.testing import TestScheduler

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.user import MIMCUser
from mimc_rx.client.values import Disconnected, DisconnectReason, Reconnecting
from mimc_rx.errors import ConnectionClosed
from mimc_rx.protocol.events import Kicked, StatusChange

from .conftest import TIMEOUT, eventually
from .fakes import FakeNet, token_answer


def make_user(net: FakeNet, fetch: Any = None, **kwargs: Any) -> MIMCUser:
    fetch = fetch or (lambda: token_answer())
    kwargs.setdefault("login_timeout", TIMEOUT)
    return MIMCUser("alice", app_id="1001", token_fetcher=fetch, **net.kwargs(), **kwargs)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def cancel_login_after_socket_opened(net: FakeNet, user: MIMCUser) -> None:
    """Start a login whose BIND never comes, wait until its socket is open, cancel it."""
    net.bind_results.append(None)
    task = asyncio.create_task(user.login())
    await eventually(lambda: bool(net.transports) and net.current.open_)
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelled_login_closes_the_socket_it_opened(net: FakeNet) -> None:
    user = make_user(net, scheduler=TestScheduler())
    await cancel_login_after_socket_opened(net, user)
    await settle()
    orphan = net.transports[0]
    assert orphan.closes == 1
    assert not orphan.is_open
    assert not user.is_connected
    assert not user.is_logged_in


async def test_a_replaced_connection_cannot_kick_the_live_one(
    net: FakeNet, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = TestScheduler()
    user = make_user(net, scheduler=scheduler, reconnect=Backoff(jitter=0.0))
    drops: list[Disconnected] = []
    plans: list[Reconnecting] = []
    user.disconnects.subscribe(drops.append)
    user.reconnects.subscribe(plans.append)
    net.close_drops = False  # the orphan's closing handshake is still going on
    await cancel_login_after_socket_opened(net, user)
    orphan = net.transports[0]
    assert await user.login() == StatusChange(online=True)  # the user retries
    live = net.current
    assert live is not orphan
    # The server kicks the orphan (same resource) and closes it, after the retry bound.
    with caplog.at_level(logging.INFO, logger="mimc_rx.client.lifecycle"):
        orphan.push(StatusChange(online=True), Kicked(err_type="kick", err_reason="same"))
        orphan.drop(DisconnectReason.SERVER_CLOSED)
        await settle()
    assert "stale connection" in caplog.text
    assert user.is_logged_in
    assert user.current_status == StatusChange(online=True)
    assert drops == []
    # And the live connection still reconnects when it drops.
    live.drop(DisconnectReason.CONNECTION_LOST, "reset")
    await settle()
    assert [d.will_reconnect for d in drops] == [True]
    assert plans == [Reconnecting(attempt=1, delay=1.0)]
    scheduler.advance_by(1.0)
    await eventually(lambda: user.is_logged_in)
    assert len(net.transports) == 3


async def test_logout_during_the_token_fetch_aborts_the_login(net: FakeNet) -> None:
    release = asyncio.Event()

    async def slow_fetch() -> dict[str, Any]:
        await release.wait()
        return token_answer()

    user = make_user(net, slow_fetch, scheduler=TestScheduler())
    task = asyncio.create_task(user.login())
    await settle()
    await user.logout()
    release.set()
    status = await asyncio.wait_for(task, TIMEOUT)
    assert status.online is False
    assert status.err_type == "login aborted"
    assert not user.is_logged_in
    assert net.transports == []  # no socket was even opened
    assert user.current_status.online is False


async def test_close_during_the_socket_open_closes_that_socket(net: FakeNet) -> None:
    gate = asyncio.Event()
    opened: list[bool] = []
    original = net.transport_factory

    def slow_factory(*args: Any) -> Any:
        transport = original(*args)
        plain_open = transport.open

        async def open_later() -> None:
            await gate.wait()
            await plain_open()
            opened.append(True)

        setattr(transport, "open", open_later)  # noqa: B010 - patch one instance
        return transport

    setattr(net, "transport_factory", slow_factory)  # noqa: B010 - patch one instance
    user = make_user(net, scheduler=TestScheduler())
    task = asyncio.create_task(user.login())
    await eventually(lambda: bool(net.transports))
    await user.close()
    gate.set()
    status = await asyncio.wait_for(task, TIMEOUT)
    assert opened == [True]
    assert status.online is False
    assert not net.current.is_open
    assert not user.is_logged_in


async def test_a_backoff_timer_firing_while_offline_ends_the_schedule(net: FakeNet) -> None:
    scheduler = TestScheduler()
    user = make_user(net, scheduler=scheduler, reconnect=Backoff(jitter=0.0))
    await user.login()
    net.current.drop(DisconnectReason.CONNECTION_LOST)
    await settle()
    assert "reconnecting" in repr(user)
    user._lifecycle.supervisor.want_online = False  # as after a terminal end that raced the timer
    scheduler.advance_by(1.0)
    await settle()
    assert "reconnecting" not in repr(user)
    assert len(net.transports) == 1


async def test_close_fails_pending_ack_waiters(net: FakeNet) -> None:
    user = make_user(net, scheduler=TestScheduler())
    await user.login()
    pid = user.send_message("bob", "hi")
    waiter = asyncio.create_task(user.ack(pid, timeout=None))
    errors: list[Exception] = []
    user.ack_observable(pid, timeout=None).subscribe(on_error=errors.append)
    await settle()
    assert not waiter.done()
    await user.close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(waiter, TIMEOUT)
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionClosed)
