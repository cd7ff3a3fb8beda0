"""What a load run's readers see: its fault spans, its headline figures, and ``RunResult``.

A leaf of the lab: :mod:`.frames` and :mod:`.plots` type their runs with the
:class:`RunResult` protocol instead of importing :class:`~mimc_rx.lab.run.LoadRun`, so
``run`` can hand itself to them (lazily) without an import circle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mimc_rx.lab.schedule import MessageRecord

__all__ = ["RunFault", "RunResult", "RunStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFault:
    """A fault as an interval of a run (or of the lab's loop clock, before shifting).

    Attributes:
        kind: ``delay``, ``pause``, ``cut``, ``half-open``, ``bandwidth``, ``restart``,
            ``expire-tokens``.
        route: the user (proxy route) it applied to; None for everyone or the server.
        start: when it began.
        end: when it ended (None: still in force; equal to ``start`` for an instant).
        detail: its parameters, readable (``80 +- 20 ms``).
    """

    kind: str
    route: str | None
    start: float
    end: float | None
    detail: str = ""

    def shifted(self, by: float) -> RunFault:
        """The same fault on a clock moved by ``by`` seconds."""
        return replace(self, start=self.start + by, end=None if self.end is None else self.end + by)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStats:
    """The headline figures of a run (latencies in milliseconds, from the scheduled time).

    ``p50``/``p99``/``p999``/``max`` come from the HDR histogram; the ``exact_*`` ones from
    every sample, for runs of at most :data:`~mimc_rx.lab.run.EXACT_LIMIT` messages (None
    above).
    """

    label: str
    users: int
    offered_rate: float
    scheduled: int
    sent: int
    send_rate: float
    delivered: int
    delivery_rate: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    exact_p50: float | None
    exact_p99: float | None
    exact_p999: float | None
    lost: int
    duplicated: int
    out_of_order: int
    unacked: int
    unsent: int
    failed: int
    partial: int
    clock_offset_ms: float | None
    clock_uncertainty_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """The figures as a plain dict (for a table or JSON)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class RunResult(Protocol):
    """What the frames and plots read from a run (:class:`~mimc_rx.lab.run.LoadRun` is one).

    Times are in seconds after the run's first scheduled send; see :mod:`mimc_rx.lab.run`.
    """

    @property
    def label(self) -> str:
        """The run's name in tables and plots (may be empty)."""
        ...

    @property
    def run_id(self) -> str:
        """The run's id (hex)."""
        ...

    @property
    def accounts(self) -> Sequence[str]:
        """The account of each user index."""
        ...

    @property
    def records(self) -> Sequence[MessageRecord]:
        """Every scheduled message, in schedule order."""
        ...

    @property
    def end(self) -> float:
        """When the run ended."""
        ...

    @property
    def fault_spans(self) -> Sequence[RunFault]:
        """The faults during the run."""
        ...

    @property
    def out_of_order(self) -> Mapping[int, int]:
        """Out-of-order deliveries per receiving user index."""
        ...

    def latencies(self) -> list[float]:
        """Every delivery latency in milliseconds, in schedule order."""
        ...

    def stats(self) -> RunStats:
        """The headline figures."""
        ...
