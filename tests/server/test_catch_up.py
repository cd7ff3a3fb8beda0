"""Catching up a large offline backlog while live messages keep coming (issue 10's loss).

The receiver is offline while more stored messages wait than the server pushes at login
(``backlog_limit``); it logs in with auto-pull while the sender keeps sending. Every message
must arrive once: a cumulative SEQUENCE_ACK of a live message must never move the receiver's
cursor past backlog the server has not sent yet on that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.user import MIMCUser
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import P2PMessage, StatusChange
from mimc_rx.server import LocalServer, ServerConfig

from .conftest import TIMEOUT, eventually

FAST = Backoff(initial=0.02, factor=2.0, max_delay=0.2, jitter=0.0)


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    # The default limits (backlog_limit 200, pull_limit 1000), as the issue measured them.
    async with LocalServer(db=":memory:", config=ServerConfig()) as srv:
        yield srv


def make(server: LocalServer, account: str, **kwargs: Any) -> MIMCUser:
    return MIMCUser(
        account,
        app_id=str(server.app.app_id),
        token_fetcher=server.token_fetcher(account),
        url=server.ws_url,
        resource=f"res-{account}",
        reconnect=FAST,
        login_timeout=TIMEOUT,
        **kwargs,
    )


async def _send_acked(user: MIMCUser, to: str, texts: list[str]) -> None:
    pids = [user.send_message(to, text) for text in texts]
    acks = await asyncio.gather(*(user.ack(pid, timeout=TIMEOUT * 4) for pid in pids))
    assert all(ack.ok for ack in acks)


async def test_a_big_backlog_with_live_traffic_during_catch_up_arrives_once(
    server: LocalServer,
) -> None:
    alice, bob = make(server, "alice"), make(server, "bob")
    assert await alice.login() == StatusChange(online=True)
    backlog = [f"backlog {i}" for i in range(2500)]
    for start in range(0, len(backlog), 250):
        await _send_acked(alice, "bob", backlog[start : start + 250])

    got: Counter[str] = Counter()

    def on_message(message: P2PMessage) -> None:
        got[message.text] += 1

    bob.p2p_messages.subscribe(on_message)
    live = [f"live {i}" for i in range(1000)]
    login = asyncio.create_task(bob.login())
    # Live traffic while bob catches up: about 20 messages every 10 ms, acked as they go.
    for start in range(0, len(live), 20):
        await _send_acked(alice, "bob", live[start : start + 20])
        await asyncio.sleep(0.01)
    assert await login == StatusChange(online=True)
    expected = set(backlog) | set(live)
    with contextlib.suppress(AssertionError):
        await eventually(lambda: set(got) >= expected, timeout=TIMEOUT * 4)
    missing = sorted(expected - set(got), key=lambda t: (t.split()[0], int(t.split()[1])))
    assert missing == [], f"{len(missing)} never arrived, from {missing[0]} to {missing[-1]}"
    # A barrier on bob's connection: whatever the server queued before it has arrived.
    barrier = bob.send_message("bob", "barrier")
    await bob.ack(barrier, timeout=TIMEOUT)
    await eventually(lambda: "barrier" in got)
    assert sorted(text for text, n in got.items() if n > 1) == []
    assert set(got) - {"barrier"} == expected
    await alice.logout()
    await bob.logout()


@pytest.fixture
async def small_server() -> AsyncIterator[LocalServer]:
    async with LocalServer(
        db=":memory:", config=ServerConfig(backlog_limit=5, pull_limit=3)
    ) as srv:
        yield srv


async def test_the_sdk_way_acking_a_notice_drops_the_range_and_live_messages_flow(
    small_server: LocalServer,
) -> None:
    # docs/protocol.md 6.10: without auto-pull, the client acks the notified maxSequence (as the
    # SDK does when no handler says otherwise): the range is dropped, later messages are pushed.
    server = small_server
    alice, bob = make(server, "alice"), make(server, "bob", auto_pull=False)
    assert await alice.login() == StatusChange(online=True)
    await _send_acked(alice, "bob", [f"old {i}" for i in range(8)])
    got: list[str] = []
    bob.p2p_messages.subscribe(lambda m: got.append(m.text))
    assert await bob.login() == StatusChange(online=True)
    await _send_acked(alice, "bob", ["new"])
    await eventually(lambda: got == ["new"])
    await bob.logout()
    assert await bob.login() == StatusChange(online=True)
    barrier = bob.send_message("bob", "barrier")
    await bob.ack(barrier, timeout=TIMEOUT)
    await eventually(lambda: "barrier" in got)
    assert got == ["new", "barrier"]  # the dropped range and "new" are not delivered again
    await alice.logout()
    await bob.logout()


async def test_live_messages_wait_behind_a_backlog_being_pulled(small_server: LocalServer) -> None:
    # While the backlog is pending, a live stored message is not pushed ahead of it (an ack of
    # it would pass the backlog); unstored ones are. Pulls bring everything in order, once.
    server = small_server

    def no_ack_on_notice(*args: Any, **kwargs: Any) -> ClientSession:
        return ClientSession(*args, **kwargs, ack_pull_notifications=False)

    alice = make(server, "alice")
    bob = make(server, "bob", auto_pull=False, session_factory=no_ack_on_notice)
    assert await alice.login() == StatusChange(online=True)
    await _send_acked(alice, "bob", [f"old {i}" for i in range(8)])
    got: list[P2PMessage] = []
    bob.p2p_messages.subscribe(got.append)
    notices: list[object] = []
    bob.pull_notifications.subscribe(notices.append)
    assert await bob.login() == StatusChange(online=True)
    await eventually(lambda: len(notices) == 1)
    await _send_acked(alice, "bob", ["live"])
    pid = alice.send_message("bob", "unstored", is_store=False)
    await alice.ack(pid, timeout=TIMEOUT)
    await eventually(lambda: [m.text for m in got] == ["unstored"])  # "live" waits
    while len(got) < 10:
        bob.pull()
        await eventually(functools.partial(lambda n: len(got) > n, len(got)))
    texts = [m.text for m in got[1:]]
    assert texts == [*(f"old {i}" for i in range(8)), "live"]
    sequences = [m.sequence for m in got[1:]]
    assert sequences == sorted(set(sequences))
    await bob.logout()
    await alice.logout()
