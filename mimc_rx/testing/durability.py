"""A durability run: numbered stored messages through cuts and kill -9, counted at the receiver.

One scenario, used by the CI test (``tests/integration/test_durability.py``, small) and by
``bench/durability.py`` (full size)::

    plan = DurabilityPlan(messages=2000, cuts=10, kills=1)
    result = await run_durability(tmp_path / "chat.db", plan)
    assert (result.lost, result.duplicated) == (0, 0)

A real server runs as a child process (:class:`~mimc_rx.testing.ServerProcess`) behind a
:class:`~mimc_rx.testing.FaultProxy`. A sender ``MIMCUser`` sends ``messages`` stored P2P
messages, each carrying its number, to a receiver ``MIMCUser``, at a steady pace, while the
proxy cuts every connection (alternately an RST and a half-open freeze healed later) and the
server is killed with SIGKILL and restarted on the same port and database. The application
never sends anything twice: a send refused with ``NotLoggedIn`` (nothing was sent) waits for the
reconnect, and a send whose ack was lost with its connection is the outbox's business.

Counted at the end: numbers that never reached the receiver's ``p2p_messages`` (``lost``),
numbers that reached it more than once (``duplicated``), sends whose ack never came or came more
than once on ``server_acks``, and the time from the last send to the moment everything had
arrived and been acked (``settle_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.user import MIMCUser
from mimc_rx.client.values import TransportOptions
from mimc_rx.errors import NotLoggedIn, OutboxFull
from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.testing.process import ServerProcess
from mimc_rx.testing.proxy import FaultProxy

__all__ = ["DurabilityPlan", "DurabilityResult", "run_durability"]

_PREFIX = "n:"
_BARRIER = "barrier"


@dataclass(frozen=True, slots=True, kw_only=True)
class DurabilityPlan:
    """What one run does.

    Attributes:
        messages: how many numbered stored messages the sender sends.
        cuts: how many times every connection is cut (even ones RST, odd ones half-open).
        kills: how many times the server is killed with SIGKILL and restarted.
        rate: messages per second the sender aims at.
        half_open_seconds: how long a half-open freeze lasts before it is healed (reset).
        settle_timeout: seconds allowed after the last send for everything to arrive.
    """

    messages: int = 2000
    cuts: int = 10
    kills: int = 1
    rate: float = 400.0
    half_open_seconds: float = 0.6
    settle_timeout: float = 60.0


@dataclass(slots=True, kw_only=True)
class DurabilityResult:
    """What one run counted (see the module docstring)."""

    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    unacked: int = 0
    acked_twice: int = 0
    refused: int = 0
    settle_seconds: float = 0.0
    run_seconds: float = 0.0
    sender_disconnects: int = 0
    receiver_disconnects: int = 0
    tracebacks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, unacked or acked twice, and no traceback in the log."""
        return not (
            self.lost or self.duplicated or self.unacked or self.acked_twice or self.tracebacks
        )


def _user(account: str, server: ServerProcess, url: str) -> MIMCUser:
    return MIMCUser(
        account,
        app_id=server.app.app_id,
        token_fetcher=server.token_fetcher(account),
        url=url,
        resource=f"durability-{account}",
        reconnect=Backoff(initial=0.05, max_delay=0.5, jitter=0.2),
        # A half-open connection is noticed by websockets' own keepalive.
        transport_options=TransportOptions(ping_interval=0.3, ping_timeout=0.6, close_timeout=0.5),
        login_timeout=10.0,
    )


