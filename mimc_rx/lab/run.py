"""``LoadRun``: the result of one load, with its figures, frames and plots.

Every time in a run is in seconds after its first scheduled send, on the loop's monotonic
clock. Latency is ``delivered - scheduled``: from the moment the message was *due* (not when
it managed to leave) to the moment its last expected recipient had it, so waits behind a
stalled connection count (no coordinated omission). A group message is delivered when every
other member got it.

What counts as what (see :class:`~mimc_rx.lab.schedule.Outcome`): *lost* is a message the
server acked that never reached a recipient, the one thing a messaging system must not do;
*unacked* and *unsent* never got that far. *Duplicated* counts second deliveries of the same
message to the same recipient that reached the application (the core drops redeliveries of
one server sequence; a resend under a new packet id is a new sequence and gets through).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mimc_rx.lab.results import RunFault, RunStats
from mimc_rx.lab.schedule import MessageRecord, Outcome
from mimc_rx.lab.timing import (
    DEFAULT_PERCENTILES,
    LatencyHistogram,
    OffsetEstimate,
    exact_percentiles,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from mimc_rx.lab.spec import LoadSpec

__all__ = ["EXACT_LIMIT", "LoadRun"]

EXACT_LIMIT = 200_000
"""Runs with at most this many latencies also get exact percentiles next to the HDR ones."""


def _latency(rec: MessageRecord) -> float:
    return (rec.delivered - rec.scheduled) * 1000.0


class LoadRun:
    """What happened to every message of one load run.

    Made by :func:`~mimc_rx.lab.load.run_load`; read it with :meth:`stats`, :meth:`summary`,
    :meth:`frame`, :meth:`faults` and the plot methods.
    """

    def __init__(
        self,
        *,
        spec: LoadSpec,
        run_id: str,
        accounts: tuple[str, ...],
        records: list[MessageRecord],
        groups: tuple[tuple[int, ...], ...],
        start_wall: float,
        schedule_end: float,
        end: float,
        faults: Sequence[RunFault] = (),
        offset: OffsetEstimate | None = None,
        out_of_order: Mapping[int, int] | None = None,
        foreign: int = 0,
        connections: Mapping[str, int] | None = None,
        duplicates_dropped_by_core: int = 0,
    ) -> None:
        self.spec = spec
        self.label = spec.label
        self.run_id = run_id
        self.accounts = accounts
        self.records = records
        self.groups = groups
        self.start_wall = start_wall
        """Wall time (``time.time()``) of the run's zero."""
        self.schedule_end = schedule_end
        self.end = end
        self.fault_spans = list(faults)
        self.offset = offset
        """The server clock's offset from ours, estimated from acks (None: no acks)."""
        self.out_of_order = dict(out_of_order or {})
        self.foreign = foreign
        self.connections = dict(connections or {})
        """Successful logins per user (more than 1: it reconnected)."""
        self.duplicates_dropped_by_core = duplicates_dropped_by_core
        """Server redeliveries the client core recognised and did not emit."""

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<LoadRun {self.label or self.run_id} {s.delivered}/{s.scheduled} delivered "
            f"p50={s.p50:.1f} p99={s.p99:.1f} ms lost={s.lost} dup={s.duplicated}>"
        )

    # ------------------------------------------------------------------ figures

    def histogram(self, records: Sequence[MessageRecord] | None = None) -> LatencyHistogram:
        """An HDR histogram of the delivery latencies (ms) of ``records`` (default: all)."""
        hist = LatencyHistogram()
        for rec in self.records if records is None else records:
            if not math.isnan(rec.delivered):
                hist.record(_latency(rec))
        return hist

    def latencies(self) -> list[float]:
        """Every delivery latency in milliseconds, in schedule order."""
        return [_latency(r) for r in self.records if not math.isnan(r.delivered)]

    def stats(self) -> RunStats:
        """The headline figures: rates, percentiles, losses."""
        recs = self.records
        outcomes = {o: 0 for o in Outcome.ALL}
        for r in recs:
            outcomes[r.outcome()] += 1
        sent = [r for r in recs if not math.isnan(r.sent)]
        delivered = [r for r in recs if not math.isnan(r.delivered)]
        last_sent = max((r.sent for r in sent), default=math.nan)
        last_delivered = max((r.delivered for r in delivered), default=math.nan)
        hist = self.histogram()
        exact: list[float | None] = [None, None, None]
        if len(delivered) <= EXACT_LIMIT:
            exact = list(exact_percentiles(self.latencies(), (50.0, 99.0, 99.9)))
        return RunStats(
            label=self.label,
            users=len(self.accounts),
            offered_rate=self.spec.rate,
            scheduled=len(recs),
            sent=len(sent),
            send_rate=len(sent) / last_sent if sent and last_sent > 0 else math.nan,
            delivered=len(delivered),
            delivery_rate=(
                len(delivered) / last_delivered if delivered and last_delivered > 0 else math.nan
            ),
            p50=hist.percentile(50.0),
            p90=hist.percentile(90.0),
            p99=hist.percentile(99.0),
            p999=hist.percentile(99.9),
            max=hist.max,
            exact_p50=exact[0],
            exact_p99=exact[1],
            exact_p999=exact[2],
            lost=outcomes[Outcome.LOST],
            duplicated=sum(r.duplicates for r in recs),
            out_of_order=sum(self.out_of_order.values()),
            unacked=outcomes[Outcome.UNACKED],
            unsent=outcomes[Outcome.UNSENT],
            failed=outcomes[Outcome.FAILED],
            partial=outcomes[Outcome.PARTIAL],
            clock_offset_ms=None if self.offset is None else self.offset.offset_ms,
            clock_uncertainty_ms=None if self.offset is None else self.offset.uncertainty_ms,
        )

    def summary(self, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> pd.DataFrame:
        """Counts and latency percentiles overall, by kind and by user (one row each)."""
        from mimc_rx.lab.frames import summary_frame

        return summary_frame(self, percentiles)

    # ------------------------------------------------------------------ frames and plots

    def frame(self) -> pd.DataFrame:
        """One row per message (see :func:`mimc_rx.lab.frames.messages_frame`)."""
        from mimc_rx.lab.frames import messages_frame

        return messages_frame(self)

    def faults(self) -> pd.DataFrame:
        """One row per fault during the run (times in run seconds)."""
        from mimc_rx.lab.frames import faults_frame

        return faults_frame(self)

    def plot_latency(self, ax: Axes | None = None) -> Axes:
        """Latency over time, with the faults as shaded spans."""
        from mimc_rx.lab.plots import plot_latency

        return plot_latency(self, ax=ax)

    def plot_throughput(self, ax: Axes | None = None, bin_seconds: float = 0.5) -> Axes:
        """Sends and deliveries per second over time, with the faults shaded."""
        from mimc_rx.lab.plots import plot_throughput

        return plot_throughput(self, ax=ax, bin_seconds=bin_seconds)

    def plot_cdf(self, ax: Axes | None = None) -> Axes:
        """The latency CDF of this run."""
        from mimc_rx.lab.plots import plot_cdf

        return plot_cdf({self.label or "run": self}, ax=ax)

    def to_parquet(self, path: str) -> None:
        """Save :meth:`frame` to a Parquet file (pyarrow), for analysis later."""
        self.frame().to_parquet(path, index=False)
