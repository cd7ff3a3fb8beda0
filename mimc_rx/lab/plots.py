"""Plots of load runs (matplotlib, imported lazily): latency over time, CDFs, throughput.

Each function draws on the given axes (or a new figure's) and returns them, so a notebook can
combine plots. Faults are drawn as shaded spans (a cut, an instant, as a vertical line), with
their kind and route in the legend, so a latency spike can be read against its cause.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from mimc_rx.lab.results import RunResult

__all__ = ["plot_cdf", "plot_latency", "plot_throughput", "shade_faults"]

_COLORS = {
    "pause": "tab:red",
    "delay": "tab:orange",
    "bandwidth": "tab:purple",
    "half-open": "tab:brown",
    "cut": "black",
    "restart": "tab:gray",
    "expire-tokens": "tab:olive",
}


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=(9, 3.5))
    return new


def shade_faults(run: RunResult, ax: Axes) -> None:
    """Shade each fault of ``run`` on ``ax`` (x axis: run seconds)."""
    seen: set[str] = set()
    right = max(run.end, 0.0)
    for f in run.fault_spans:
        name = f"{f.kind} {f.route or 'all'}" + (f" ({f.detail})" if f.detail else "")
        label = name if name not in seen else None
        seen.add(name)
        color = _COLORS.get(f.kind, "tab:gray")
        end = right if f.end is None else f.end
        if end - f.start < 1e-3:
            ax.axvline(f.start, color=color, linestyle="--", linewidth=1, label=label)
        else:
            ax.axvspan(max(f.start, 0.0), end, color=color, alpha=0.15, label=label)


def plot_latency(run: RunResult, ax: Axes | None = None) -> Axes:
    """Each delivered message's latency against its scheduled time, faults shaded.

    The y axis is logarithmic: a clean run sits at a few milliseconds and a partition at
    seconds, and both must stay readable on one plot.
    """
    ax = _axes(ax)
    recs = [r for r in run.records if not math.isnan(r.delivered)]
    for kind, marker in (("p2p", "."), ("group", "x")):
        xs = [r.scheduled for r in recs if r.kind == kind]
        ys = [max(0.01, (r.delivered - r.scheduled) * 1000.0) for r in recs if r.kind == kind]
        if xs:
            ax.scatter(xs, ys, s=4, marker=marker, alpha=0.5, label=kind)
    shade_faults(run, ax)
    ax.set_yscale("log")
    ax.set_xlabel("scheduled send time (s after start)")
    ax.set_ylabel("delivery latency (ms, from scheduled time)")
    ax.set_title(f"latency over time: {run.label or run.run_id}")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_cdf(runs: Mapping[str, RunResult], ax: Axes | None = None) -> Axes:
    """The delivery-latency CDF of each run, one line per label (x axis logarithmic)."""
    ax = _axes(ax)
    for label, run in runs.items():
        values = sorted(run.latencies())
        if not values:
            continue
        n = len(values)
        ax.plot(
            [max(0.01, v) for v in values],
            [(i + 1) / n for i in range(n)],
            label=f"{label} (n={n})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("delivery latency (ms, from scheduled time)")
    ax.set_ylabel("fraction of messages delivered")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("latency CDF per condition")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_throughput(run: RunResult, ax: Axes | None = None, bin_seconds: float = 0.5) -> Axes:
    """Messages scheduled, sent and delivered per second, in bins of ``bin_seconds``."""
    ax = _axes(ax)
    span = max(run.end, bin_seconds)
    bins = max(1, math.ceil(span / bin_seconds))
    series: dict[str, list[float]] = {
        "scheduled": [r.scheduled for r in run.records],
        "sent": [r.sent for r in run.records if not math.isnan(r.sent)],
        "delivered": [r.delivered for r in run.records if not math.isnan(r.delivered)],
    }
    xs = [(i + 0.5) * bin_seconds for i in range(bins)]
    for name, times in series.items():
        counts: list[Any] = [0] * bins
        for t in times:
            counts[min(bins - 1, max(0, int(t / bin_seconds)))] += 1
        ax.step(xs, [c / bin_seconds for c in counts], where="mid", label=name)
    shade_faults(run, ax)
    ax.set_xlabel("time (s after start)")
    ax.set_ylabel("messages per second")
    ax.set_title(f"throughput: {run.label or run.run_id}")
    ax.legend(loc="upper right", fontsize="small")
    return ax
