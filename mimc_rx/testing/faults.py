"""The fault log of :class:`~mimc_rx.testing.proxy.FaultProxy`, as values a plot can use.

Every fault the proxy applies becomes a frozen :class:`FaultRecord` with its loop time (the
clock of asyncio timers and of latency measurements taken in the loop) and its wall time (to
join with message timestamps). :func:`fault_spans` turns the log into intervals, so a notebook
can shade "bob delayed 80 ms" or "everyone partitioned" behind a latency plot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FaultKind", "FaultRecord", "FaultSpan", "fault_spans"]


class FaultKind(StrEnum):
    """What a :class:`FaultRecord` says happened."""

    CUT = "cut"
    """Connections were reset (RST) on both sides."""
    HALF_OPEN = "half-open"
    """Connections froze without closing: nothing read, nothing forwarded."""
    PAUSE = "pause"
    """Traffic is held (a partition) until released or healed; nothing is lost."""
    RELEASE = "release"
    """A timed pause ended by itself; held bytes flow again, in order."""
    DELAY = "delay"
    """Each chunk is delayed by ``delay_ms`` plus or minus ``jitter_ms``; 0 clears it."""
    BANDWIDTH = "bandwidth"
    """Each direction is limited to ``kbps``; None clears the limit."""
    HEAL = "heal"
    """Every fault of the scope is cleared; half-open connections are reset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRecord:
    """One fault applied (or ended), as the fault log keeps it.

    Attributes:
        kind: what happened.
        route: the route it applies to; None for every route.
        loop_time: ``loop.time()`` when it was applied (same clock as asyncio timers).
        wall_time: ``time.time()`` then (to join with message timestamps).
        seconds: for a timed pause, how long it holds traffic.
        delay_ms: for a delay, the mean added latency.
        jitter_ms: for a delay, the uniform spread around it.
        kbps: for a bandwidth limit, kilobits per second per direction (None: unlimited).
        connections: how many open connections the scope had when it was applied.
    """

    kind: FaultKind
    route: str | None
    loop_time: float
    wall_time: float
    seconds: float | None = None
    delay_ms: float | None = None
    jitter_ms: float | None = None
    kbps: float | None = None
    connections: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpan:
    """A fault as an interval, for shading a plot: from ``start`` to ``end`` (loop time).

    ``end`` is None while the fault still holds; a cut is an instant (``end == start``).
    """

    kind: FaultKind
    route: str | None
    start: float
    end: float | None
    wall_start: float
    wall_end: float | None
    record: FaultRecord


def fault_spans(records: Iterable[FaultRecord]) -> list[FaultSpan]:
    """Pair a fault log into intervals, in the order the faults began.

    A pause ends at its release, at a heal that covers it, or when a new pause replaces it; a
    delay or bandwidth limit ends when replaced (a zero delay or None bandwidth opens no new span)
    or healed; a half-open ends at a heal. A heal of every route covers every route's faults; a
    heal of one route covers only that route's.
    """
    spans: list[FaultSpan] = []
    open_: dict[tuple[FaultKind, str | None], FaultRecord] = {}

    def close(key: tuple[FaultKind, str | None], at: FaultRecord) -> None:
        began = open_.pop(key, None)
        if began is not None:
            spans.append(_span(began, at))

    for rec in records:
        if rec.kind is FaultKind.CUT:
            spans.append(_span(rec, rec))
        elif rec.kind is FaultKind.RELEASE:
            close((FaultKind.PAUSE, rec.route), rec)
        elif rec.kind is FaultKind.HEAL:
            for key in [k for k in open_ if rec.route is None or k[1] == rec.route]:
                close(key, rec)
        else:
            key = (rec.kind, rec.route)
            close(key, rec)
            cleared = (rec.kind is FaultKind.DELAY and not rec.delay_ms and not rec.jitter_ms) or (
                rec.kind is FaultKind.BANDWIDTH and rec.kbps is None
            )
            if not cleared:
                open_[key] = rec
    spans.extend(_span(rec, None) for rec in open_.values())
    spans.sort(key=lambda s: s.start)
    return spans


def _span(began: FaultRecord, ended: FaultRecord | None) -> FaultSpan:
    return FaultSpan(
        kind=began.kind,
        route=began.route,
        start=began.loop_time,
        end=None if ended is None else ended.loop_time,
        wall_start=began.wall_time,
        wall_end=None if ended is None else ended.wall_time,
        record=began,
    )
