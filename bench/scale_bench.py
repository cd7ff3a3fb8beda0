"""Stored P2P throughput and delivery p99 with 1, 2 and 3 server processes on PostgreSQL + Redis.

Run: ``python bench/scale_bench.py`` (about two minutes; ``--quick`` for a smoke run).

Every server is ``python -m mimc_rx serve`` itself (:class:`~mimc_rx.testing.ServerProcess`):

* **sqlite x1**: one process on a fresh SQLite file, the embedded default (the baseline);
* **pg xN** for N in ``--nodes`` (1, 2, 3): N processes on one fresh PostgreSQL database and a
  Redis of their own (``serve --storage postgresql://... --broker redis://...``), each on its
  own port.

The engines are private ones started from Debian's packages (``mimc_rx.testing.engines``):
PostgreSQL with ``fsync=off, synchronous_commit=off``, so its commits wait for no disk, as the
SQLite baseline's ``synchronous=NORMAL`` in WAL mode does not either (both survive the death of
the server process, neither a power cut); Redis without persistence.

The load (the same for every configuration): ``--pairs`` sender/receiver pairs, sender *i* on
process *i mod N* and its receiver on the next process, so with N > 1 **every message crosses
processes** (the worst case: through Redis). Each sender sends ``--messages`` 200-byte stored
messages with ``--window`` in flight (a closed loop; the latency counts from each message's
send). The clients are protocol-core ``ClientSession``\\ s in this process (server_bench.py's
``BenchClient``), which decode every delivery and acknowledge it as real clients do. A run ends
at the last delivery; the rate is deliveries per second.

Each round runs every configuration once, in turn (alternated), and the summary gives medians
with the range over rounds: rate, its ratio to the SQLite run of the same round, the delivery
p99, and CPU microseconds per message for each process: every server process, PostgreSQL (the
postmaster and its backends), Redis (its own ``INFO cpu``) and the client. The machine has few
cores and everything runs on it, engines and client included: the rate cannot grow much beyond
what the cores give; the CPU per message says what each process costs, so a per-core figure can
be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
from _common import Run, add_common_options, alternate, machine_line, percentiles, spread
from server_bench import BenchClient, Tally, _pump, _token

from mimc_rx.testing.engines import PostgresEngine, RedisEngine
from mimc_rx.testing.process import ServerCluster, ServerProcess

PAYLOAD = b"x" * 200


def _process_cpu(proc: psutil.Process, with_children: bool = False) -> float:
    """CPU seconds (user + system) of ``proc``, and of its living children with them."""
    procs = [proc, *proc.children(recursive=True)] if with_children else [proc]
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _redis_cpu(engine: RedisEngine) -> float:
    """Redis's own CPU seconds, from ``INFO cpu`` (a raw RESP exchange, no client needed)."""
    with socket.create_connection((engine.host, engine.port), timeout=5.0) as sock:
        sock.sendall(b"INFO cpu\r\n")
        data = b""
        while b"used_cpu_user:" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    fields = dict(
        line.split(":", 1) for line in data.decode().splitlines() if ":" in line and "#" not in line
    )
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


