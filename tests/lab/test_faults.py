"""Each fault, observed through a load run of the lab against the in-process server.

Loads are small (10 users, 100-200 msg/s, 2-3 s); the bounds are loose where the machine's
speed matters and strict where the fault itself sets them (a delay cannot make a message
faster than the delay; a pause holds every message scheduled in it until it ends).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from mimc_rx import MIMCUser
from mimc_rx.lab import LabError, NetworkLab, Outcome
from mimc_rx.server import LocalServer

from .conftest import SCALE, back_online_with_a_new_token

USER = "vu001"


def _touches(run, rec, name: str) -> bool:  # type: ignore[no-untyped-def]
    idx = run.accounts.index(name)
    return bool(rec.sender == idx or (rec.kind == "p2p" and rec.target == idx))


async def test_clean_run_delivers_everything_once(lab: NetworkLab) -> None:
    run = await lab.load(users=10, rate=200, seconds=2, progress=False, seed=1, label="clean")
    s = run.stats()
    assert s.scheduled == 400
    assert s.delivered == 400
    assert (s.lost, s.duplicated, s.unacked, s.unsent, s.failed) == (0, 0, 0, 0, 0)
    assert s.exact_p50 is not None
    assert s.p50 == pytest.approx(s.exact_p50, rel=0.05, abs=0.05)
    assert s.clock_offset_ms is not None  # the acks carried the server's clock
    assert abs(s.clock_offset_ms) < 50 * SCALE  # same machine
    assert run.faults().empty


async def test_delay_on_one_user_slows_only_that_user(lab: NetworkLab) -> None:
    await lab.open_routes([USER])
    lab.delay(USER, 80, jitter=20)
    run = await lab.load(users=10, rate=100, seconds=2, progress=False, seed=2)
    touched = [r for r in run.records if _touches(run, r, USER)]
    others = [r for r in run.records if r.kind == "p2p" and not _touches(run, r, USER)]
    assert touched
    assert others
    # Every chunk of the route waits at least 60 ms (80 - 20), on its way up or down.
    assert min((r.delivered - r.scheduled) * 1000 for r in touched) >= 60.0
    assert run.histogram(others).percentile(50) < 60.0
    faults = run.faults()
    assert list(faults["kind"]) == ["delay"]
    assert faults["detail"].iloc[0] == "80 +- 20 ms"


async def test_partition_holds_messages_and_releases_them_all(lab: NetworkLab) -> None:
    run = await lab.load(
        users=10,
        rate=100,
        seconds=3,
        progress=False,
        seed=3,
        actions={0.5: lambda: lab.partition(USER, seconds=1.5)},
    )
    s = run.stats()
    assert (s.lost, s.duplicated, s.unacked, s.unsent) == (0, 0, 0, 0)
    assert s.delivered == s.scheduled
    span = run.faults().iloc[0]
    assert span["kind"] == "pause"
    assert span["duration"] == pytest.approx(1.5, abs=0.05)
    held = [
        r
        for r in run.records
        if r.sender == run.accounts.index(USER) and span["start"] + 0.05 < r.scheduled < span["end"]
    ]
    assert held
    for r in held:  # the wait for the end of the partition is in the latency
        assert r.delivered >= span["end"] - 0.01


async def test_open_loop_schedule_is_not_slowed_by_a_stalled_network(lab: NetworkLab) -> None:
    # Everyone is paused for 1 s: nothing is acked or delivered meanwhile, yet every message
    # scheduled in that second leaves its sender on time, and its latency includes the wait.
    run = await lab.load(
        users=10,
        rate=200,
        seconds=2.5,
        progress=False,
        seed=4,
        actions={0.5: lambda: lab.partition(None, seconds=1.0)},
    )
    frame = run.frame()
    span = run.faults().iloc[0]
    during = frame[(frame.scheduled > span["start"] + 0.02) & (frame.scheduled < span["end"])]
    assert len(during) == pytest.approx(200, abs=10)
    lateness = (during.sent - during.scheduled) * 1000
    assert lateness.quantile(0.99) < 50 * SCALE  # handed to the socket on schedule
    assert (during.delivered >= span["end"] - 0.01).all()
    assert (during.latency_ms >= (span["end"] - during.scheduled) * 1000 - 10).all()
    assert run.stats().delivered == run.stats().scheduled


async def test_bandwidth_limit_shows_in_latency(lab: NetworkLab) -> None:
    await lab.open_routes([USER])
    lab.bandwidth(USER, kbps=32)
    run = await lab.load(
        users=10,
        rate=50,
        seconds=2,
        progress=False,
        seed=5,
        payload_bytes=(1500, 2000),
        mix={"p2p": 1.0},
    )
    touched = [r for r in run.records if _touches(run, r, USER)]
    others = [r for r in run.records if not _touches(run, r, USER)]
    # ~10 msg/s of ~1.8 kB each way is ~150 kbps offered to a 32 kbps link: a queue builds.
    assert run.histogram(touched).percentile(90) > 5 * run.histogram(others).percentile(90)
    assert run.faults()["detail"].iloc[0] == "32 kbps"


async def test_cut_makes_the_user_reconnect_and_nothing_is_lost(lab: NetworkLab) -> None:
    run = await lab.load(
        users=10,
        rate=100,
        seconds=3,
        progress=False,
        seed=6,
        actions={1.0: lambda: lab.cut(USER)},
    )
    s = run.stats()
    assert run.connections[USER] >= 2
    # What was in flight when the RST came is sent again by the user's outbox, under the same
    # packet id: everything arrives, once.
    assert (s.lost, s.duplicated, s.unacked, s.unsent, s.failed) == (0, 0, 0, 0, 0)
    assert s.delivered == s.scheduled
    kinds = list(run.faults()["kind"])
    assert kinds == ["cut"]


async def test_sends_in_flight_at_a_cut_arrive_once(lab: NetworkLab) -> None:
    # 150 ms each way on the user's route: at each cut some of its sends have reached the
    # server while their acks are still on the way back (stored, ack lost: resending them
    # under a new packet id would duplicate them), and others have not reached it yet (lost
    # with the connection unless resent). The outbox resends both kinds under their packet ids.
    await lab.open_routes([USER])
    lab.delay(USER, 150)
    run = await lab.load(
        users=10,
        rate=200,
        seconds=3,
        progress=False,
        seed=11,
        actions={1.0: lambda: lab.cut(USER), 2.0: lambda: lab.cut(USER)},
    )
    s = run.stats()
    assert run.connections[USER] >= 3
    assert (s.lost, s.duplicated, s.unacked, s.unsent, s.failed) == (0, 0, 0, 0, 0)
    assert s.delivered == s.scheduled
    # The cuts did catch sends in flight: written before a cut, acked only after it.
    me = run.accounts.index(USER)
    cuts = list(run.faults().query("kind == 'cut'")["start"])
    caught = [r for r in run.records if r.sender == me and any(r.sent < t < r.acked for t in cuts)]
    assert caught


async def test_half_open_then_heal_resets_and_the_user_comes_back(lab: NetworkLab) -> None:
    async def freeze_then_heal() -> None:
        lab.half_open(USER)
        await asyncio.sleep(1.0)
        lab.heal(USER)

    run = await lab.load(
        users=10,
        rate=100,
        seconds=3,
        progress=False,
        seed=8,
        actions={0.5: freeze_then_heal},
    )
    assert run.connections[USER] >= 2
    s = run.stats()
    assert s.lost == 0
    assert s.unsent == 0
    assert list(run.faults()["kind"]) == ["half-open"]
    assert run.faults()["duration"].iloc[0] == pytest.approx(1.0, abs=0.1)


async def test_restart_needs_a_server_process(lab: NetworkLab) -> None:
    with pytest.raises(LabError, match="server process"):
        await lab.restart_server()


async def test_expire_tokens_refuses_old_tokens_and_the_user_recovers(
    lab: NetworkLab, server: LocalServer
) -> None:
    from mimc_rx.server.auth import TokenStatus

    bob: MIMCUser = await lab.user("bob", login=True)
    old = bob.token
    assert old is not None
    fault = await lab.expire_tokens("bob")
    assert fault.detail == "1"
    assert server.hub is not None
    assert (await server.hub.tokens.resolve(old))[0] is TokenStatus.EXPIRED
    assert bob.is_logged_in  # a bound connection is not checked again
    lab.cut("bob")
    await back_online_with_a_new_token(bob, old)
    assert [f.kind for f in lab.faults] == ["expire-tokens", "cut"]


async def test_cancelling_a_load_closes_every_connection(lab: NetworkLab) -> None:
    task = asyncio.create_task(lab.load(users=10, rate=100, seconds=30, progress=False))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert sum(s.connections_open for s in lab.proxy.all_stats().values()) == 0


async def test_outcomes_cover_every_message(lab: NetworkLab) -> None:
    run = await lab.load(users=4, rate=40, seconds=1, progress=False, seed=9)
    frame = run.frame()
    assert set(frame.outcome.cat.categories) == set(Outcome.ALL)
    assert len(frame) == 40
    assert not math.isnan(frame.latency_ms.max())


async def test_a_run_lists_only_the_faults_that_overlap_it(lab: NetworkLab) -> None:
    await lab.open_routes([USER])
    lab.delay(USER, 20)
    lab.heal()  # ended before the run below starts
    lab.cut(USER)  # an instant before the run: not in it either
    run = await lab.load(users=4, rate=40, seconds=1, progress=False, seed=10)
    assert run.faults().empty
    assert [f.kind for f in lab.faults] == ["delay", "cut"]  # the lab keeps its whole log
