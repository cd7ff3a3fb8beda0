"""Throughput and ack latency of the local MIMC server, next to a raw websockets echo baseline.

Run: ``python bench/server_bench.py`` (a few seconds per scenario; ``--help`` for options).

The server runs as ``python -m mimc_rx serve`` in a child process (its own core, a fresh SQLite
file); the simulated clients run here, each a protocol-core ``ClientSession`` over a
``websockets`` connection. Scenarios:

* **P2P isStore=false / true**: ``--pairs`` senders each send 200-byte messages to their own
  online receiver, pipelined with ``--window`` packets in flight per sender. Throughput counts
  server acks (send -> PACKET_ACK); latency is per packet, send to ack. Receivers decode every
  COMPOUND and send SEQUENCE_ACKs, as real clients do.
* **P2T fan-out**: one sender, a group of 100 members all online; throughput counts acks and
  deliveries (messages x 99 receivers).

The raw echo baseline (``bench/_baseline.py``) runs in the same invocation with the same size
and window, so the ratio is meaningful on a busy machine. The goal stated for the server: P2P
throughput at least 25% of the echo rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from _baseline import echo_baseline_async, percentiles
from websockets.asyncio.client import ClientConnection, connect

from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import P2PMessage, P2TMessage, ServerAck, StatusChange
from mimc_rx.server import DEMO_APP

APP = DEMO_APP


@dataclass
class Stats:
    """What one scenario measured."""

    acks: int = 0
    deliveries: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_server: float = 0.0  # CPU seconds of the server process during the scenario
    cpu_bench: float = 0.0  # CPU seconds of this process (the simulated clients)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, condition: Any, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait (bounded) until ``condition()`` holds; re-checked whenever a client got data."""
        deadline = time.perf_counter() + timeout
        while not condition() and time.perf_counter() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), deadline - time.perf_counter())
            except TimeoutError:
                return


class BenchClient:
    """A lean driver: ClientSession + websockets, counting acks and deliveries."""

    def __init__(self, url: str, account: str, stats: Stats) -> None:
        self.url = url
        self.session = ClientSession(APP.app_id, account, f"bench-{account}")
        self.stats = stats
        self.sent_at: dict[str, float] = {}
        self.window: asyncio.Semaphore | None = None
        self.online = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self, answer: dict[str, Any]) -> None:
        self.ws = await connect(self.url, compression=None, max_size=None)
        self.reader = asyncio.create_task(self._read())
        self.session.login(answer, now=time.perf_counter())
        await self.flush()
        await asyncio.wait_for(self.online.wait(), 30)

    async def flush(self) -> None:
        assert self.ws is not None
        frames = self.session.data_to_send()
        if frames:
            await self.ws.send(frames[0]) if len(frames) == 1 else await _send_all(self.ws, frames)

    async def _read(self) -> None:
        assert self.ws is not None
        session, stats, sent_at = self.session, self.stats, self.sent_at
        async for message in self.ws:
            now = time.perf_counter()
            session.receive_data(message, now=now)  # type: ignore[arg-type]
            for event in session.events_received():
                if isinstance(event, ServerAck):
                    start = sent_at.pop(event.packet_id, None)
                    if start is not None:
                        stats.latencies.append(now - start)
                    stats.acks += 1
                    if not event.ok:
                        stats.errors += 1
                    if self.window is not None:
                        self.window.release()
                elif isinstance(event, P2PMessage | P2TMessage):
                    stats.deliveries += 1
                elif isinstance(event, StatusChange) and event.online:
                    self.online.set()
            stats.changed.set()
            await self.flush()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


async def _send_all(ws: ClientConnection, frames: list[bytes]) -> None:
    for frame in frames:
        await ws.send(frame)


