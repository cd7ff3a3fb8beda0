"""Client-side throughput, ack latency and memory of ``MIMCUser``, next to a raw websockets echo.

Run: ``python bench/client_bench.py`` (about a minute; ``--help`` for sizes).

Scenarios, all printed next to the same run's raw websockets echo baseline (``_baseline.py``):

* **burst**: alice sends N P2P messages (200-byte payloads) at once to bob; we time every
  packet from ``send_message`` to its ``ServerAck`` (send->ack) and to its arrival on bob's
  ``p2p_messages`` (send->delivery). Throughput is N over the time until the last ack. Once with
  ``is_store=False`` and once with ``is_store=True`` (SQLite commit before ack).
* **fixed rate**: alice sends at R messages/s for a few seconds; the same two latencies.
* **memory**: bob's process RSS while a million P2P messages pass through the whole client stack
  (RC4 + protobuf decode in ``ClientSession``, dedup window, facade dispatch to a subscriber).
  Frames come from a real ``ServerSession`` in memory (no server process, to keep it quick);
  RSS must level off, because the dedup window and ack cache are bounded.

The server is ``python -m mimc_rx serve`` in a child process with a fresh SQLite file, so it has
its own core; clients run in this process on one event loop.

Each line also gives the CPU time per message of this process (both clients) and of the server
process. On a shared machine msg/s moves a lot between runs; CPU per message is the steadier
figure when comparing two versions of the code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _baseline

from _baseline import echo_baseline_async, percentiles

from mimc_rx import AccountTokenFetcher, MIMCUser
from mimc_rx.protocol.events import Delivery, DeliveryKind, PacketId, Peer
from mimc_rx.server import DEMO_APP
from mimc_rx.testing.loopback import LoopbackNet

PAYLOAD = b"x" * 200


def _start_server(db: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimc_rx",
            "serve",
            "--port",
            "0",
            "--db",
            db,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    parts = line.split()
    ws_url = next(p for p in parts if p.startswith("ws://"))
    http_url = next(p for p in parts if p.startswith("http://")).removesuffix("/api")
    return proc, ws_url, http_url


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
        ack_cache_size=1 << 20,
    )


class _Timings:
    """send / ack / delivery times per packet id."""

    def __init__(self, alice: MIMCUser, bob: MIMCUser) -> None:
        self.sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.delivered: dict[str, float] = {}
        self.errors = 0
        clock = time.perf_counter

        def on_ack(ack: Any) -> None:
            self.acked[ack.packet_id] = clock()
            if not ack.ok:
                self.errors += 1

        self._subs = [
            alice.server_acks.subscribe(on_ack),
            bob.p2p_messages.subscribe(lambda m: self.delivered.__setitem__(m.packet_id, clock())),
        ]

    def close(self) -> None:
        for sub in self._subs:
            sub.dispose()

    def latencies(self) -> tuple[list[float], list[float]]:
        ack = [(self.acked[p] - t) * 1000 for p, t in self.sent.items() if p in self.acked]
        dlv = [(self.delivered[p] - t) * 1000 for p, t in self.sent.items() if p in self.delivered]
        return ack, dlv


async def _wait(cond: Callable[[], bool], limit: float) -> None:
    deadline = time.perf_counter() + limit
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark did not complete in time")
        await asyncio.sleep(0.001)


class _Cpu:
    """CPU seconds used by this process (the clients) and by the server process since start."""

    def __init__(self, server: psutil.Process) -> None:
        self._server = server
        self._start = (time.process_time(), self._server_seconds())

    def _server_seconds(self) -> float:
        times = self._server.cpu_times()
        return float(times.user + times.system)

    def per_message(self, n: int) -> str:
        client = (time.process_time() - self._start[0]) / n * 1e6
        server = (self._server_seconds() - self._start[1]) / n * 1e6
        return f"   CPU/msg client {client:5.0f} us server {server:5.0f} us"


def _line(label: str, n: int, seconds: float, ack: list[float], dlv: list[float]) -> str:
    a50, a90, a99 = percentiles(ack, (50, 90, 99))
    d50, d90, d99 = percentiles(dlv, (50, 90, 99))
    rate = n / seconds if seconds else 0.0
    return (
        f"{label:<22}{rate:10,.0f} msg/s   "
        f"send->ack p50/p90/p99 {a50:6.2f}/{a90:6.2f}/{a99:7.2f} ms"
        f"   send->delivery p50/p90/p99 {d50:6.2f}/{d90:6.2f}/{d99:7.2f} ms   ({n:,} msgs)"
    )


async def _burst(
    alice: MIMCUser, bob: MIMCUser, n: int, store: bool, server: psutil.Process
) -> str:
    t = _Timings(alice, bob)
    cpu = _Cpu(server)
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        pid = alice.send_message("bob", PAYLOAD, is_store=store)
        t.sent[pid] = clock()
    await _wait(lambda: len(t.acked) >= n, 120)
    elapsed = max(t.acked.values()) - start
    await _wait(lambda: len(t.delivered) >= n, 120)
    used = cpu.per_message(n)
    t.close()
    ack, dlv = t.latencies()
    label = f"burst store={'yes' if store else 'no'}"
    errors = f"  ERRORS {t.errors}" if t.errors else ""
    return _line(label, n, elapsed, ack, dlv) + used + errors


async def _fixed_rate(
    alice: MIMCUser, bob: MIMCUser, rate: int, seconds: float, server: psutil.Process
) -> str:
    t = _Timings(alice, bob)
    cpu = _Cpu(server)
    clock = time.perf_counter
    n = int(rate * seconds)
    start = clock()
    for i in range(n):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        pid = alice.send_message("bob", PAYLOAD, is_store=False)
        t.sent[pid] = clock()
    await _wait(lambda: len(t.acked) >= n and len(t.delivered) >= n, 60)
    elapsed = clock() - start
    used = cpu.per_message(n)
    t.close()
    ack, dlv = t.latencies()
    return _line(f"fixed {rate}/s", n, elapsed, ack, dlv) + used


async def _memory(total: int, batch: int) -> list[str]:
    """Feed ``total`` messages through bob's whole client stack; RSS at checkpoints."""
    net = LoopbackNet()
    bob = net.user("bob", reconnect=False)
    net.hub.add_account("alice")
    assert (await bob.login()).online
    received = 0

    def count(_message: object) -> None:
        nonlocal received
        received += 1

    bob.p2p_messages.subscribe(count)
    transport = net.transports[-1]
    pair = transport.pair
    server, client = pair.server, pair.client
    sender = Peer(app_id=net.hub.app_id, app_account="alice", resource="r")
    proc = psutil.Process()
    gc.collect()
    rows = [f"  after login              RSS {proc.memory_info().rss / 2**20:7.1f} MiB"]
    checkpoints = {total // 10, total // 2, total}
    seq = 1_000_000
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    fed = 0
    while fed < total:
        items = []
        for _ in range(min(batch, total - fed)):
            seq += 1
            items.append(
                Delivery(
                    kind=DeliveryKind.P2P,
                    packet_id=PacketId(f"p{seq}"),
                    package=net.hub.package,
                    sequence=seq,
                    timestamp=seq,
                    sender=sender,
                    payload=PAYLOAD,
                    to_account="bob",
                )
            )
        server.deliver(items, max_sequence=seq)
        for frame in server.data_to_send():
            client.receive_data(frame, loop.time())
        transport.on_events(client.events_received())
        client.data_to_send()  # the SEQUENCE_ACKs: a server would read them
        fed += len(items)
        if fed in checkpoints:
            gc.collect()
            rows.append(
                f"  after {fed:>9,} messages  RSS {proc.memory_info().rss / 2**20:7.1f} MiB"
                f"   dedup window {len(bob._router.seen):,}   received {received:,}"
            )
    elapsed = time.perf_counter() - start
    rows.append(
        f"  {total:,} messages decoded and dispatched in {elapsed:.1f} s "
        f"({total / elapsed:,.0f} msg/s, server-side encoding included)"
    )
    await bob.logout()
    return rows


async def _main(args: argparse.Namespace) -> None:
    print(f"mimc-rx client benchmark   python {sys.version.split()[0]}   {os.cpu_count()} CPUs")
    base = await echo_baseline_async(duration=args.baseline_seconds, size=200, window=64)
    print(base.line())
    with tempfile.TemporaryDirectory() as tmp:
        proc, ws_url, http_url = _start_server(os.path.join(tmp, "bench.db"))
        try:
            alice, bob = _user("alice", ws_url, http_url), _user("bob", ws_url, http_url)
            assert (await alice.login()).online
            assert (await bob.login()).online
            server = psutil.Process(proc.pid)
            await _burst(alice, bob, 200, False, server)  # warm-up, not printed
            for line in (
                await _burst(alice, bob, args.burst, False, server),
                await _burst(alice, bob, args.burst, True, server),
                await _fixed_rate(alice, bob, args.rate, args.rate_seconds, server),
            ):
                print(line)
            await alice.logout()
            await bob.logout()
        finally:
            proc.terminate()
            proc.wait()
    if args.messages:
        print(f"memory while receiving {args.messages:,} messages (bob, one process):")
        for row in await _memory(args.messages, args.batch):
            print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=5000, help="messages in each burst")
    parser.add_argument("--rate", type=int, default=1000, help="messages/s of the fixed-rate run")
    parser.add_argument("--rate-seconds", type=float, default=3.0)
    parser.add_argument("--baseline-seconds", type=float, default=2.0)
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="messages of the memory run (0 skips it)"
    )
    parser.add_argument("--batch", type=int, default=100, help="messages per COMPOUND (memory)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
