"""The raw websockets echo baseline that every mimc-rx benchmark prints its figures next to.

A plain ``websockets`` echo server runs in a child process (so it has a core of its own, like
the MIMC server in the benchmarks), and a pipelined client in this process sends binary
messages of a given size, keeping ``window`` of them in flight, for a bounded time. The figure
is echoed messages per second: the most any protocol on top of websockets could reach on this
machine and this Python.

Use from another bench script::

    from _baseline import echo_baseline          # bench/ is on sys.path when run as a script
    result = echo_baseline(duration=2.0, size=200, window=64)
    print(result.line())

or run ``python bench/_baseline.py`` on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["EchoResult", "echo_baseline", "echo_baseline_async", "percentiles"]


@dataclass(frozen=True)
class EchoResult:
    """Messages per second and round-trip percentiles (ms) of one echo run."""

    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"raw websockets echo   {self.rate:10,.0f} msg/s   "
            f"rtt p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms   ({self.messages:,} msgs)"
        )


def percentiles(samples: list[float], points: tuple[float, ...] = (50, 90, 99)) -> list[float]:
    """Nearest-rank percentiles of ``samples`` (plus nothing else); zeros when empty."""
    if not samples:
        return [0.0 for _ in points]
    ordered = sorted(samples)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, round(p / 100 * n + 0.5) - 1))] for p in points]


async def _serve(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(bound, flush=True)
        await asyncio.Future()


def _start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def echo_baseline_async(
    duration: float = 2.0, size: int = 200, window: int = 64
) -> EchoResult:
    """Run the echo baseline from a running loop (the server is a child process)."""
    from websockets.asyncio.client import connect

    proc, port = _start_server()
    try:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as ws:
            payload = b"x" * size
            sent: list[float] = []
            rtts: list[float] = []
            received = 0
            start = time.perf_counter()
            deadline = start + duration
            inflight = asyncio.Semaphore(window)
            done = False

            async def reader() -> None:
                nonlocal received
                async for _ in ws:
                    rtts.append(time.perf_counter() - sent[received])
                    received += 1
                    inflight.release()
                    if done and received == len(sent):
                        return

            task = asyncio.create_task(reader())
            while time.perf_counter() < deadline:
                await inflight.acquire()
                sent.append(time.perf_counter())
                await ws.send(payload)
            done = True
            if received < len(sent):
                await asyncio.wait_for(task, timeout=30)
            elapsed = time.perf_counter() - start
            task.cancel()
            p50, p99 = percentiles([r * 1000 for r in rtts], (50, 99))
            return EchoResult(received, elapsed, p50, p99)
    finally:
        proc.terminate()
        proc.wait()


def echo_baseline(duration: float = 2.0, size: int = 200, window: int = 64) -> EchoResult:
    """Run the echo baseline from synchronous code (starts its own event loop)."""
    return asyncio.run(echo_baseline_async(duration, size, window))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.port))
        return
    print(echo_baseline(args.duration, args.size, args.window).line())


if __name__ == "__main__":
    main()
