"""How long does turning a million events into a DataFrame take, next to a plain pyarrow table?

Run: ``python bench/frames_bench.py [--events N] [--rounds R]`` (``--quick`` for a smoke run).

Builds N events of each of the widest types (P2PMessage: 12 columns; P2TMessage; ServerAck) with
realistic values (50 senders, a few topics, short UTF-8 payloads, one receive time each), then, in
alternated rounds, times the **baseline** and ``mimc_rx.frames.events_to_frame`` on the same list.
The baseline is the least a columnar build costs: one ``pa.array`` per dataclass field (read with
``attrgetter``) plus the receive times, then ``pyarrow.table`` (no categoricals, no decoded text, no
pandas). The event list is made before the clock starts: the figure is the adapter's cost, which is
what a notebook user waits for after ``await to_frame(...)``. Each figure is the median of the
rounds with the range, as wall time, CPU time (this process's ``process_time``, steadier on a shared
box) and CPU nanoseconds per event; the ratio is ours / baseline per round (lower is better).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import gc
import operator
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pyarrow as pa
from _common import Run, add_common_options, alternate, machine_line, self_cpu, spread

from mimc_rx.frames import events_to_frame
from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck

__all__ = ["main"]

_BASE_MS = 1_780_000_000_000


def _p2p(n: int) -> list[P2PMessage]:
    senders = [f"user{i:02d}" for i in range(50)]
    return [
        P2PMessage(
            packet_id=PacketId(f"web{_BASE_MS + i}{i % 1000}"),
            sequence=i + 1,
            timestamp=_BASE_MS + i,
            from_account=senders[i % 50],
            from_resource="resWeb",
            to_account="bob",
            to_resource="",
            payload=f"message {i} ✓".encode(),
        )
        for i in range(n)
    ]


def _p2t(n: int) -> list[P2TMessage]:
    senders = [f"user{i:02d}" for i in range(50)]
    return [
        P2TMessage(
            packet_id=PacketId(f"web{_BASE_MS + i}{i % 1000}"),
            sequence=i + 1,
            timestamp=_BASE_MS + i,
            from_account=senders[i % 50],
            from_resource="resWeb",
            topic_id=9_000_000_000 + i % 4,
            payload=f"group message {i}".encode(),
        )
        for i in range(n)
    ]


def _acks(n: int) -> list[ServerAck]:
    return [
        ServerAck(
            packet_id=PacketId(f"web{_BASE_MS + i}{i % 1000}"),
            sequence=i + 1,
            timestamp=_BASE_MS + i,
        )
        for i in range(n)
    ]


def _baseline(events: Sequence[Any], received: array[int]) -> Any:
    """One pyarrow array per dataclass field (read with ``attrgetter``, the fastest plain way we
    found) and the receive times, as a pyarrow table."""
    n = len(events)
    columns = {
        f.name: pa.array(map(operator.attrgetter(f.name), events), size=n)
        for f in dataclasses.fields(events[0])
    }
    columns["received"] = pa.array(received)
    return pa.table(columns)


def _timed(label: str, build: Callable[[], Any], n: int) -> Run:
    wall, cpu = time.perf_counter(), self_cpu()
    build()
    return Run(label, n, time.perf_counter() - wall, {"client": self_cpu() - cpu})


async def _rounds(
    rounds: int, steps: list[tuple[str, Callable[[], Awaitable[Run]]]]
) -> dict[str, list[Run]]:
    return await alternate(rounds, steps, quiet=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the frame-building time for each event type, next to the pyarrow baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 2000, 2
    n: int = args.events
    received = array("q", range(_BASE_MS * 1000, _BASE_MS * 1000 + n * 150, 150))
    print(f"events_to_frame, {n:,} events, {args.rounds} alternated rounds with the baseline")
    print(machine_line(args))
    print(f"  {'':<34}{'wall s':>26}{'CPU ns/event':>26}   ours / baseline (wall, per round)")
    for name, make in (("P2PMessage", _p2p), ("P2TMessage", _p2t), ("ServerAck", _acks)):
        events = make(n)
        # The events live for the whole run: freeze them out of the cyclic GC, as a long-lived
        # collector's list would be after a few collections.
        gc.collect()
        gc.freeze()
        frame = events_to_frame(events, received)
        columns = len(frame.columns)
        del frame

        async def ours(events: list[Any] = events) -> Run:
            return _timed("ours", functools.partial(events_to_frame, events, received), n)

        async def base(events: list[Any] = events) -> Run:
            return _timed("pyarrow", functools.partial(_baseline, events, received), n)

        results = asyncio.run(_rounds(args.rounds, [("base", base), ("ours", ours)]))
        for label, runs in (
            ("plain pyarrow table", results["base"]),
            (f"events_to_frame, {columns} cols", results["ours"]),
        ):
            ratio = [o.seconds / b.seconds for o, b in zip(runs, results["base"], strict=True)]
            print(
                f"  {name + ' ' + label:<40}"
                + f"{spread([r.seconds for r in runs]).show('.3f'):>20}"
                + f"{spread([r.cpu_us('client') * 1000 for r in runs]).show(',.0f'):>26}"
                + (f"   {spread(ratio).show('.2f')}x" if runs is results["ours"] else "")
            )
        del events
        gc.unfreeze()


if __name__ == "__main__":
    main()
