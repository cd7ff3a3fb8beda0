"""Percentiles against numpy's, the HDR histogram against exact values, the clock offset."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.lab import ClockOffset, LatencyHistogram, exact_percentiles

PCTS = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)


@given(
    st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=300,
    )
)
def test_exact_percentiles_match_numpy(values: list[float]) -> None:
    ours = exact_percentiles(values, PCTS)
    ref = np.percentile(np.array(values), PCTS)
    assert ours == pytest.approx(list(ref), rel=1e-9, abs=1e-9)


def test_exact_percentiles_ignore_nan_and_give_nan_when_empty() -> None:
    assert exact_percentiles([1.0, math.nan, 3.0], [50.0]) == [2.0]
    assert math.isnan(exact_percentiles([], [50.0])[0])
    with pytest.raises(ValueError, match="between 0 and 100"):
        exact_percentiles([1.0], [101.0])


def test_hdr_percentiles_within_a_thousandth_of_exact() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(1.0, 1.2) for _ in range(50_000)]  # ms, a long tail
    hist = LatencyHistogram()
    hist.record_many(values)
    assert hist.count == len(values)
    for p, exact in zip(
        (50.0, 99.0, 99.9), exact_percentiles(values, (50.0, 99.0, 99.9)), strict=True
    ):
        # HDR keeps 3 significant digits (plus the microsecond unit) and reports a recorded
        # bucket, not an interpolation between two samples.
        assert hist.percentile(p) == pytest.approx(exact, rel=2e-3, abs=2e-3)


def test_hdr_clamps_huge_values_instead_of_dropping_them() -> None:
    hist = LatencyHistogram(highest_ms=1000.0)
    hist.record(5.0)
    hist.record(10_000.0)
    assert hist.count == 2
    assert hist.clamped == 1
    assert hist.max == pytest.approx(1000.0, rel=1e-3)


def test_clock_offset_recovers_a_known_offset() -> None:
    rng = random.Random(1)
    est = ClockOffset(resolution_ms=1.0)
    true_offset = 0.250  # the other clock is 250 ms ahead
    for _ in range(500):
        t0 = rng.uniform(0, 100)
        up, down = rng.uniform(0.0005, 0.02), rng.uniform(0.0005, 0.02)
        remote = t0 + up + true_offset
        est.add(t0, t0 + up + down, round(remote, 3))  # millisecond stamps, as MIMC acks
    result = est.estimate()
    assert result is not None
    assert abs(result.offset_ms - 250.0) <= result.uncertainty_ms
    assert result.uncertainty_ms < 10.0  # half the 10 % fastest round trips, + 1 ms
    assert ClockOffset().estimate() is None
