"""Throughput of the local MIMC server to the last delivery, next to a raw websockets echo.

Run: ``python bench/server_bench.py`` (about half a minute; ``--quick`` for a smoke run).

The server is ``LocalServer`` (what ``python -m mimc_rx serve`` runs) in a child process with a
fresh SQLite file; the simulated clients run here, each a protocol-core ``ClientSession`` over a
``websockets`` connection (no reactive facade: this measures the server). Like the library's
``WebSocketTransport``, a client writes through one writer task, and the frames queued since its
last pass go to the socket in one system call (websockets alone would make one per frame, 15.7%
of this process's samples before), so the clients' CPU is not what the figures are about. Each
round runs, one after the other:

* **echo**: the raw websockets echo (``_baseline.py``, compression off) in the same shape:
  ``--pairs`` connections, ``--messages`` each, ``--window`` in flight per connection
  (``--window 0``: all at once). Ends at the last echo.
* **P2P store=false / store=true**: ``--pairs`` senders each send ``--messages`` 200-byte
  messages to their own online receiver with the same window. Receivers decode every COMPOUND
  and send SEQUENCE_ACKs as real clients do. Every ack and every delivery is counted (a run that
  misses one fails) and the run ends when the **last delivery** and the last ack are both in
  (usually the delivery). The rate is deliveries per second; the times to the last ack and to the
  last delivery are reported next to it.
* **P2T fan-out** (``--members``, 0 skips it): one sender, a group all online; ends at the last
  of messages x (members - 1) deliveries; the rate is deliveries per second.

CPU microseconds per message are given for each process: ``server`` (the child's own
``process_time``) and ``client`` (this process: all senders and receivers, or the echo client).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from _baseline import echo_burst
from _common import (
    Child,
    CpuMeter,
    Run,
    add_common_options,
    alternate,
    latency_spread,
    machine_line,
    spread,
    start_echo_server,
    start_mimc_server,
    summarize,
)
from websockets.asyncio.client import ClientConnection, connect

from mimc_rx.client.transport import WebSocketTransport, _CoalescingConnection
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import P2PMessage, P2TMessage, ServerAck, StatusChange
from mimc_rx.server import DEMO_APP

APP = DEMO_APP


class Tally:
    """One run's acks and deliveries; ``done`` resolves when every ack and delivery is in."""

    def __init__(self, sent: int, fanout: int) -> None:
        self.sent = sent  # messages the senders will send
        self.fanout = fanout  # deliveries per accepted message
        self.acks = self.ok = self.deliveries = 0
        self.sent_at: dict[str, float] = {}
        self.ack_ms: list[float] = []
        self.delivery_ms: list[float] = []
        self.last_ack = self.last_delivery = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(self) -> None:
        complete = self.acks >= self.sent and self.deliveries >= self.ok * self.fanout
        if complete and not self.done.done():
            self.done.set_result(None)