async def _token(http: httpx.AsyncClient, account: str) -> dict[str, Any]:
    answer: dict[str, Any] = (
        await http.post(
            "/api/account/token",
            json={
                "appId": str(APP.app_id),
                "appKey": APP.app_key,
                "appSecret": APP.app_secret,
                "appAccount": account,
            },
        )
    ).json()
    return answer


async def _clients(
    url: str, http: httpx.AsyncClient, accounts: list[str], stats: Stats
) -> list[BenchClient]:
    clients = [BenchClient(url, a, stats) for a in accounts]
    answers = await asyncio.gather(*(_token(http, a) for a in accounts))
    await asyncio.gather(*(c.start(ans) for c, ans in zip(clients, answers, strict=True)))
    return clients


async def _pump(
    sender: BenchClient, window: int, deadline: float, payload: bytes, send: Any
) -> None:
    sender.window = asyncio.Semaphore(window)
    while time.perf_counter() < deadline:
        await sender.window.acquire()
        pid = send()
        sender.sent_at[pid] = time.perf_counter()
        await sender.flush()
    await sender.stats.until(lambda: not sender.sent_at)  # the tail of acks


async def p2p(
    url: str, http: httpx.AsyncClient, args: argparse.Namespace, store: bool, tag: str
) -> Stats:
    stats = Stats()
    senders = await _clients(url, http, [f"{tag}s{i}" for i in range(args.pairs)], stats)
    receivers = await _clients(url, http, [f"{tag}r{i}" for i in range(args.pairs)], stats)
    payload = b"x" * args.size
    cpu = _Cpu(args.server)
    start = time.perf_counter()
    deadline = start + args.duration
    await asyncio.gather(
        *(
            _pump(
                s,
                args.window,
                deadline,
                payload,
                lambda s=s, i=i: s.session.send_p2p(
                    f"{tag}r{i}", payload, is_store=store, now=time.perf_counter()
                ),
            )
            for i, s in enumerate(senders)
        )
    )
    stats.seconds = time.perf_counter() - start
    stats.cpu_server, stats.cpu_bench = cpu.used()
    await asyncio.sleep(0.2)  # let the last deliveries land
    for c in senders + receivers:
        await c.close()
    return stats


async def p2t(url: str, http: httpx.AsyncClient, args: argparse.Namespace) -> Stats:
    stats = Stats()
    names = [f"g{i}" for i in range(args.members)]
    owner = await _token(http, names[0])
    topic = (
        await http.post(
            f"/api/topic/{APP.app_id}",
            headers={"token": owner["data"]["token"]},
            json={"topicName": "bench", "accounts": ",".join(names[1:])},
        )
    ).json()["data"]["topicInfo"]["topicId"]
    clients = await _clients(url, http, names, stats)
    sender = clients[0]
    payload = b"x" * args.size
    cpu = _Cpu(args.server)
    start = time.perf_counter()
    await _pump(
        sender,
        args.window,
        start + args.duration,
        payload,
        lambda: sender.session.send_p2t(
            int(topic), payload, is_store=True, now=time.perf_counter()
        ),
    )
    expected = stats.acks * (args.members - 1)
    await stats.until(lambda: stats.deliveries >= expected)
    stats.seconds = time.perf_counter() - start
    stats.cpu_server, stats.cpu_bench = cpu.used()
    for c in clients:
        await c.close()
    return stats


class _Cpu:
    """CPU seconds used by the server process and by this process since construction."""

    def __init__(self, server: psutil.Process) -> None:
        self._server = server
        self._start = (self._server_seconds(), time.process_time())

    def _server_seconds(self) -> float:
        times = self._server.cpu_times()
        return float(times.user + times.system)

    def used(self) -> tuple[float, float]:
        return (
            self._server_seconds() - self._start[0],
            time.process_time() - self._start[1],
        )


