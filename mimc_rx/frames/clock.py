"""Receive-time clocks: integer microseconds since the Unix epoch.

Every sink in :mod:`mimc_rx.frames` (and the recorder in :mod:`mimc_rx.frames.replay`) stamps each
event with the local time it arrived. A *clock* is any zero-argument callable returning that time as
an ``int`` of microseconds since 1970-01-01 UTC. Microseconds are the unit of every datetime column
we build (``datetime64[us, UTC]``, pandas 3's default), so a stamp survives a round trip through a
DataFrame, a Parquet file or a reactivex ``HistoricalScheduler`` (whose ``datetime`` clock also has
microsecond resolution) without losing a digit.

* :func:`wall_clock` (the default) reads ``time.time_ns()``: comparable across the processes of
  one machine, which is what end-to-end latency between two local clients needs.
* :func:`scheduler_clock` reads a reactivex scheduler's ``now``: with a ``TestScheduler`` or a
  ``HistoricalScheduler`` the stamps are virtual times, so tests and replays are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reactivex.abc import SchedulerBase

__all__ = [
    "Clock",
    "datetime_to_us",
    "resolve_clock",
    "scheduler_clock",
    "us_to_datetime",
    "wall_clock",
]

Clock = Callable[[], int]
"""A zero-argument callable returning microseconds since the Unix epoch."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def wall_clock() -> int:
    """The system's wall-clock time in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def datetime_to_us(value: datetime) -> int:
    """Convert a datetime to integer microseconds since the epoch, exactly.

    A naive datetime is taken as UTC (reactivex schedulers hand out aware UTC datetimes).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def us_to_datetime(value: int) -> datetime:
    """Convert integer microseconds since the epoch to an aware UTC datetime, exactly."""
    return _EPOCH + timedelta(microseconds=value)


def scheduler_clock(scheduler: SchedulerBase) -> Clock:
    """A clock reading ``scheduler.now``: virtual time under a Test/HistoricalScheduler."""

    def now() -> int:
        return datetime_to_us(scheduler.now)

    return now


def resolve_clock(clock: Clock | None, scheduler: SchedulerBase | None) -> Clock:
    """The clock a sink should use: the given one, else the scheduler's, else the wall clock."""
    if clock is not None:
        return clock
    if scheduler is not None:
        return scheduler_clock(scheduler)
    return wall_clock
