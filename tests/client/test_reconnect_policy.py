"""Backoff values and the reconnector's schedule, on virtual time (no loop, no sleeping)."""

from __future__ import annotations

import random

import pytest
from reactivex.testing import TestScheduler

from mimc_rx.client.reconnect import Backoff, Reconnector
from mimc_rx.client.values import Reconnecting


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    policy = Backoff(initial=1.0, factor=2.0, max_delay=30.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert Backoff(jitter=0.0).delay(100_000) == 30.0


def test_jitter_stays_within_its_band_and_varies() -> None:
    policy = Backoff(initial=4.0, factor=2.0, max_delay=100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(2.0 <= d <= 6.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100


def test_jitter_never_exceeds_the_cap() -> None:
    policy = Backoff(initial=30.0, max_delay=30.0, jitter=0.5)
    rng = random.Random(1)
    assert max(policy.delay(5, rng) for _ in range(200)) <= 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"factor": 0.5}, {"jitter": 1.5}, {"max_attempts": 0}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Backoff(**kwargs)  # type: ignore[arg-type]


class Recorder:
    """Plays the facade: records when attempts fire and reports their outcome."""

    def __init__(self, scheduler: TestScheduler, outcomes: list[bool]) -> None:
        self.scheduler = scheduler
        self.outcomes = outcomes
        self.fired: list[tuple[float, int]] = []
        self.scheduled: list[Reconnecting] = []
        self.gave_up = False
        self.reconnector: Reconnector | None = None

    def attempt(self, number: int) -> None:
        assert self.reconnector is not None
        self.fired.append((self.scheduler.clock, number))
        if self.outcomes.pop(0):
            self.reconnector.attempt_succeeded()
        elif not self.reconnector.attempt_failed():
            self.gave_up = True


def make(policy: Backoff, outcomes: list[bool]) -> tuple[TestScheduler, Recorder, Reconnector]:
    scheduler = TestScheduler()
    rec = Recorder(scheduler, outcomes)
    reconnector = Reconnector(
        policy, rec.attempt, scheduler=scheduler, on_scheduled=rec.scheduled.append
    )
    rec.reconnector = reconnector
    return scheduler, rec, reconnector


def test_attempts_fire_at_backoff_times_until_one_succeeds() -> None:
    scheduler, rec, reconnector = make(Backoff(jitter=0.0), [False, False, False, True])
    assert reconnector.connection_lost()
    scheduler.advance_to(1000.0)
    # 1 s, then +2, +4, +8 (virtual time: no test waits).
    assert rec.fired == [(1.0, 1), (3.0, 2), (7.0, 3), (15.0, 4)]
    assert [(r.attempt, r.delay) for r in rec.scheduled] == [(1, 1), (2, 2), (3, 4), (4, 8)]
    assert not reconnector.active
    assert reconnector.attempt == 0


def test_the_next_loss_starts_again_from_the_first_delay() -> None:
    scheduler, rec, reconnector = make(Backoff(jitter=0.0), [False, True, True])
    reconnector.connection_lost()
    scheduler.advance_to(100.0)
    reconnector.connection_lost()
    scheduler.advance_to(200.0)
    assert rec.fired == [(1.0, 1), (3.0, 2), (101.0, 1)]


def test_max_attempts_gives_up() -> None:
    scheduler, rec, reconnector = make(Backoff(jitter=0.0, max_attempts=3), [False] * 10)
    reconnector.connection_lost()
    scheduler.advance_to(10_000.0)
    assert [n for _, n in rec.fired] == [1, 2, 3]
    assert rec.gave_up
    assert not reconnector.active


def test_cancel_drops_the_scheduled_attempt() -> None:
    scheduler, rec, reconnector = make(Backoff(jitter=0.0), [True])
    reconnector.connection_lost()
    scheduler.advance_to(0.5)
    reconnector.cancel()
    scheduler.advance_to(100.0)
    assert rec.fired == []
    assert not reconnector.active


def test_disabled_policy_never_schedules() -> None:
    scheduler, rec, reconnector = make(Backoff.disabled(), [True])
    assert not reconnector.connection_lost()
    scheduler.advance_to(100.0)
    assert rec.fired == []
    assert rec.scheduled == []


def test_a_loss_while_retrying_does_not_start_a_second_schedule() -> None:
    scheduler, rec, reconnector = make(Backoff(jitter=0.0), [True])
    reconnector.connection_lost()
    reconnector.connection_lost()
    scheduler.advance_to(100.0)
    assert rec.fired == [(1.0, 1)]