def _line(name: str, stats: Stats, baseline: float, *, fanout: bool = False) -> str:
    rate = stats.acks / stats.seconds if stats.seconds else 0.0
    p50, p90, p99 = (v * 1000 for v in percentiles(stats.latencies, (50, 90, 99)))
    worst = max(stats.latencies, default=0.0) * 1000
    text = (
        f"{name:<21} {rate:10,.0f} msg/s   ack p50 {p50:6.2f}  p90 {p90:6.2f}  "
        f"p99 {p99:7.2f}  max {worst:7.2f} ms"
    )
    if fanout:
        text += f"   deliveries {stats.deliveries / stats.seconds:,.0f}/s"
    else:
        text += f"   {100 * rate / baseline:5.1f}% of echo"
    if stats.acks and stats.cpu_server:
        text += (
            f"   CPU/msg server {stats.cpu_server / stats.acks * 1e6:4.0f} us"
            f" clients {stats.cpu_bench / stats.acks * 1e6:4.0f} us"
        )
        if fanout and stats.deliveries:
            text += f" (server {stats.cpu_server / stats.deliveries * 1e6:.1f} us/delivery)"
    if stats.errors:
        text += f"   ({stats.errors} refused)"
    return text


def _start_server(db: str, ws_impl: str) -> tuple[subprocess.Popen[str], str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
            "--ws",
            ws_impl,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(ws://\S+) (http://\S+)/api", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(1), match.group(2)


def _merge(runs: list[Stats]) -> Stats:
    merged = Stats()
    for run in runs:
        merged.acks += run.acks
        merged.deliveries += run.deliveries
        merged.errors += run.errors
        merged.latencies.extend(run.latencies)
        merged.seconds += run.seconds
        merged.cpu_server += run.cpu_server
        merged.cpu_bench += run.cpu_bench
    return merged


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"payload {args.size} B, window {args.window} per sender, {args.pairs} sender(s), "
        f"{args.rounds} round(s) of {args.duration:g} s per scenario"
    )
    # The machine may be busy with other work: each round measures the echo baseline right
    # before the P2P scenarios, and the ratio reported is the median of the rounds' ratios.
    echoes: list[float] = []
    runs: dict[bool, list[Stats]] = {False: [], True: []}
    ratios: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        proc, ws_url, http_url = _start_server(os.path.join(tmp, "bench.db"), args.ws)
        args.server = psutil.Process(proc.pid)
        try:
            async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:
                for round_ in range(args.rounds):
                    echo = await echo_baseline_async(
                        args.duration, args.size, args.window * args.pairs
                    )
                    echoes.append(echo.rate)
                    print(f"  round {round_ + 1}: {echo.line()}")
                    for store in (False, True):
                        tag = f"{'st' if store else 'vo'}{round_}"
                        stats = await p2p(ws_url, http, args, store, tag)
                        runs[store].append(stats)
                        ratios[store].append(stats.acks / stats.seconds / echo.rate)
                        name = f"P2P isStore={'true' if store else 'false'}"
                        print(f"  round {round_ + 1}: {_line(name, stats, echo.rate)}")
                fanout = await p2t(ws_url, http, args)
        finally:
            proc.terminate()
            proc.wait()
    echo_rate = statistics.median(echoes)
    print("summary (median echo of the rounds; ratio = median of per-round ratios):")
    print(f"raw websockets echo   {echo_rate:10,.0f} msg/s")
    for store in (False, True):
        name = f"P2P isStore={'true' if store else 'false'}"
        line = _line(name, _merge(runs[store]), echo_rate)
        ratio = 100 * statistics.median(ratios[store])
        print(re.sub(r"\s*[\d.]+% of echo", f"   {ratio:5.1f}% of echo", line))
    print(_line(f"P2T fan-out x{args.members}", fanout, echo_rate, fanout=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="echo + P2P rounds")
    parser.add_argument("--pairs", type=int, default=2, help="P2P sender/receiver pairs")
    parser.add_argument("--window", type=int, default=64, help="packets in flight per sender")
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    parser.add_argument("--members", type=int, default=100, help="group size for P2T")
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn websocket impl")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
