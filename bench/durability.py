"""Durability under faults at full size (issue 10): lost and duplicated messages, time to settle.

Run: ``python bench/durability.py`` (5 runs of about a minute each; ``--quick`` for a smoke run).

Each run starts a fresh ``python -m mimc_rx serve`` child on a temporary database, puts a
fault-injecting TCP proxy in front of it, and has a sender ``MIMCUser`` send 10,000 stored P2P
messages, each carrying its number, to a receiver ``MIMCUser`` at a steady pace while every
connection is cut 20 times (alternately RST and half-open, healed by a reset) and the server is
killed with SIGKILL and restarted twice on the same port and database. The application sends
each number once; what a lost connection swallowed is the client outbox's business. Printed per
run, counted at the receiver's ``p2p_messages`` and the sender's ``server_acks``: ``lost``
(never arrived), ``duplicated`` (arrived more than once), unacked and twice-acked sends, and
``settle``: seconds from the last send until every message had arrived and every send was acked
(the user's wait, to the last delivery). The scenario is ``mimc_rx.testing.durability``; the CI
test ``tests/integration/test_durability.py`` runs it at 2,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from mimc_rx.testing.durability import DurabilityPlan, main_summary, run_durability


async def _main(args: argparse.Namespace) -> int:
    plan = DurabilityPlan(messages=args.messages, cuts=args.cuts, kills=args.kills, rate=args.rate)
    print(
        f"durability: {plan.messages} stored messages at {plan.rate:g}/s, "
        f"{plan.cuts} cuts, {plan.kills} kill -9, {args.runs} runs"
    )
    settles: list[float] = []
    failed = 0
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="mimc-durability-") as tmp:
            result = await run_durability(Path(tmp) / "chat.db", plan)
        settles.append(result.settle_seconds)
        failed += not result.ok
        print(f"run {run}: {main_summary(result)}", flush=True)
        for line in result.tracebacks[:3]:
            print(f"  server log: {line}")
    print(
        f"settle median {statistics.median(settles):.2f} s "
        f"(range {min(settles):.2f}-{max(settles):.2f}); "
        f"{args.runs - failed}/{args.runs} runs with 0 lost, 0 duplicated, every send acked once"
    )
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--rate", type=float, default=400.0, help="messages per second sent")
    parser.add_argument("--quick", action="store_true", help="one small run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.messages, args.cuts, args.kills = 1, 300, 2, 1
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
