"""Latency and throughput plots, drawn by matplotlib through pandas.

Each function takes the tables of :mod:`mimc_rx.frames.timing` (``publish=`` the result of
``publish_latency``, ``end_to_end=`` the result of ``end_to_end_latency``), draws on ``ax`` (a
new figure when omitted) and returns the Axes, so plots compose and notebooks show them inline.
matplotlib is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from mimc_rx.frames.rates import throughput

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LOG_SPREAD",
    "plot_latency_cdf",
    "plot_latency_histogram",
    "plot_latency_over_time",
    "plot_throughput",
]

_LABELS = {"publish": "publish latency", "end_to_end": "end-to-end latency"}


def _axes(ax: Any, title: str) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        _figure, ax = plt.subplots(figsize=(8, 4))
    ax.set_title(title)
    return ax


def _utc_naive(index: pd.Index) -> Any:
    """Times as naive UTC datetime64 for matplotlib.

    pandas' own time-series plotting infers a period frequency and, for a single period or
    mixed frequencies on one Axes, can spend minutes laying out ticks; plain datetime64
    values drawn by matplotlib do not.
    """
    import pandas as pd

    times = pd.DatetimeIndex(index)
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    return times.to_numpy()


def _latencies(publish: Any, end_to_end: Any) -> dict[str, pd.DataFrame]:
    """The given tables by label, with their latency column renamed ``latency_ms``."""
    found: dict[str, pd.DataFrame] = {}
    for key, table in (("publish", publish), ("end_to_end", end_to_end)):
        if table is None:
            continue
        column = f"{key}_latency_ms"
        if column not in table.columns:
            raise ValueError(f"{key}= needs a {column} column")
        found[_LABELS[key]] = table.rename(columns={column: "latency_ms"}).dropna(
            subset=["latency_ms"]
        )
    if not found:
        raise ValueError("give publish=, end_to_end= or both")
    return found


LOG_SPREAD = 20.0
"""``scale="auto"`` draws log bins when the largest latency is this many times the median."""


def plot_latency_histogram(
    publish: pd.DataFrame | None = None,
    end_to_end: pd.DataFrame | None = None,
    *,
    bins: int = 50,
    scale: Literal["auto", "linear", "log"] = "auto",
    clip: float | None = 99.0,
    ax: Any = None,
) -> Any:
    """Histogram of latencies in milliseconds, one colour per kind.

    A few outliers (an outage in the data) would squash the bulk into one bar of linear bins.
    ``scale="auto"`` looks at the spread: when the maximum is over ``LOG_SPREAD`` times the
    median, the bins are logarithmic and cover everything; otherwise they are linear up to the
    ``clip`` percentile.

    Args:
        bins: number of bins, shared by every kind.
        scale: ``"auto"``, ``"linear"`` or ``"log"``.
        clip: with linear bins, draw latencies up to this percentile of all the values given;
            ``None`` draws everything.
    """
    import numpy as np

    ax = _axes(ax, "Latency histogram")
    tables = _latencies(publish, end_to_end)
    values = np.concatenate([t["latency_ms"].to_numpy(dtype="float64") for t in tables.values()])
    positive = values[values > 0]
    if scale == "auto":
        spread = float(positive.max() / np.median(positive)) if len(positive) else 1.0
        scale = "log" if spread > LOG_SPREAD else "linear"
    suffix = ""
    if scale == "log" and len(positive):
        low, high = float(positive.min()), float(positive.max())
        edges = np.geomspace(low, max(high, low * 1.001), bins + 1)
        ax.set_xscale("log")
        suffix = " (log bins)"
    else:
        low = float(values.min()) if len(values) else 0.0
        high = float(values.max()) if len(values) else 1.0
        if clip is not None and len(values):
            high = float(np.percentile(values, clip))
            suffix = f" (up to p{clip:g}: {high:.3g} ms)"
        edges = np.linspace(low, max(high, low + 1e-3), bins + 1)
    for label, table in tables.items():
        table["latency_ms"].plot.hist(ax=ax, bins=edges.tolist(), alpha=0.6, label=label)
    ax.set_xlabel("latency (ms)" + suffix)
    ax.set_ylabel("messages")
    ax.legend()
    return ax


def plot_latency_cdf(
    publish: pd.DataFrame | None = None,
    end_to_end: pd.DataFrame | None = None,
    *,
    log: bool = True,
    ax: Any = None,
) -> Any:
    """Cumulative distribution: the share of messages (%) at or below each latency."""
    import numpy as np
    import pandas as pd

    ax = _axes(ax, "Latency distribution")
    for label, table in _latencies(publish, end_to_end).items():
        values = np.sort(table["latency_ms"].to_numpy(dtype="float64"))
        share = np.arange(1, len(values) + 1) * 100.0 / max(len(values), 1)
        pd.Series(share, index=values).plot(ax=ax, label=label, drawstyle="steps-post")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("messages at or below (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def plot_latency_over_time(
    publish: pd.DataFrame | None = None,
    end_to_end: pd.DataFrame | None = None,
    *,
    ax: Any = None,
) -> Any:
    """Each message's latency against its send time, with a rolling median per kind."""
    ax = _axes(ax, "Latency over time")
    for label, table in _latencies(publish, end_to_end).items():
        series = table.set_index("sent_at")["latency_ms"].sort_index()
        times = _utc_naive(series.index)
        ax.plot(times, series.to_numpy(), ".", markersize=2, alpha=0.4, label=label)
        window = max(len(series) // 50, 1)
        median = series.rolling(window, min_periods=1).median().to_numpy()
        ax.plot(times, median, label=f"{label} (median)")
    ax.set_xlabel("sent at (UTC)")
    ax.set_ylabel("latency (ms)")
    ax.legend()
    return ax


def plot_throughput(
    sent: pd.DataFrame | None = None,
    delivered: pd.DataFrame | None = None,
    *,
    freq: str = "1s",
    ax: Any = None,
) -> Any:
    """Messages per second over time: sent (a ledger) and/or delivered (an end-to-end table
    or message frames); a ``throughput()`` table is drawn as it is."""
    ax = _axes(ax, "Throughput")
    drawn = False
    for label, frame in (("sent", sent), ("delivered", delivered)):
        if frame is None:
            continue
        if "messages_per_s" in frame.columns:
            rates = frame
        else:
            # Sends by their send time; deliveries by when they arrived.
            order = ("sent_at",) if label == "sent" else ("delivered_at", "received_at")
            column = next((c for c in order if c in frame.columns), None)
            rates = throughput(frame, time_column=column, freq=freq)
        ax.step(
            _utc_naive(rates.index), rates["messages_per_s"].to_numpy(), where="post", label=label
        )
        drawn = True
    if not drawn:
        raise ValueError("give sent=, delivered= or both")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("messages / s")
    ax.legend()
    return ax
