"""How long does turning a million events into a DataFrame take?

Run: ``python bench/frames_bench.py [--events N] [--repeat R]``

Builds N events of each of the widest types (P2PMessage: 12 columns; P2TMessage; ServerAck) with
realistic values (50 senders, a few topics, short UTF-8 payloads, one receive time each), then
times ``mimc_rx.frames.events_to_frame`` R times and prints the best and median wall time, the
best CPU time (steadier when other jobs share the machine) and the rate. The event list and the
receive times are made before the clock starts: the figure is the adapter's cost, which is what
a notebook user waits for after ``await to_frame(...)``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

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


def _time(build: Callable[[], Any], repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each run (CPU time is less disturbed by other jobs)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        build()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def main(argv: Sequence[str] | None = None) -> None:
    """Print the frame-building time for each event type."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n: int = args.events
    received = array("q", range(_BASE_MS * 1000, _BASE_MS * 1000 + n * 150, 150))
    print(f"events_to_frame, {n:,} events, best and median of {args.repeat}")
    for name, make in (("P2PMessage", _p2p), ("P2TMessage", _p2t), ("ServerAck", _acks)):
        events = make(n)
        # The events live for the whole run: freeze them out of the cyclic GC, as a long-lived
        # collector's list would be after a few collections.
        gc.collect()
        gc.freeze()
        frame = events_to_frame(events, received)
        walls, cpus = _time(functools.partial(events_to_frame, events, received), args.repeat)
        best, median = min(walls), statistics.median(walls)
        print(
            f"  {name:<11} {len(frame.columns):>2} columns: best {best:.3f} s, "
            f"median {median:.3f} s, best CPU {min(cpus):.3f} s "
            f"({n / best / 1e6:.2f} M events/s)"
        )
        del events, frame
        gc.unfreeze()


if __name__ == "__main__":
    main()
