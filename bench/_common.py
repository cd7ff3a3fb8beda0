"""What the bench scripts share: child servers, per-process CPU, alternated rounds, medians.

Every figure a bench prints is the **median of several rounds with the range (min-max)**; a
round runs the raw websockets echo baseline and our scenarios one after the other, so a busy
machine slows both and the per-round ratio stays meaningful. CPU time is counted per process:
this process from ``time.process_time()``, and each child server reports its own
``time.process_time()`` when asked over a pipe, so "server us/msg" is the server's own CPU,
not a share of the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil  # type: ignore[import-untyped]

__all__ = [
    "BENCH_DIR",
    "Child",
    "CpuMeter",
    "EchoServer",
    "MimcServer",
    "Run",
    "Spread",
    "add_common_options",
    "alternate",
    "answer_cpu_queries",
    "latency_spread",
    "machine_line",
    "percentiles",
    "self_cpu",
    "spread",
    "start_echo_server",
    "start_mimc_server",
    "summarize",
    "summary_row",
]

BENCH_DIR = Path(__file__).resolve().parent


# --- statistics ---------------------------------------------------------------------------


def percentiles(samples: Sequence[float], points: Iterable[float] = (50, 99)) -> list[float]:
    """Nearest-rank percentiles of ``samples``; zeros when there are none."""
    points = list(points)
    if not samples:
        return [0.0 for _ in points]
    ordered = sorted(samples)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, math.ceil(p * n / 100 - 1e-9) - 1))] for p in points]


@dataclass(frozen=True)
class Spread:
    """The median of some rounds' values and their range."""

    median: float
    low: float
    high: float
    rounds: int

    def show(self, spec: str = ",.0f", unit: str = "") -> str:
        """``median (low-high)unit``, e.g. ``12,300 (11,800-13,000) msg/s``."""
        u = f" {unit}" if unit else ""
        return f"{self.median:{spec}}{u} ({self.low:{spec}}-{self.high:{spec}})"


def spread(values: Sequence[float]) -> Spread:
    """Median and range of ``values`` (all zeros when empty)."""
    if not values:
        return Spread(0.0, 0.0, 0.0, 0)
    return Spread(statistics.median(values), min(values), max(values), len(values))


# --- CPU per process ----------------------------------------------------------------------


def self_cpu() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    return time.process_time()


class CpuMeter:
    """CPU seconds used since construction by this process and by named child processes."""

    def __init__(self, children: dict[str, Child]) -> None:
        self._children = children
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: child.cpu_seconds() for name, child in self._children.items()}
        now["client"] = self_cpu()
        return now

    def used(self) -> dict[str, float]:
        end = self._now()
        return {name: end[name] - self._start[name] for name in end}


@dataclass
class Run:
    """One measured run: what it counted, for how long, and each process's CPU."""

    label: str
    messages: int  # what the rate counts: deliveries for ours, echoes for the baseline
    seconds: float  # start to the last delivery (or echo)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the run
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)  # acks, ack_seconds, errors...

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def cpu_us(self, process: str) -> float:
        """CPU microseconds per counted message in ``process``."""
        return self.cpu.get(process, 0.0) / self.messages * 1e6 if self.messages else 0.0

    def line(self) -> str:
        cpu = "  ".join(f"{p} {self.cpu_us(p):5.1f}" for p in sorted(self.cpu))
        extra = "".join(
            f"  {k} {v:,.0f}" if float(v).is_integer() else f"  {k} {v:.3f}"
            for k, v in self.notes.items()
        )
        lat = "".join(
            f"  {name} p50/p99 {p50:.2f}/{p99:.2f} ms"
            for name, samples in self.latencies_ms.items()
            for p50, p99 in [percentiles(samples, (50, 99))]
        )
        return (
            f"{self.label:<28}{self.rate:10,.0f} msg/s  {self.messages:>8,} msgs in "
            f"{self.seconds:6.3f} s  CPU us/msg: {cpu}{lat}{extra}"
        )


# --- rounds -------------------------------------------------------------------------------


async def alternate(
    rounds: int,
    steps: Sequence[tuple[str, Callable[[], Awaitable[Run]]]],
    *,
    quiet: bool = False,
) -> dict[str, list[Run]]:
    """Run ``steps`` in order, ``rounds`` times (baseline, ours, baseline, ours...); print each."""
    results: dict[str, list[Run]] = {name: [] for name, _ in steps}
    for r in range(rounds):
        for name, step in steps:
            run = await step()
            results[name].append(run)
            if not quiet:
                print(f"  round {r + 1}/{rounds}  {run.line()}", flush=True)
    return results


