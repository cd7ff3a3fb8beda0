"""What a ``MIMCUser`` user gets: burst rate to the last delivery, latency at a fixed rate from
the scheduled send time, and the receiver's memory, each next to a raw websockets echo.

Run: ``python bench/client_bench.py`` (a few minutes; ``--quick`` for a smoke run).

The server is ``LocalServer`` in a child process with a fresh SQLite file. alice and bob are two
real ``MIMCUser`` facades (reactive streams, ack book, dedup...) in this process, on one loop.
Each round runs, one after the other:

* **echo burst**, then **burst store=true** and **burst store=false**: N 200-byte messages sent
  at once (alice calls ``send_message`` N times); the run ends when bob's ``p2p_messages`` has
  emitted the **last** of them (the time to alice's last ack is reported next to it). The echo
  sends N messages at once on one connection and ends at the last echo.
* **echo fixed rate**, then **fixed store=true** and **fixed store=false**: one message every
  ``1/--rate`` s for ``--rate-seconds``; each latency (send->ack, send->delivery; the echo's
  round trip) is measured from the message's **scheduled** send time, so a send that runs late
  counts its lateness (no coordinated omission). Goals: delivery p99 <= 2x the echo's p99,
  p99.9 < 3x; CPU per message within 3x of the burst's.

Completion is awaited on futures resolved by the subscribers: nothing polls. CPU microseconds
per message are given for ``client`` (this process: alice and bob) and ``server`` (the child).

Then, once, **memory**: bob alone in a child process (``--receiver``) logs in to the same kind of
server over websockets and receives ``--messages`` P2P messages (store=false) that alice sends
from this process with ``--window`` unacked; bob reports his RSS (after a GC) at checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil  # type: ignore[import-untyped]
from _baseline import echo_burst, echo_fixed_rate
from _common import (
    Child,
    CpuMeter,
    MimcServer,
    Run,
    add_common_options,
    alternate,
    latency_spread,
    machine_line,
    spread,
    start_echo_server,
    start_mimc_server,
    summarize,
    summary_row,
)

from mimc_rx import AccountTokenFetcher, MIMCUser
from mimc_rx.server import DEMO_APP

PAYLOAD = b"x" * 200
SCRIPT = os.path.abspath(__file__)


def _user(account: str, ws_url: str, http_url: str) -> MIMCUser:
    fetch = AccountTokenFetcher(
        http_url,
        app_id=DEMO_APP.app_id,
        app_key=DEMO_APP.app_key,
        app_secret=DEMO_APP.app_secret,
        app_account=account,
    )
    return MIMCUser(
        account,
        app_id=DEMO_APP.app_id,
        token_fetcher=fetch,
        url=ws_url,
        resource=f"bench-{account}",
    )


class Watch:
    """alice's acks and bob's deliveries of the current run, against each packet's scheduled
    send time; ``complete`` resolves when the n-th delivery and the n-th ack are both in."""

    def __init__(self, alice: MIMCUser, bob: MIMCUser) -> None:
        self.scheduled: dict[str, float] = {}
        self.n = 0
        self.acks = self.deliveries = self.errors = 0
        self.ack_ms: list[float] = []
        self.delivery_ms: list[float] = []
        self.last_ack = self.last_delivery = 0.0
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.window: asyncio.Semaphore | None = None
        clock = time.perf_counter

        def on_ack(ack: Any) -> None:
            now = clock()
            self.acks += 1
            self.last_ack = now
            if not ack.ok:
                self.errors += 1
            if self.window is not None:
                self.window.release()
            due = self.scheduled.get(ack.packet_id)
            if due is not None:
                self.ack_ms.append((now - due) * 1000)
            self._check()

        def on_message(message: Any) -> None:
            now = clock()
            self.deliveries += 1
            self.last_delivery = now
            due = self.scheduled.get(message.packet_id)
            if due is not None:
                self.delivery_ms.append((now - due) * 1000)
            self._check()

        self._subs = [
            alice.server_acks.subscribe(on_ack),
            bob.p2p_messages.subscribe(on_message),
        ]

    def _check(self) -> None:
        if self.acks >= self.n and self.deliveries >= self.n and not self.complete.done():
            self.complete.set_result(None)

    def arm(self, n: int) -> None:
        self.scheduled.clear()
        self.n = n
        self.acks = self.deliveries = self.errors = 0
        self.ack_ms, self.delivery_ms = [], []
        self.complete = asyncio.get_running_loop().create_future()

    async def finish(self, label: str, start: float, cpu: CpuMeter) -> Run:
        try:
            await asyncio.wait_for(self.complete, 120)
        except TimeoutError:
            raise SystemExit(
                f"{label}: {self.acks}/{self.n} acks, {self.deliveries}/{self.n} deliveries"
            ) from None
        used = cpu.used()
        if self.errors:
            raise SystemExit(f"{label}: the server refused {self.errors} messages")
        return Run(
            label,
            self.deliveries,
            max(self.last_ack, self.last_delivery) - start,
            used,
            {"ack": self.ack_ms, "delivery": self.delivery_ms},
            {
                "acks": self.acks,
                "to last ack s": self.last_ack - start,
                "to last delivery s": self.last_delivery - start,
            },
        )

    def close(self) -> None:
        for sub in self._subs:
            sub.dispose()


async def _burst(watch: Watch, alice: MIMCUser, server: Child, n: int, store: bool) -> Run:
    watch.arm(n)
    cpu = CpuMeter({"server": server})
    start = time.perf_counter()
    for _ in range(n):
        watch.scheduled[alice.send_message("bob", PAYLOAD, is_store=store)] = start
    return await watch.finish(f"burst store={str(store).lower()}", start, cpu)


async def _fixed(
    watch: Watch, alice: MIMCUser, server: Child, rate: float, seconds: float, store: bool
) -> Run:
    n = max(1, int(rate * seconds))
    watch.arm(n)
    cpu = CpuMeter({"server": server})
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        watch.scheduled[alice.send_message("bob", PAYLOAD, is_store=store)] = due
    return await watch.finish(f"fixed {rate:g}/s store={str(store).lower()}", start, cpu)


# --- memory: bob in a child process ---------------------------------------------------------


async def _receiver(ws_url: str, http_url: str, total: int) -> None:
    """The child: log bob in, count deliveries, print RSS at checkpoints, exit at ``total``."""
    bob = _user("bob", ws_url, http_url)
    proc = psutil.Process()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    checkpoints = sorted({total // 100, total // 10, total // 2, total} - {0})
    received = 0

    def report(label: str) -> None:
        gc.collect()
        rss = proc.memory_info().rss / 2**20
        print(f"{label} {received} {rss:.2f} {time.process_time():.3f}", flush=True)

    def on_message(_message: object) -> None:
        nonlocal received
        received += 1
        if received == checkpoints[0]:
            report("at")
            checkpoints.pop(0)
            if not checkpoints and not done.done():
                done.set_result(None)

    bob.p2p_messages.subscribe(on_message)
    assert (await bob.login()).online
    report("login")
    await done
    await bob.logout()


async def _memory(server: MimcServer, args: argparse.Namespace) -> list[str]:
    """alice sends ``--messages`` to bob (a child process); bob's RSS at his checkpoints."""
    ws_url, http_url = server.ws_url, server.http_url
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "--receiver",
        ws_url,
        http_url,
        str(args.messages),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    rows: list[str] = []

    def row(line: bytes) -> tuple[int, float, float]:
        _, count, rss, cpu = line.split()
        return int(count), float(rss), float(cpu)

    _, login_rss, login_cpu = row(await child.stdout.readline())
    rows.append(f"    after login           RSS {login_rss:7.1f} MiB")
    alice = _user("alice", ws_url, http_url)
    assert (await alice.login()).online
    window = asyncio.Semaphore(args.window)
    subscription = alice.server_acks.subscribe(lambda _ack: window.release())
    start = time.perf_counter()

    async def send() -> None:
        for _ in range(args.messages):
            await window.acquire()
            alice.send_message("bob", PAYLOAD, is_store=False)

    sender = asyncio.create_task(send())
    first_rss = 0.0
    count = 0
    while count < args.messages:
        line = await asyncio.wait_for(child.stdout.readline(), 300)
        if not line:
            raise SystemExit("the receiver ended early")
        count, rss, cpu = row(line)
        first_rss = first_rss or rss
        rows.append(
            f"    after {count:>9,} msgs  RSS {rss:7.1f} MiB  (+{rss - login_rss:5.1f} since login,"
            f" +{rss - first_rss:5.1f} since the first checkpoint)"
        )
    elapsed = time.perf_counter() - start
    await sender
    subscription.dispose()
    await alice.logout()
    await child.wait()
    rows.append(
        f"    {args.messages:,} messages in {elapsed:.1f} s ({args.messages / elapsed:,.0f} msg/s);"
        f" bob's CPU {(cpu - login_cpu) / args.messages * 1e6:.1f} us/msg"
    )
    return rows