async def _faults(
    plan: DurabilityPlan, proxy: FaultProxy, server: ServerProcess, duration: float
) -> None:
    """Spread the cuts and kills evenly over ``duration`` seconds."""
    order = ["cut"] * plan.cuts
    for k in range(plan.kills):  # the kills spread among the cuts, away from both ends
        order.insert((k + 1) * len(order) // (plan.kills + 1), "kill")
    step = duration / (len(order) + 1)
    cuts = 0
    for what in order:
        await asyncio.sleep(step)
        if what == "kill":
            await server.kill()
            await asyncio.sleep(0.2)
            await server.start()
            continue
        cuts += 1
        if cuts % 2:
            proxy.cut()
        else:
            proxy.half_open()
            await asyncio.sleep(plan.half_open_seconds)
            proxy.heal()


async def run_durability(db_path: str | os.PathLike[str], plan: DurabilityPlan) -> DurabilityResult:
    """Run the scenario once against a fresh server on ``db_path``; returns the counts."""
    result = DurabilityResult()
    server = ServerProcess(Path(db_path), extra_args=["--log-level", "WARNING"])
    await server.start()
    try:
        async with FaultProxy.for_url(server.ws_url) as proxy:
            alice = _user("alice", server, proxy.url())
            bob = _user("bob", server, proxy.url())
            await _run(plan, result, server, proxy, alice, bob)
    finally:
        await server.stop()
        result.tracebacks = server.tracebacks()
    return result


async def _run(
    plan: DurabilityPlan,
    result: DurabilityResult,
    server: ServerProcess,
    proxy: FaultProxy,
    alice: MIMCUser,
    bob: MIMCUser,
) -> None:
    received: Counter[int] = Counter()
    acks: Counter[str] = Counter()
    barrier = asyncio.Event()

    def on_message(message: P2PMessage) -> None:
        text = message.text
        if text.startswith(_PREFIX):
            received[int(text[len(_PREFIX) :])] += 1
        elif text == _BARRIER:
            barrier.set()

    def on_ack(ack: ServerAck) -> None:
        acks[ack.packet_id] += 1

    bob.p2p_messages.subscribe(on_message)
    alice.server_acks.subscribe(on_ack)
    alice.disconnects.subscribe(lambda _: _count(result, "sender_disconnects"))
    bob.disconnects.subscribe(lambda _: _count(result, "receiver_disconnects"))
    for user in (alice, bob):
        status = await user.login()
        if not status.online:
            raise RuntimeError(f"{user.app_account} could not log in: {status}")

    loop = asyncio.get_running_loop()
    started = loop.time()
    duration = plan.messages / plan.rate
    faults = asyncio.create_task(_faults(plan, proxy, server, duration))
    pids: list[str] = []
    try:
        for number in range(plan.messages):
            due = started + number / plan.rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            while True:
                try:
                    pids.append(alice.send_message("bob", f"{_PREFIX}{number}"))
                    break
                except (NotLoggedIn, OutboxFull):
                    # Nothing was sent: wait for the reconnect (or for acks), then send it.
                    result.refused += 1
                    await asyncio.sleep(0.01)
        result.sent = len(pids)
        last_send = loop.time()
        await faults
        expected = set(range(plan.messages))
        wanted = set(pids)

        def settled() -> bool:
            return set(received) >= expected and set(acks) >= wanted

        deadline = last_send + plan.settle_timeout
        while not settled() and loop.time() < deadline:  # noqa: ASYNC110 - polls two counters
            await asyncio.sleep(0.01)
        result.settle_seconds = loop.time() - last_send
        # A barrier on bob's connection: whatever the server queued for him has arrived.
        with contextlib.suppress(TimeoutError, NotLoggedIn):
            await asyncio.wait_for(_barrier(bob, barrier), 10.0)
        result.lost = len(expected - set(received))
        result.duplicated = sum(n - 1 for n in received.values() if n > 1)
        result.unacked = len(wanted - set(acks))
        result.acked_twice = sum(1 for pid in wanted if acks[pid] > 1)
        result.run_seconds = loop.time() - started
    finally:
        faults.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faults
        for user in (alice, bob):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(user.close(), 5.0)


async def _barrier(bob: MIMCUser, seen: asyncio.Event) -> None:
    while not bob.is_logged_in:  # noqa: ASYNC110 - no event says "online again"
        await asyncio.sleep(0.01)
    seen.clear()
    bob.send_message(bob.app_account, _BARRIER, is_store=False)
    await seen.wait()


def _count(result: DurabilityResult, name: str) -> None:
    setattr(result, name, getattr(result, name) + 1)


def main_summary(result: DurabilityResult) -> str:
    """One line for a terminal."""
    return (
        f"sent {result.sent} lost {result.lost} duplicated {result.duplicated} "
        f"unacked {result.unacked} acked_twice {result.acked_twice} "
        f"settle {result.settle_seconds:.2f} s run {result.run_seconds:.1f} s "
        f"disconnects {result.sender_disconnects}/{result.receiver_disconnects} "
        f"refused-sends {result.refused} tracebacks {len(result.tracebacks)} "
        f"at {time.strftime('%H:%M:%S')}"
    )