def summary_row(
    name: str,
    ours: Sequence[float],
    base: Sequence[float] | None = None,
    *,
    spec: str = ",.0f",
    unit: str = "",
    inverse: bool = False,
) -> str:
    """``name  median (range)  ratio median (range)``: ratio per round, ours / base (or base /
    ours with ``inverse``, for times where lower is better)."""
    text = f"  {name:<44}{spread(ours).show(spec, unit):>34}"
    if base is not None:
        ratios = [
            (b / o if inverse else o / b) if (o if inverse else b) else 0.0
            for o, b in zip(ours, base, strict=True)
        ]
        text += f"   {spread(ratios).show('.2f')}x echo"
    return text


def latency_spread(runs: Sequence[Run], kind: str, point: float) -> Spread:
    """The ``point`` percentile of each run's ``kind`` latencies: median and range over runs."""
    return spread([percentiles(r.latencies_ms[kind], (point,))[0] for r in runs])


def summarize(
    results: dict[str, list[Run]], base: str, names: Sequence[str], unit: str = "msg/s"
) -> None:
    """Rate and CPU us/msg of each process for ``names``, each with its per-round ratio to the
    ``base`` runs of the same rounds."""
    baseline = results[base]
    print(f"  {'':<44}{'median (min-max)':>34}   ratio to echo, per round")
    print(summary_row(f"{baseline[0].label} {unit}", [r.rate for r in baseline]))
    processes = sorted(baseline[0].cpu)
    for proc in processes:
        print(summary_row(f"  CPU us/msg {proc}", [r.cpu_us(proc) for r in baseline], spec=".1f"))
    for name in names:
        runs = results[name]
        print(
            summary_row(
                f"{runs[0].label} {unit}", [r.rate for r in runs], [r.rate for r in baseline]
            )
        )
        for proc in processes:
            print(
                summary_row(
                    f"  CPU us/msg {proc}",
                    [r.cpu_us(proc) for r in runs],
                    [r.cpu_us(proc) for r in baseline],
                    spec=".1f",
                )
            )


# --- child processes ----------------------------------------------------------------------


class Child:
    """A bench server in a child process, which prints a ready line, then answers each ``cpu``
    line on its stdin with its own ``time.process_time()`` (all its threads, ns resolution)."""

    def __init__(self, argv: list[str], ready: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        self.ready_line = self.proc.stdout.readline()
        if ready not in self.ready_line:
            self.stop()
            raise SystemExit(f"child did not start: {argv} said {self.ready_line!r}")
        self._ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def rss_mib(self) -> float:
        return float(self._ps.memory_info().rss) / 2**20

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the child exits at EOF
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answer_cpu_queries() -> None:
    """In a child: a daemon thread answers ``cpu`` lines; EOF on stdin ends the process."""

    def serve() -> None:
        for _ in sys.stdin:
            print(repr(time.process_time()), flush=True)
        os._exit(0)

    threading.Thread(target=serve, daemon=True, name="cpu-answers").start()


class MimcServer(Child):
    """The MIMC ``LocalServer`` (what ``python -m mimc_rx serve`` runs) in a child process with
    its own SQLite file; ``python bench/_common.py --serve-mimc DB`` is the child."""

    def __init__(self, db: str) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-mimc", db]
        super().__init__(argv, "ready")
        _, self.ws_url, self.http_url = self.ready_line.split()


async def _serve_mimc(db: str) -> None:
    from mimc_rx.server import LocalServer, ServerConfig

    logging.basicConfig(level=logging.WARNING)
    server = LocalServer(db=db, host="127.0.0.1", port=0, config=ServerConfig())
    await server.start()
    answer_cpu_queries()
    print(f"ready {server.ws_url} {server.http_url}", flush=True)
    await asyncio.Future()


class EchoServer(Child):
    """The raw websockets echo server of ``_baseline.py`` (compression off)."""

    def __init__(self) -> None:
        super().__init__([sys.executable, str(BENCH_DIR / "_baseline.py"), "--serve"], "echo")
        self.url = self.ready_line.split()[-1]


def start_mimc_server(db: str) -> MimcServer:
    return MimcServer(db)


def start_echo_server() -> EchoServer:
    return EchoServer()


# --- command line -------------------------------------------------------------------------


def add_common_options(parser: argparse.ArgumentParser, rounds: int = 5) -> None:
    parser.add_argument("--rounds", type=int, default=rounds, help="alternated rounds")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, 2 rounds, a few seconds"
    )


def machine_line(args: argparse.Namespace | None = None) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (
        f"python {platform.python_version()}  {os.cpu_count()} CPUs  load {load}  "
        f"(medians of alternated rounds, range in brackets)"
    )
    if args is not None and getattr(args, "quick", False):
        text += "  --quick: smoke sizes, figures mean nothing"
    return text


if __name__ == "__main__" and sys.argv[1:2] == ["--serve-mimc"]:
    if os.environ.get("MIMC_BENCH_UVLOOP"):  # the server on uvloop (pip install uvloop; no gain)
        import uvloop

        uvloop.run(_serve_mimc(sys.argv[2]))
    else:
        asyncio.run(_serve_mimc(sys.argv[2]))