class BenchClient:
    """A lean driver: ClientSession + websockets, counting into the current ``Tally``.

    ``flush`` only wakes the writer task; the writer sends what the session queued since its
    last pass in one socket write, as ``WebSocketTransport`` does (its connection class and
    ``_send_frames`` are reused here, so the bench writes exactly as the library does).
    """

    def __init__(self, url: str, account: str) -> None:
        self.url = url
        self.account = account
        self.session = ClientSession(APP.app_id, account, f"bench-{account}")
        self.tally: Tally | None = None
        self.window: asyncio.Semaphore | None = None
        self.online = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    async def start(self, answer: dict[str, Any]) -> None:
        self.ws = await connect(
            self.url, compression=None, max_size=None, create_connection=_CoalescingConnection
        )
        self.reader = asyncio.create_task(self._read())
        self.writer = asyncio.create_task(self._write())
        self.session.login(answer, now=time.perf_counter())
        self.flush()
        await asyncio.wait_for(self.online.wait(), 30)

    def flush(self) -> None:
        """Have the writer send what the session queued (on its next pass)."""
        self.wake.set()

    async def _write(self) -> None:
        assert self.ws is not None
        ws, session, wake = self.ws, self.session, self.wake
        while True:
            await wake.wait()
            wake.clear()
            frames = session.data_to_send()
            if frames:
                await WebSocketTransport._send_frames(ws, frames)

    async def _read(self) -> None:
        assert self.ws is not None
        session, clock = self.session, time.perf_counter
        async for message in self.ws:
            now = clock()
            session.receive_data(message, now=now)  # type: ignore[arg-type]
            tally = self.tally
            for event in session.events_received():
                if tally is None:
                    if isinstance(event, StatusChange) and event.online:
                        self.online.set()
                elif isinstance(event, ServerAck):
                    tally.acks += 1
                    tally.ok += event.ok
                    tally.last_ack = now
                    start = tally.sent_at.get(event.packet_id)
                    if start is not None:
                        tally.ack_ms.append((now - start) * 1000)
                    if self.window is not None:
                        self.window.release()
                elif isinstance(event, P2PMessage | P2TMessage):
                    tally.deliveries += 1
                    tally.last_delivery = now
                    start = tally.sent_at.get(event.packet_id)
                    if start is not None:
                        tally.delivery_ms.append((now - start) * 1000)
            if tally is not None:
                tally.check()
            self.flush()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        for task in (self.reader, self.writer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def _token(http: httpx.AsyncClient, account: str) -> dict[str, Any]:
    body = {
        "appId": str(APP.app_id),
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "appAccount": account,
    }
    answer: dict[str, Any] = (await http.post("/api/account/token", json=body)).json()
    return answer


async def _clients(url: str, http: httpx.AsyncClient, accounts: list[str]) -> list[BenchClient]:
    clients = [BenchClient(url, a) for a in accounts]
    answers = await asyncio.gather(*(_token(http, a) for a in accounts))
    await asyncio.gather(*(c.start(ans) for c, ans in zip(clients, answers, strict=True)))
    return clients


async def _pump(sender: BenchClient, n: int, window: int, send: Callable[[], str]) -> None:
    """Send ``n`` messages, ``window`` in flight (0: all at once)."""
    tally = sender.tally
    assert tally is not None
    sender.window = asyncio.Semaphore(window) if window else None
    clock = time.perf_counter
    for _ in range(n):
        if sender.window is not None:
            await sender.window.acquire()
        tally.sent_at[send()] = clock()
        sender.flush()


async def _measure(
    label: str,
    server: Child,
    clients: list[BenchClient],
    tally: Tally,
    pumps: Callable[[], list[Awaitable[None]]],
) -> Run:
    for c in clients:
        c.tally = tally
    cpu = CpuMeter({"server": server})
    start = time.perf_counter()
    await asyncio.gather(*pumps())
    try:
        await asyncio.wait_for(tally.done, 120)
    except TimeoutError:
        raise SystemExit(
            f"{label}: {tally.acks}/{tally.sent} acks and {tally.deliveries}/"
            f"{tally.ok * tally.fanout} deliveries after 120 s"
        ) from None
    used = cpu.used()
    seconds = max(tally.last_ack, tally.last_delivery) - start
    for c in clients:
        c.tally, c.window = None, None
    if tally.ok < tally.acks:
        raise SystemExit(f"{label}: the server refused {tally.acks - tally.ok} messages")
    return Run(
        label,
        tally.deliveries,
        seconds,
        used,
        {"ack": tally.ack_ms, "delivery": tally.delivery_ms},
        {
            "acks": tally.acks,
            "to last ack s": tally.last_ack - start,
            "to last delivery s": tally.last_delivery - start,
        },
    )


async def _main(args: argparse.Namespace) -> None:
    print(
        f"server bench: payload {args.size} B, {args.pairs} pair(s) x {args.messages:,} messages, "
        f"window {args.window or 'all at once'}, group of {args.members} x "
        f"{args.group_messages:,}, {args.rounds} rounds"
    )
    print(machine_line(args))
    payload = b"x" * args.size
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_mimc_server(os.path.join(tmp, "bench.db")) as server,
        start_echo_server() as echo,
    ):
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            senders = await _clients(server.ws_url, http, [f"s{i}" for i in range(args.pairs)])
            receivers = await _clients(server.ws_url, http, [f"r{i}" for i in range(args.pairs)])
            pairs = senders + receivers

            def p2p(store: bool) -> Callable[[], Awaitable[Run]]:
                async def run() -> Run:
                    tally = Tally(args.messages * args.pairs, 1)
                    for s in senders:
                        s.tally = tally
                    return await _measure(
                        f"P2P store={str(store).lower()}",
                        server,
                        pairs,
                        tally,
                        lambda: [
                            _pump(
                                s,
                                args.messages,
                                args.window,
                                lambda s=s, i=i: s.session.send_p2p(  # type: ignore[misc]
                                    f"r{i}", payload, is_store=store, now=time.perf_counter()
                                ),
                            )
                            for i, s in enumerate(senders)
                        ],
                    )

                return run

            steps: list[tuple[str, Callable[[], Awaitable[Run]]]] = [
                (
                    "echo",
                    lambda: echo_burst(
                        echo,
                        args.messages,
                        args.size,
                        window=args.window,
                        connections=args.pairs,
                        label="raw websockets echo",
                    ),
                ),
                ("p2p-volatile", p2p(False)),
                ("p2p-stored", p2p(True)),
            ]
            if args.members > 1:
                names = [f"g{i}" for i in range(args.members)]
                owner = await _token(http, names[0])
                created = await http.post(
                    f"/api/topic/{APP.app_id}",
                    headers={"token": owner["data"]["token"]},
                    json={"topicName": "bench", "accounts": ",".join(names[1:])},
                )
                topic = int(created.json()["data"]["topicInfo"]["topicId"])
                group = await _clients(server.ws_url, http, names)

                async def p2t() -> Run:
                    tally = Tally(args.group_messages, args.members - 1)
                    group[0].tally = tally
                    return await _measure(
                        f"P2T fan-out x{args.members - 1}",
                        server,
                        group,
                        tally,
                        lambda: [
                            _pump(
                                group[0],
                                args.group_messages,
                                args.window,
                                lambda: group[0].session.send_p2t(
                                    topic, payload, is_store=True, now=time.perf_counter()
                                ),
                            )
                        ],
                    )

                steps.append(("p2t", p2t))
            else:
                group = []
            results = await alternate(args.rounds, steps)
            for c in pairs + group:
                await c.close()
    print(f"summary of {args.rounds} alternated rounds (ours / echo, per round):")
    summarize(results, "echo", ["p2p-volatile", "p2p-stored"])
    for name in ("p2p-volatile", "p2p-stored"):
        runs = results[name]
        last_ack = spread([r.notes["to last ack s"] for r in runs]).show(".3f")
        last_delivery = spread([r.notes["to last delivery s"] for r in runs]).show(".3f")
        print(f"  {runs[0].label}: last ack {last_ack} s, last delivery {last_delivery} s")
        for kind in ("ack", "delivery"):
            p50 = latency_spread(runs, kind, 50).show(".1f")
            p99 = latency_spread(runs, kind, 99).show(".1f")
            print(f"    send->{kind} p50 {p50} ms, p99 {p99} ms")
    if "p2t" in results:
        runs = results["p2t"]
        print(
            f"  {runs[0].label}: {spread([r.rate for r in runs]).show()} deliveries/s, "
            f"server {spread([r.cpu_us('server') for r in runs]).show('.1f')} us/delivery, "
            f"client {spread([r.cpu_us('client') for r in runs]).show('.1f')} us/delivery"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2500, help="messages per sender")
    parser.add_argument("--pairs", type=int, default=2, help="P2P sender/receiver pairs")
    parser.add_argument("--window", type=int, default=64, help="in flight per sender; 0: all")
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    parser.add_argument("--members", type=int, default=100, help="group size for P2T (0 skips)")
    parser.add_argument("--group-messages", type=int, default=500, help="P2T messages sent")
    add_common_options(parser)
    args = parser.parse_args()
    if args.quick:
        args.messages, args.members, args.group_messages, args.rounds = 100, 5, 20, 2
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
