"""A login storm: many ``MIMCUser``s of one process log in at once, then message each other.

Used by ``tests/client/test_login_storm.py`` (200 users) and ``bench/login_storm.py`` (1,000)::

    async with ServerProcess(tmp_path / "chat.db") as server:
        result = await run_login_storm(server, StormPlan(users=200, messages_per_user=5))
    assert result.online == 200 and (result.lost, result.duplicated) == (0, 0)

Every user logs in at the same moment (one ``asyncio.gather``), each through its own token
fetcher (they share the loop's ``httpx`` client). Once all are online, each sends
``messages_per_user`` stored messages to others picked at random (seeded), and the run waits
until every message reached its receiver's ``p2p_messages``. A round trip of every receiver to
itself afterwards proves nothing more was on the way before duplicates are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from mimc_rx.client.user import MIMCUser
from mimc_rx.protocol.events import P2PMessage
from mimc_rx.testing.process import ServerProcess

__all__ = ["StormPlan", "StormResult", "run_login_storm"]

_BARRIER = "barrier"


@dataclass(frozen=True, slots=True, kw_only=True)
class StormPlan:
    """What one storm does."""

    users: int = 200
    messages_per_user: int = 5
    login_timeout: float = 15.0
    settle_timeout: float = 60.0
    seed: int = 10


@dataclass(slots=True, kw_only=True)
class StormResult:
    """What one storm counted."""

    users: int = 0
    online: int = 0
    login_seconds: list[float] = field(default_factory=list)
    """Per user that got online: seconds from the storm's start to its online status."""
    all_online_seconds: float = 0.0
    retries: int = 0
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    deliver_seconds: float = 0.0
    cpu_seconds: float = 0.0
    max_rss_mb: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for a terminal."""
        times = sorted(self.login_seconds) or [0.0]
        return (
            f"{self.online}/{self.users} online in {self.all_online_seconds:.2f} s "
            f"(login p50 {statistics.median(times):.2f} s, max {times[-1]:.2f} s, "
            f"{self.retries} retries); {self.sent} messages sent, lost {self.lost}, "
            f"duplicated {self.duplicated}, delivered in {self.deliver_seconds:.2f} s; "
            f"client process CPU {self.cpu_seconds:.1f} s, max RSS {self.max_rss_mb:.0f} MB"
            + (f"; failures {dict(self.failures)}" if self.failures else "")
        )


async def run_login_storm(server: ServerProcess, plan: StormPlan) -> StormResult:
    """Run one storm against a running server; returns the counts."""
    result = StormResult(users=plan.users)
    rng = random.Random(plan.seed)
    accounts = [f"storm{i:04d}" for i in range(plan.users)]
    users = [
        MIMCUser(
            account,
            app_id=server.app.app_id,
            token_fetcher=server.token_fetcher(account),
            url=server.ws_url,
            resource=f"storm-{account}",
            login_timeout=plan.login_timeout,
        )
        for account in accounts
    ]
    received: dict[str, Counter[str]] = {account: Counter() for account in accounts}
    barriers: dict[str, asyncio.Event] = {account: asyncio.Event() for account in accounts}

    def receiver(account: str) -> None:
        counts, barrier = received[account], barriers[account]

        def on_message(message: P2PMessage) -> None:
            if message.text == _BARRIER:
                barrier.set()
            else:
                counts[message.text] += 1

        users_by_account[account].p2p_messages.subscribe(on_message)

    users_by_account = dict(zip(accounts, users, strict=True))
    for account in accounts:
        receiver(account)
        users_by_account[account].reconnects.subscribe(lambda _: _retried(result))

    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    started = loop.time()

    async def login(user: MIMCUser) -> None:
        status = await user.login()
        if status.online:
            result.online += 1
            result.login_seconds.append(loop.time() - started)
        else:
            result.failures[f"{status.err_type}: {status.err_reason}"] += 1

    try:
        await asyncio.gather(*(login(user) for user in users))
        result.all_online_seconds = loop.time() - started
        if result.online == plan.users:
            await _exchange(plan, result, rng, users_by_account, received, barriers)
    finally:
        result.cpu_seconds = time.process_time() - cpu0
        result.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await asyncio.gather(
            *(asyncio.wait_for(user.close(), 10.0) for user in users), return_exceptions=True
        )
    return result


async def _exchange(
    plan: StormPlan,
    result: StormResult,
    rng: random.Random,
    users: dict[str, MIMCUser],
    received: dict[str, Counter[str]],
    barriers: dict[str, asyncio.Event],
) -> None:
    accounts = list(users)
    expected: dict[str, Counter[str]] = {account: Counter() for account in accounts}
    loop = asyncio.get_running_loop()
    started = loop.time()
    pids: list[tuple[MIMCUser, str]] = []
    for account, user in users.items():
        for i in range(plan.messages_per_user):
            to = rng.choice([a for a in accounts if a != account] or [account])
            text = f"{account}:{i}"
            pids.append((user, user.send_message(to, text)))
            expected[to][text] += 1
    result.sent = len(pids)
    await asyncio.gather(*(user.ack(pid, timeout=plan.settle_timeout) for user, pid in pids))

    def arrived() -> bool:
        return all(set(received[a]) >= set(expected[a]) for a in accounts)

    deadline = started + plan.settle_timeout
    while not arrived() and loop.time() < deadline:  # noqa: ASYNC110 - polls counters
        await asyncio.sleep(0.01)
    result.deliver_seconds = loop.time() - started
    for account, user in users.items():  # a round trip each: nothing else on the way
        barriers[account].clear()
        user.send_message(account, _BARRIER, is_store=False)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(barrier.wait() for barrier in barriers.values())), 10.0
        )
    for account in accounts:
        got, want = received[account], expected[account]
        result.lost += sum(1 for text in want if text not in got)
        result.duplicated += sum(n - 1 for n in got.values() if n > 1)


def _retried(result: StormResult) -> None:
    result.retries += 1
