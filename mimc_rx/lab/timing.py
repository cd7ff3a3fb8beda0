"""Latency statistics for the lab: an HDR histogram, exact percentiles, a clock-offset estimate.

Two kinds of percentile, on purpose. :class:`LatencyHistogram` wraps the ``hdrhistogram``
package (HdrHistogram's Python port): constant memory whatever the run length, values kept to
three significant digits, so a 30-minute run at 10k msg/s costs a few hundred kilobytes. For
runs small enough to keep every sample, :func:`exact_percentiles` gives the true value, with the
same linear interpolation as ``numpy.percentile``'s default (a test holds it to numpy), so a
reader can check the histogram against it.

:class:`ClockOffset` estimates how far another process's clock is from ours when a timestamp
taken there is compared with ours. In a lab run every sender and receiver lives in one process
and shares one monotonic clock, so end-to-end latency needs no offset; the estimate applies to
the server's ack timestamps (the server is another process, or another machine for the CLI),
which split the latency into the two legs (sender to server, server to receiver).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PERCENTILES",
    "ClockOffset",
    "LatencyHistogram",
    "OffsetEstimate",
    "exact_percentiles",
]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)
"""The percentiles a summary reports, in percent."""

_HIGHEST_US = 3_600_000_000  # one hour, in microseconds


def exact_percentiles(values: Iterable[float], percentiles: Sequence[float]) -> list[float]:
    """The exact percentiles of ``values``, interpolated linearly between closest ranks.

    The definition is numpy's default (``method="linear"``): the p-th percentile of n sorted
    values sits at rank ``p/100 * (n - 1)``. NaN values are ignored; an empty input gives NaN.
    Keeps every value in memory: for long runs use :class:`LatencyHistogram`.
    """
    data = sorted(v for v in values if not math.isnan(v))
    out: list[float] = []
    n = len(data)
    for p in percentiles:
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"a percentile is between 0 and 100, not {p}")
        if n == 0:
            out.append(math.nan)
            continue
        rank = p / 100.0 * (n - 1)
        low = math.floor(rank)
        high = min(low + 1, n - 1)
        frac = rank - low
        out.append(data[low] + (data[high] - data[low]) * frac)
    return out


class LatencyHistogram:
    """Latencies in milliseconds, kept by an HDR histogram with microsecond resolution.

    Args:
        significant_figures: the precision of each recorded value (3 = within 0.1 %).
        highest_ms: the largest value it can hold; larger ones are clamped to it (and counted
            in :attr:`clamped`) rather than dropped, so a stall still shows in the tail.
    """

    def __init__(self, *, significant_figures: int = 3, highest_ms: float = 3_600_000.0) -> None:
        # The hdrhistogram package ships no types: imported by name, used through Any.
        hdr = importlib.import_module("hdrh.histogram")

        self._highest_us = max(2, min(_HIGHEST_US, int(highest_ms * 1000)))
        self._hist: Any = hdr.HdrHistogram(1, self._highest_us, significant_figures)
        self.clamped = 0
        """How many values were above ``highest_ms`` and recorded as it."""

    def record(self, ms: float) -> None:
        """Add one latency (negative values, from clock noise, count as 0)."""
        us = round(ms * 1000.0)
        if us > self._highest_us:
            us = self._highest_us
            self.clamped += 1
        self._hist.record_value(max(1, us))

    def record_many(self, values_ms: Iterable[float]) -> None:
        """Add every latency of ``values_ms`` (NaN values are skipped)."""
        for v in values_ms:
            if not math.isnan(v):
                self.record(v)

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return int(self._hist.get_total_count())

    def percentile(self, p: float) -> float:
        """The value at percentile ``p`` (0-100) in milliseconds; NaN when empty."""
        if self.count == 0:
            return math.nan
        return float(self._hist.get_value_at_percentile(p)) / 1000.0

    def percentiles(self, ps: Sequence[float] = DEFAULT_PERCENTILES) -> list[float]:
        """Several percentiles at once, in milliseconds."""
        return [self.percentile(p) for p in ps]

    @property
    def max(self) -> float:
        """The largest value recorded, in milliseconds (NaN when empty)."""
        return float(self._hist.get_max_value()) / 1000.0 if self.count else math.nan

    @property
    def mean(self) -> float:
        """The mean, in milliseconds (NaN when empty)."""
        return float(self._hist.get_mean_value()) / 1000.0 if self.count else math.nan

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value of ``other`` (e.g. per-user histograms into a total)."""
        self._hist.add(other._hist)
        self.clamped += other.clamped

    def __repr__(self) -> str:
        return f"<LatencyHistogram n={self.count} p50={self.percentile(50):.3f} ms>"


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetEstimate:
    """How far the other clock is ahead of ours.

    Attributes:
        offset_ms: the other clock minus ours, in milliseconds.
        uncertainty_ms: half the round trip of the samples used, plus the other clock's
            resolution: the true offset lies within ``offset_ms +- uncertainty_ms``.
        samples: how many round trips were seen.
    """

    offset_ms: float
    uncertainty_ms: float
    samples: int


class ClockOffset:
    """Estimates another clock's offset from round trips that it timestamps (as NTP does).

    Each sample is a round trip: we note our wall clock when a request leaves (``t0``) and
    when its answer arrives (``t1``); the other side stamped the answer with its clock
    (``remote``). If the two legs took equally long, ``remote - (t0 + t1) / 2`` is the offset;
    the error is at most half the round trip. So the estimate keeps the fastest round trips
    (a fraction ``best`` of them) and takes the median of their offsets.

    Args:
        resolution_ms: the resolution of the remote stamps (MIMC acks carry milliseconds).
        best: the fraction of fastest samples to use.
    """

    def __init__(self, *, resolution_ms: float = 1.0, best: float = 0.1) -> None:
        if not 0.0 < best <= 1.0:
            raise ValueError("best is a fraction in (0, 1]")
        self.resolution_ms = resolution_ms
        self.best = best
        self._samples: list[tuple[float, float]] = []  # (round trip, offset), ms

    def add(self, t0: float, t1: float, remote: float) -> None:
        """One round trip: our wall times ``t0`` and ``t1`` and the remote stamp, in seconds."""
        if t1 < t0:
            return
        self._samples.append(((t1 - t0) * 1000.0, (remote - (t0 + t1) / 2.0) * 1000.0))

    def __len__(self) -> int:
        return len(self._samples)

    def estimate(self) -> OffsetEstimate | None:
        """The current estimate, or None before the first sample."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        keep = ordered[: max(1, int(len(ordered) * self.best))]
        offsets = sorted(o for _, o in keep)
        mid = offsets[len(offsets) // 2]
        worst_rtt = keep[-1][0]
        return OffsetEstimate(
            offset_ms=mid,
            uncertainty_ms=worst_rtt / 2.0 + self.resolution_ms,
            samples=len(self._samples),
        )
