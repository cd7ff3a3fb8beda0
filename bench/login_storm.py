"""A login storm (issue 10): 1,000 ``MIMCUser``s of one process log in at once, then message
each other; how long until all are online, and is every message delivered exactly once.

Run: ``python bench/login_storm.py`` (``--users N``; ``--quick`` for a smoke run).

The server is a ``python -m mimc_rx serve`` child process on a temporary database, so its CPU is
not this process's. Every user logs in at the same moment, each with its own token fetcher
(``AccountTokenFetcher``; they share the loop's ``httpx`` client), and a first login that fails
for a transient reason is retried with the reconnect backoff (``login_retries``). Once all are
online, each sends ``--messages`` stored messages to others picked at random (seeded) and the
run waits until every message reached its receiver. Printed: users online and the time until the
last one was, the median and slowest login, the retries, messages lost and duplicated, the
time to the last delivery, and this process's CPU time and peak RSS. The scenario is
``mimc_rx.testing.storm``; ``tests/client/test_login_storm.py`` runs it with 200 users.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from mimc_rx.testing import ServerProcess
from mimc_rx.testing.storm import StormPlan, run_login_storm


async def _main(args: argparse.Namespace) -> int:
    plan = StormPlan(users=args.users, messages_per_user=args.messages)
    print(f"login storm: {plan.users} users at once, {plan.messages_per_user} messages each")
    with tempfile.TemporaryDirectory(prefix="mimc-storm-") as tmp:
        server = ServerProcess(Path(tmp) / "chat.db", extra_args=["--log-level", "WARNING"])
        async with server:
            result = await run_login_storm(server, plan)
        tracebacks = server.tracebacks()
    print(result.summary())
    print(f"server tracebacks: {len(tracebacks)}")
    ok = result.online == plan.users and not (result.lost or result.duplicated or tracebacks)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5, help="messages each user sends")
    parser.add_argument("--quick", action="store_true", help="50 users (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.users = 50
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
