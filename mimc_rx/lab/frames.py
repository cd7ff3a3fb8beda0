"""A load run as pandas DataFrames with fixed dtypes (pandas is imported here, lazily).

The dtypes do not depend on the data: an empty run, a run where nothing was acked and a run
of a million messages give the same columns and types, so frames of several runs concatenate
and a notebook's code does not break on an edge case. Times are float64 seconds after the
run's first scheduled send (NaN: never happened); latencies are float64 milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mimc_rx.lab.schedule import KINDS, MessageRecord, Outcome
from mimc_rx.lab.timing import DEFAULT_PERCENTILES, LatencyHistogram

if TYPE_CHECKING:
    import pandas as pd

    from mimc_rx.lab.results import RunResult

__all__ = [
    "FAULT_COLUMNS",
    "MESSAGE_COLUMNS",
    "compare_frame",
    "faults_frame",
    "messages_frame",
    "summary_frame",
]

MESSAGE_COLUMNS: dict[str, str] = {
    "seq": "int64",
    "user": "category",
    "to": "string",
    "kind": "category",
    "size": "int32",
    "scheduled": "float64",
    "sent": "float64",
    "acked": "float64",
    "first_delivered": "float64",
    "delivered": "float64",
    "latency_ms": "float64",
    "ack_ms": "float64",
    "attempts": "int16",
    "deliveries": "int16",
    "expected": "int16",
    "duplicates": "int16",
    "outcome": "category",
    "error": "string",
}
"""The columns of :func:`messages_frame` and their dtypes (categories: see the function)."""

FAULT_COLUMNS: dict[str, str] = {
    "kind": "string",
    "route": "string",
    "start": "float64",
    "end": "float64",
    "duration": "float64",
    "detail": "string",
}
"""The columns of :func:`faults_frame`."""


def _ms(later: float, earlier: float) -> float:
    return (later - earlier) * 1000.0


def messages_frame(run: RunResult) -> pd.DataFrame:
    """One row per scheduled message.

    Columns: ``seq``; ``user`` (the sender; categories: every account of the run) and ``to``
    (an account, or ``group:<n>``); ``kind`` (categories ``p2p``, ``group``); ``size`` in
    bytes; the times ``scheduled``, ``sent`` (handed to the socket), ``acked``,
    ``first_delivered`` and ``delivered`` (the last expected recipient); ``latency_ms``
    (delivered - scheduled) and ``ack_ms`` (acked - scheduled); ``attempts`` (sends, resends
    included), ``deliveries``, ``expected``, ``duplicates``; ``outcome`` (categories: the
    :class:`~mimc_rx.lab.schedule.Outcome` values) and ``error``.
    """
    import pandas as pd

    recs: Sequence[MessageRecord] = run.records
    accounts = list(run.accounts)

    def target(r: MessageRecord) -> str:
        return accounts[r.target] if r.kind == "p2p" else f"group:{r.target}"

    data: dict[str, Any] = {
        "seq": [r.seq for r in recs],
        "user": [accounts[r.sender] for r in recs],
        "to": [target(r) for r in recs],
        "kind": [r.kind for r in recs],
        "size": [r.size for r in recs],
        "scheduled": [r.scheduled for r in recs],
        "sent": [r.sent for r in recs],
        "acked": [r.acked for r in recs],
        "first_delivered": [r.first_delivered for r in recs],
        "delivered": [r.delivered for r in recs],
        "latency_ms": [_ms(r.delivered, r.scheduled) for r in recs],
        "ack_ms": [_ms(r.acked, r.scheduled) for r in recs],
        "attempts": [r.attempts for r in recs],
        "deliveries": [r.deliveries for r in recs],
        "expected": [r.expected for r in recs],
        "duplicates": [r.duplicates for r in recs],
        "outcome": [r.outcome() for r in recs],
        "error": [r.error for r in recs],
    }
    frame = pd.DataFrame(data)
    categories = {
        "user": pd.CategoricalDtype(accounts),
        "kind": pd.CategoricalDtype(list(KINDS)),
        "outcome": pd.CategoricalDtype(list(Outcome.ALL)),
    }
    dtypes = {c: categories.get(c, t) for c, t in MESSAGE_COLUMNS.items()}
    return frame.astype(dtypes)


def faults_frame(run: RunResult) -> pd.DataFrame:
    """One row per fault of the run: ``kind``, ``route`` ("all" for every route or the
    server), ``start``, ``end`` (NaN while still in force at the end), ``duration``,
    ``detail``."""
    import pandas as pd

    rows = [
        {
            "kind": f.kind,
            "route": f.route or "all",
            "start": f.start,
            "end": math.nan if f.end is None else f.end,
            "duration": math.nan if f.end is None else f.end - f.start,
            "detail": f.detail,
        }
        for f in run.fault_spans
    ]
    frame = pd.DataFrame(rows, columns=list(FAULT_COLUMNS))
    return frame.astype(FAULT_COLUMNS)


def _group_row(
    recs: Sequence[MessageRecord], percentiles: Sequence[float], out_of_order: int | None
) -> dict[str, Any]:
    counts = {o: 0 for o in Outcome.ALL}
    hist = LatencyHistogram()
    for r in recs:
        counts[r.outcome()] += 1
        if not math.isnan(r.delivered):
            hist.record(_ms(r.delivered, r.scheduled))
    row: dict[str, Any] = {"messages": len(recs)}
    row.update(counts)
    row["duplicated"] = sum(r.duplicates for r in recs)
    row["out_of_order"] = out_of_order if out_of_order is not None else -1
    for p in percentiles:
        row[_pname(p)] = hist.percentile(p)
    row["max_ms"] = hist.max
    return row


def _pname(p: float) -> str:
    return "p" + f"{p:g}".replace(".", "_") + "_ms"


def summary_frame(
    run: RunResult, percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> pd.DataFrame:
    """Counts per outcome and HDR latency percentiles, overall, by kind and by user.

    The index is ``(by, key)``: ``("all", "all")``, ``("kind", "p2p")``, ``("user", "vu001")``.
    ``out_of_order`` is per receiving user (-1 where it does not apply, e.g. by kind).
    """
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    rows[("all", "all")] = _group_row(run.records, percentiles, sum(run.out_of_order.values()))
    for kind in KINDS:
        recs = [r for r in run.records if r.kind == kind]
        if recs:
            rows[("kind", kind)] = _group_row(recs, percentiles, None)
    by_user: dict[int, list[MessageRecord]] = {}
    for r in run.records:
        by_user.setdefault(r.sender, []).append(r)
    for i, account in enumerate(run.accounts):
        rows[("user", account)] = _group_row(
            by_user.get(i, []), percentiles, run.out_of_order.get(i, 0)
        )
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(list(rows), names=["by", "key"])
    ints = ["messages", *Outcome.ALL, "duplicated", "out_of_order"]
    return frame.astype({c: "int64" for c in ints})


def compare_frame(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """The headline figures of several runs side by side, one row per label."""
    import pandas as pd

    rows = {label: run.stats().as_dict() for label, run in runs.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "condition"
    return frame.drop(columns=["label"])
