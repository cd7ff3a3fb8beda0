"""The raw websockets echo baseline that every mimc-rx benchmark prints its figures next to.

The fastest honest echo we know how to write on this machine and this Python: a ``websockets``
echo server in a child process (its own core and its own CPU account, like the MIMC server in
the benchmarks), ``compression=None`` on both sides (the MIMC path has no permessage-deflate;
the library's default would cost ~35% more CPU and flatter our ratio), and the **same shape** as
the scenario it is compared with:

* :func:`echo_burst`: N binary messages sent at once (``window=0``), or with ``window`` in flight
  per connection over ``connections`` connections; the run ends at the last echo.
* :func:`echo_fixed_rate`: one message every ``1/rate`` s; each round trip is measured from the
  message's **scheduled** send time, so a late send counts against the echo as it would against us.

Use from another bench script (bench/ is on ``sys.path`` when a script in it runs)::

    with start_echo_server() as echo:
        run = await echo_burst(echo, messages=5000, size=200)

or ``python bench/_baseline.py`` on its own (both shapes, a few rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import (
    CpuMeter,
    EchoServer,
    Run,
    add_common_options,
    alternate,
    answer_cpu_queries,
    machine_line,
    start_echo_server,
    summary_row,
)

__all__ = ["echo_burst", "echo_fixed_rate"]


async def _serve() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        answer_cpu_queries()
        print(f"echo ready ws://127.0.0.1:{port}/", flush=True)
        await asyncio.Future()


async def echo_burst(
    server: EchoServer,
    messages: int,
    size: int = 200,
    *,
    window: int = 0,
    connections: int = 1,
    label: str = "raw websockets echo",
) -> Run:
    """``messages`` per connection, all at once (``window=0``) or ``window`` in flight."""
    from websockets.asyncio.client import connect

    url = server.url
    payload = b"x" * size
    clock = time.perf_counter
    conns = [await connect(url, compression=None, max_size=None) for _ in range(connections)]
    try:
        cpu = CpuMeter({"server": server})
        start = clock()

        async def one(ws: object) -> None:
            gate = asyncio.Semaphore(window) if window else None

            async def reader() -> None:
                received = 0
                async for _ in ws:  # type: ignore[attr-defined]
                    received += 1
                    if gate is not None:
                        gate.release()
                    if received == messages:
                        return

            task = asyncio.create_task(reader())
            for _ in range(messages):
                if gate is not None:
                    await gate.acquire()
                await ws.send(payload)  # type: ignore[attr-defined]
            await task

        await asyncio.wait_for(asyncio.gather(*(one(ws) for ws in conns)), 120)
        seconds = clock() - start
        used = cpu.used()
    finally:
        for ws in conns:
            await ws.close()
    return Run(label, messages * connections, seconds, used)


async def echo_fixed_rate(
    server: EchoServer, rate: float, seconds: float, size: int = 200, *, label: str = ""
) -> Run:
    """One message every ``1/rate`` s for ``seconds``; RTT from each scheduled send time."""
    from websockets.asyncio.client import connect

    url = server.url
    payload = b"x" * size
    clock = time.perf_counter
    n = max(1, int(rate * seconds))
    scheduled = [0.0] * n
    rtts: list[float] = []
    async with connect(url, compression=None, max_size=None) as ws:
        cpu = CpuMeter({"server": server})
        start = clock()

        async def reader() -> None:
            async for _ in ws:
                rtts.append((clock() - scheduled[len(rtts)]) * 1000)
                if len(rtts) == n:
                    return

        task = asyncio.create_task(reader())
        for i in range(n):
            due = start + i / rate
            scheduled[i] = due
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(payload)
        await asyncio.wait_for(task, 60)
        elapsed = clock() - start
        used = cpu.used()
    return Run(label or f"echo fixed {rate:g}/s", n, elapsed, used, {"rtt": rtts})


async def _main(args: argparse.Namespace) -> None:
    print(machine_line(args))
    with start_echo_server() as echo:
        results = await alternate(
            args.rounds,
            [
                ("burst", lambda: echo_burst(echo, args.messages, args.size, label="echo burst")),
                (
                    "windowed",
                    lambda: echo_burst(
                        echo, args.messages, args.size, window=64, label="echo window 64"
                    ),
                ),
            ],
        )
    for name, runs in results.items():
        print(summary_row(f"{name} msg/s", [r.rate for r in runs]))
        for proc in ("client", "server"):
            print(
                summary_row(f"{name} CPU us/msg {proc}", [r.cpu_us(proc) for r in runs], spec=".1f")
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=200)
    add_common_options(parser)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    if args.quick:
        args.messages, args.rounds = 200, 2
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
