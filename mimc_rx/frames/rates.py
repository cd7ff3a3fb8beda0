"""Messages and bytes per period: the one rate computation of the timing tables and plots.

:func:`throughput` buckets any frame with a datetime column (a send ledger, a message frame,
a latency table) by period. It sits in a module of its own because both
:mod:`mimc_rx.frames.timing` (which re-exports it) and :mod:`mimc_rx.frames.plots` use it, and
the timing module re-exports the plots. pandas is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["throughput"]

_TIME = "datetime64[us, UTC]"


def throughput(
    frame: pd.DataFrame,
    *,
    time_column: str | None = None,
    freq: str = "1s",
    size_column: str | None = "size",
) -> pd.DataFrame:
    """Messages (and bytes) per period, empty periods included.

    Args:
        frame: any frame with a datetime column: a ledger (``sent_at``), a message frame or a
            latency table.
        time_column: the time to bucket by; default ``sent_at`` if present, else
            ``delivered_at``, else ``received_at``.
        freq: the period, a pandas offset alias (``"1s"``, ``"100ms"``...).
        size_column: the byte-size column, or None to skip bytes.

    Returns:
        Indexed by period start (datetime64[us, UTC]): ``messages`` and ``bytes`` (int64),
        ``messages_per_s`` and ``mb_per_s`` (float64, per second whatever the period).
    """
    import pandas as pd

    if time_column is None:
        for name in ("sent_at", "delivered_at", "received_at"):
            if name in frame.columns:
                time_column = name
                break
        else:
            raise ValueError("no sent_at, delivered_at or received_at column")
    times = frame.set_index(time_column).sort_index()
    seconds = pd.Timedelta(freq).total_seconds()
    size = size_column if size_column is not None and size_column in frame.columns else None
    if len(times) == 0:
        index = pd.DatetimeIndex([], dtype=_TIME, name=time_column)
        result = pd.DataFrame({"messages": pd.Series([], index=index, dtype="int64")})
        if size is not None:
            result["bytes"] = pd.Series([], index=index, dtype="int64")
    else:
        grouper = times.resample(freq)
        result = pd.DataFrame({"messages": grouper.size().astype("int64")})
        if size is not None:
            result["bytes"] = grouper[size].sum().astype("int64")
    result["messages_per_s"] = result["messages"] / seconds
    if size is not None:
        result["mb_per_s"] = result["bytes"] / seconds / 1e6
    result.index.name = "period"
    return result
