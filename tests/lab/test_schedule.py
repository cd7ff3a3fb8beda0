"""The open-loop schedule and the ledger's counting of losses, duplicates and reordering."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from mimc_rx.lab import Outcome, build_schedule
from mimc_rx.lab.schedule import HEADER_BYTES, Ledger, decode_payload, encode_payload


def _schedule(**kw: object) -> list:  # type: ignore[type-arg]
    args: dict[str, object] = {
        "users": 10,
        "rate": 100.0,
        "seconds": 5.0,
        "mix": {"p2p": 0.8, "group": 0.2},
        "payload_bytes": (50, 2000),
        "rng": random.Random(4),
    }
    args.update(kw)
    return build_schedule(**args)[0]  # type: ignore[arg-type]


def test_uniform_schedule_is_fixed_in_advance() -> None:
    recs = _schedule()
    assert len(recs) == 500
    assert [r.scheduled for r in recs] == pytest.approx([i / 100.0 for i in range(500)])
    assert all(r.sender != r.target for r in recs if r.kind == "p2p")
    assert all(50 <= r.size <= 2000 for r in recs)
    shares = Counter(r.kind for r in recs)
    assert 0.7 < shares["p2p"] / 500 < 0.9
    assert _schedule()[123].size == recs[123].size  # same seed, same schedule


def test_poisson_schedule_keeps_the_mean_rate() -> None:
    recs = _schedule(arrivals="poisson", rate=1000.0, seconds=5.0)
    assert 4500 < len(recs) < 5500
    assert all(b.scheduled >= a.scheduled for a, b in itertools.pairwise(recs))


def test_group_messages_expect_every_other_member() -> None:
    recs, groups = build_schedule(
        users=7,
        rate=50,
        seconds=2,
        mix={"group": 1.0},
        payload_bytes=(40, 40),
        group_size=3,
        rng=random.Random(0),
    )
    assert groups == ((0, 1, 2), (3, 4, 5, 6))  # a lone last user joins the previous group
    for r in recs:
        assert r.sender in groups[r.target]
        assert r.expected == len(groups[r.target]) - 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"users": 1}, "two users"),
        ({"rate": 0}, "positive"),
        ({"mix": {"uc": 1.0}}, "mix"),
        ({"payload_bytes": (10, 20)}, "payload sizes"),
        ({"arrivals": "bursty"}, "arrivals"),
    ],
)
def test_bad_schedules_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _schedule(**kw)


def test_payload_header_round_trip() -> None:
    payload = encode_payload(b"12345678", 42, 1700000000.25, 100)
    assert len(payload) == 100
    assert decode_payload(payload) == (b"12345678", 42, 1700000000.25)
    assert len(encode_payload(b"12345678", 1, 0.0, 5)) == HEADER_BYTES
    assert decode_payload(b"hello, not ours") is None


def test_ledger_counts_duplicates_reordering_and_outcomes() -> None:
    recs = _schedule(users=3, mix={"p2p": 1.0}, rate=10, seconds=1)
    ledger = Ledger(b"runrunru", recs)
    # deliver every message of sender s to its target, but the first two swapped
    first, second = (
        recs[0],
        next(r for r in recs[1:] if (r.sender, r.target) == (recs[0].sender, recs[0].target)),
    )
    ledger.deliver(second.target, encode_payload(b"runrunru", second.seq, 0.0, 40), 0.5)
    ledger.deliver(first.target, encode_payload(b"runrunru", first.seq, 0.0, 40), 0.6)
    ledger.deliver(first.target, encode_payload(b"runrunru", first.seq, 0.0, 40), 0.7)
    ledger.deliver(0, encode_payload(b"otherrun", 0, 0.0, 40), 0.8)
    assert first.duplicates == 1
    assert first.delivered == 0.6
    assert ledger.out_of_order == {first.target: 1}
    assert ledger.foreign == 1
    assert first.outcome() == Outcome.DELIVERED
    third = next(r for r in recs if r.deliveries == 0)
    assert third.outcome() == Outcome.UNSENT
    third.attempts = 1
    assert third.outcome() == Outcome.UNACKED
    third.acked = 0.1
    assert third.outcome() == Outcome.LOST
    ledger.fail(third, "boom")
    assert third.outcome() == Outcome.FAILED
    assert ledger.open == len(recs) - 3
    assert not ledger.settled()