class Setup:
    """One configuration: its server processes, the engines they use, and its logged-in pairs."""

    def __init__(
        self,
        label: str,
        servers: list[ServerProcess],
        *,
        postgres: psutil.Process | None = None,
        redis: RedisEngine | None = None,
    ) -> None:
        self.label = label
        self.servers = servers
        self.postgres = postgres
        self.redis = redis
        self.senders: list[BenchClient] = []
        self.receivers: list[BenchClient] = []

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process of this configuration and of the client."""
        used = {f"node{i}": _process_cpu(psutil.Process(s.pid)) for i, s in enumerate(self.servers)}
        if self.postgres is not None:
            used["postgres"] = _process_cpu(self.postgres, with_children=True)
        if self.redis is not None:
            used["redis"] = _redis_cpu(self.redis)
        used["client"] = time.process_time()
        return used

    async def connect(self, pairs: int) -> None:
        """Log in the pairs: sender i on process i mod N, receiver i on the next one."""
        n = len(self.servers)

        async def client(account: str, node: ServerProcess) -> BenchClient:
            async with httpx.AsyncClient(base_url=node.http_url, timeout=30) as http:
                answer = await _token(http, account)
            bench_client = BenchClient(node.ws_url, account)
            await bench_client.start(answer)
            return bench_client

        self.senders = list(
            await asyncio.gather(*(client(f"s{i}", self.servers[i % n]) for i in range(pairs)))
        )
        self.receivers = list(
            await asyncio.gather(
                *(client(f"r{i}", self.servers[(i + 1) % n]) for i in range(pairs))
            )
        )

    async def run(self, messages: int, window: int) -> Run:
        tally = Tally(messages * len(self.senders), 1)
        clients = self.senders + self.receivers
        for c in clients:
            c.tally = tally
        before = self.cpu()
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _pump(
                    s,
                    messages,
                    window,
                    lambda s=s, i=i: s.session.send_p2p(  # type: ignore[misc]
                        f"r{i}", PAYLOAD, is_store=True, now=time.perf_counter()
                    ),
                )
                for i, s in enumerate(self.senders)
            )
        )
        try:
            await asyncio.wait_for(tally.done, 120)
        except TimeoutError:
            raise SystemExit(
                f"{self.label}: {tally.acks}/{tally.sent} acks and {tally.deliveries}/"
                f"{tally.ok} deliveries after 120 s"
            ) from None
        after = self.cpu()
        seconds = max(tally.last_ack, tally.last_delivery) - start
        for c in clients:
            c.tally, c.window = None, None
        if tally.ok < tally.acks:
            raise SystemExit(f"{self.label}: the server refused {tally.acks - tally.ok} messages")
        return Run(
            self.label,
            tally.deliveries,
            seconds,
            {name: after[name] - before[name] for name in after},
            {"delivery": tally.delivery_ms},
        )

    async def close(self) -> None:
        for c in self.senders + self.receivers:
            await c.close()


def _postmaster(engine: PostgresEngine) -> psutil.Process:
    assert engine.root is not None
    pid = int((engine.root / "data" / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def _report(results: dict[str, list[Run]], names: list[str]) -> None:
    base = results[names[0]]
    print("summary (medians of alternated rounds, range in brackets):")
    for name in names:
        runs = results[name]
        ratios = [r.rate / b.rate for r, b in zip(runs, base, strict=True)]
        p99 = spread([percentiles(r.latencies_ms["delivery"], (99,))[0] for r in runs])
        print(
            f"  {name:<10} {spread([r.rate for r in runs]).show():>26} deliveries/s  "
            f"x{spread(ratios).show('.2f')} of sqlite  delivery p99 {p99.show('.1f')} ms"
        )
        cpu = "  ".join(
            f"{proc} {spread([r.cpu_us(proc) for r in runs]).show('.1f')}"
            for proc in sorted(runs[0].cpu)
        )
        print(f"  {'':<10} CPU us/msg: {cpu}")


async def _main(args: argparse.Namespace) -> None:
    nodes = [int(n) for n in args.nodes.split(",") if n]
    print(
        f"scale bench: {args.pairs} pairs x {args.messages:,} stored messages, window "
        f"{args.window}, processes {nodes} on PostgreSQL + Redis vs one on SQLite, "
        f"{args.rounds} rounds"
    )
    print(machine_line(args))
    quiet = ["--log-level", "WARNING"]
    setups: list[Setup] = []
    started: list[ServerProcess | ServerCluster] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        PostgresEngine(settings={"max_connections": "200"}) as pg,
    ):
        redis_engines: list[RedisEngine] = []
        try:
            sqlite = ServerProcess(Path(tmp) / "bench.db", extra_args=quiet)
            await sqlite.start()
            started.append(sqlite)
            setups.append(Setup("sqlite x1", [sqlite]))
            for n in nodes:
                redis = RedisEngine().start()
                redis_engines.append(redis)
                cluster = ServerCluster(
                    n,
                    storage_url=pg.create_database(),
                    broker_url=redis.url,
                    log_dir=Path(tmp) / f"pg{n}",
                    extra_args=quiet,
                )
                await cluster.start()
                started.append(cluster)
                setups.append(
                    Setup(f"pg x{n}", list(cluster), postgres=_postmaster(pg), redis=redis)
                )
            for setup in setups:
                await setup.connect(args.pairs)

            def step(setup: Setup) -> Callable[[], Awaitable[Run]]:
                return lambda: setup.run(args.messages, args.window)

            results = await alternate(args.rounds, [(s.label, step(s)) for s in setups])
            for setup in setups:
                await setup.close()
        finally:
            for server in started:
                await server.stop()
            for redis in redis_engines:
                redis.cleanup()
    _report(results, [s.label for s in setups])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1500, help="messages per sender")
    parser.add_argument("--pairs", type=int, default=6, help="sender/receiver pairs")
    parser.add_argument("--window", type=int, default=64, help="in flight per sender")
    parser.add_argument("--nodes", default="1,2,3", help="process counts on PostgreSQL")
    add_common_options(parser, rounds=3)
    args = parser.parse_args()
    if args.quick:
        args.messages, args.pairs, args.rounds, args.nodes = 50, 2, 1, "1,2"
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