def _points(runs: list[Run], kind: str, point: float) -> list[float]:
    return [latency_spread([r], kind, point).median for r in runs]


# --- main -----------------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    print(
        f"client bench: bursts of {args.burst:,}, fixed {args.rate:g}/s for "
        f"{args.rate_seconds:g} s, {args.rounds} rounds; memory over {args.messages:,} messages"
    )
    print(machine_line(args))
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_mimc_server(os.path.join(tmp, "bench.db")) as server,
        start_echo_server() as echo,
    ):
        alice = _user("alice", server.ws_url, server.http_url)
        bob = _user("bob", server.ws_url, server.http_url)
        assert (await alice.login()).online
        assert (await bob.login()).online
        watch = Watch(alice, bob)
        await _burst(watch, alice, server, min(200, args.burst), True)  # warm-up, not counted

        def burst(store: bool) -> Callable[[], Awaitable[Run]]:
            return lambda: _burst(watch, alice, server, args.burst, store)

        def fixed(store: bool) -> Callable[[], Awaitable[Run]]:
            return lambda: _fixed(watch, alice, server, args.rate, args.rate_seconds, store)

        results = await alternate(
            args.rounds,
            [
                ("echo burst", lambda: echo_burst(echo, args.burst, label="echo burst")),
                ("burst stored", burst(True)),
                ("burst volatile", burst(False)),
                ("echo fixed", lambda: echo_fixed_rate(echo, args.rate, args.rate_seconds)),
                ("fixed stored", fixed(True)),
                ("fixed volatile", fixed(False)),
            ],
        )
        watch.close()
        await alice.logout()
        await bob.logout()
        memory = await _memory(server, args) if args.messages else []

    print(f"summary of {args.rounds} alternated rounds (ours / echo, per round):")
    print("  burst, until the last delivery and the last ack:")
    summarize(results, "echo burst", ["burst stored", "burst volatile"])
    for name in ("burst stored", "burst volatile"):
        runs = results[name]
        last_ack = spread([r.notes["to last ack s"] for r in runs]).show(".3f")
        last_delivery = spread([r.notes["to last delivery s"] for r in runs]).show(".3f")
        print(f"  {runs[0].label}: last ack {last_ack} s, last delivery {last_delivery} s")
    echo_runs = results["echo fixed"]
    print("  fixed rate, latency (ms) from the scheduled send time:")
    for point in (50, 99, 99.9):
        print(
            summary_row(
                f"{echo_runs[0].label} rtt p{point:g}",
                _points(echo_runs, "rtt", point),
                spec=".2f",
            )
        )
    for name in ("fixed stored", "fixed volatile"):
        runs = results[name]
        for kind in ("ack", "delivery"):
            for point in (50, 99, 99.9):
                print(
                    summary_row(
                        f"{runs[0].label} {kind} p{point:g}",
                        _points(runs, kind, point),
                        _points(echo_runs, "rtt", point),
                        spec=".2f",
                    )
                )
    print("  fixed rate, CPU us/msg (ratio to the echo at this rate; to our burst, same store):")
    for name, burst_name in (
        ("fixed stored", "burst stored"),
        ("fixed volatile", "burst volatile"),
    ):
        runs, bursts = results[name], results[burst_name]
        for proc in ("client", "server"):
            low = [r.cpu_us(proc) for r in runs]
            to_burst = spread([x / b.cpu_us(proc) for x, b in zip(low, bursts, strict=True)])
            print(
                summary_row(
                    f"{runs[0].label} {proc}", low, [r.cpu_us(proc) for r in echo_runs], spec=".1f"
                )
                + f"   {to_burst.show('.1f')}x burst"
            )
    if memory:
        print("  memory of the receiving client (bob alone in a process, through the server):")
        for line in memory:
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=5000, help="messages in each burst")
    parser.add_argument("--rate", type=float, default=500, help="msg/s of the fixed-rate runs")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="messages of the memory run (0 skips it)"
    )
    parser.add_argument("--window", type=int, default=1000, help="unacked sends (memory run)")
    parser.add_argument("--receiver", nargs=3, help=argparse.SUPPRESS)
    add_common_options(parser)
    args = parser.parse_args()
    if args.receiver:
        ws_url, http_url, total = args.receiver
        asyncio.run(_receiver(ws_url, http_url, int(total)))
        return
    if args.quick:
        args.burst, args.rate, args.rate_seconds, args.rounds = 200, 200, 0.5, 2
        args.messages = min(args.messages, 2000)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
