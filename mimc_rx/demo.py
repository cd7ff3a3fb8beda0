"""``python -m mimc_rx demo``: a local server, two users, messages flowing, then a summary.

The demo is the shortest honest tour of the library. It starts the local server in this
process (port 0, in-memory store unless ``--db`` is given), logs in ``alice`` and ``bob`` as two
``MIMCUser`` objects, prints every stream as events arrive, and exchanges:

1. P2P messages both ways, each awaited to its server ack (text with an emoji, and raw bytes);
2. a normal group (created over REST) and a group message;
3. an offline message: bob logs out, alice writes, bob logs back in and receives it once;
4. an unlimited-group (UC) round: alice creates a room, bob joins, alice posts.

It ends with a table of counts and send->ack latencies. Exit status 0 means every step
observed what it expected.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .client.streams import first_value
from .client.user import MIMCUser
from .client.values import Disconnected
from .protocol.events import P2PMessage, P2TMessage, ServerAck, StatusChange, UCMessage

__all__ = ["main", "run_demo"]

STEP_TIMEOUT = 10.0
"""Seconds any single step may take before the demo reports a failure."""


class _Printer:
    """Prints stream events with a time offset and the user's name, as they flow."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def line(self, who: str, what: str) -> None:
        if not self.quiet:
            ms = (time.perf_counter() - self.t0) * 1000
            print(f"{ms:8.1f} ms  {who:<6} {what}", file=self.out, flush=True)

    def step(self, title: str) -> None:
        if not self.quiet:
            print(f"\n== {title}", file=self.out, flush=True)

    def watch(self, user: MIMCUser) -> None:
        name = user.app_account

        def show(kind: str) -> Callable[[Any], None]:
            return lambda value: self.line(name, f"{kind:<12} {_fmt(value)}")

        user.status.subscribe(show("status"))
        user.server_acks.subscribe(show("server_ack"))
        user.p2p_messages.subscribe(show("p2p"))
        user.group_messages.subscribe(show("group"))
        user.uc_messages.subscribe(show("uc"))
        user.uc_join_results.subscribe(show("uc_join"))
        user.disconnects.subscribe(show("disconnect"))


def _fmt(value: object) -> str:
    match value:
        case StatusChange(online=True):
            return "online"
        case StatusChange():
            return f"offline {value.err_type} {value.err_reason} {value.err_desc}".rstrip()
        case ServerAck():
            return f"{value.packet_id} seq={value.sequence}" + (
                f" ERROR {value.err_msg}" if value.err_msg else ""
            )
        case P2PMessage():
            return f"from {value.from_account} seq={value.sequence}: {_payload(value.payload)}"
        case P2TMessage() | UCMessage():
            return (
                f"topic {value.topic_id} from {value.from_account} seq={value.sequence}: "
                f"{_payload(value.payload)}"
            )
        case Disconnected():
            again = " (will reconnect)" if value.will_reconnect else ""
            return f"{value.reason.value} {value.detail}".rstrip() + again
        case _:
            return repr(value)


def _payload(payload: bytes) -> str:
    try:
        return repr(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes {payload[:8].hex()}...>"


async def _acked(user: MIMCUser, pid: str, latencies: list[float], started: float) -> ServerAck:
    ack = await user.ack(pid, timeout=STEP_TIMEOUT)
    latencies.append((time.perf_counter() - started) * 1000)
    if not ack.ok:
        raise RuntimeError(f"the server refused {pid}: {ack.err_msg}")
    return ack


async def run_demo(
    ws_url: str, app_id: int, fetcher: Callable[[str], Any], out: TextIO, *, quiet: bool = False
) -> dict[str, Any]:
    """Run the demo's steps against a running server; returns the summary figures."""
    printer = _Printer(out, quiet)
    alice = MIMCUser(
        "alice", app_id=app_id, token_fetcher=fetcher("alice"), url=ws_url, resource="demo-alice"
    )
    bob = MIMCUser(
        "bob", app_id=app_id, token_fetcher=fetcher("bob"), url=ws_url, resource="demo-bob"
    )
    printer.watch(alice)
    printer.watch(bob)
    latencies: list[float] = []
    bob_got: list[str] = []
    bob.p2p_messages.subscribe(lambda m: bob_got.append(m.text))

    printer.step("login")
    for user in (alice, bob):
        status = await user.login()
        if not status.online:
            raise RuntimeError(f"{user.app_account} could not log in: {status}")
    printer.line("", f"{alice!r}")
    printer.line("", f"{bob!r}")

    printer.step("P2P, both ways, each awaited to its server ack")
    arrival: asyncio.Future[Any] = first_value(bob.p2p_messages, timeout=STEP_TIMEOUT)
    t = time.perf_counter()
    await _acked(alice, alice.send_message("bob", "hello bob 👋"), latencies, t)
    await arrival
    arrival = first_value(alice.p2p_messages, timeout=STEP_TIMEOUT)
    t = time.perf_counter()
    await _acked(
        bob, bob.send_message("alice", b"\x00\x01 raw bytes", biz_type="bin"), latencies, t
    )
    await arrival

    printer.step("a normal group and a group message")
    topic = await alice.create_group("demo-group", ["bob"])
    printer.line("alice", f"created group {topic}")
    arrival = first_value(bob.group_messages, timeout=STEP_TIMEOUT)
    t = time.perf_counter()
    await _acked(alice, alice.send_group_message(topic, "hi all, from the group"), latencies, t)
    await arrival

    printer.step("offline delivery: bob logs out, alice writes, bob logs back in")
    await bob.logout()
    t = time.perf_counter()
    await _acked(
        alice, alice.send_message("bob", "you were away: this waited for you"), latencies, t
    )
    arrival = first_value(bob.p2p_messages, lambda m: "away" in m.text, timeout=STEP_TIMEOUT)
    await bob.login()
    await arrival

    printer.step("an unlimited group (UC)")
    alice_joined = first_value(alice.uc_join_results, timeout=STEP_TIMEOUT)
    room = await alice.create_unlimited_group("demo-room")  # and joins it, as the SDK does
    printer.line("alice", f"created unlimited group {room}")
    bob_joined = first_value(bob.uc_join_results, timeout=STEP_TIMEOUT)
    bob.join_unlimited_group(room)
    await asyncio.gather(alice_joined, bob_joined)
    arrival = first_value(bob.uc_messages, timeout=STEP_TIMEOUT)
    alice.send_unlimited_group_message(room, "welcome to the room")
    await arrival

    printer.step("logout")
    await alice.logout()
    await bob.logout()
    summary = {
        "users": {u.app_account: dict(u.counts) for u in (alice, bob)},
        "bob_p2p_texts": bob_got,
        "ack_ms": latencies,
    }
    return summary


def _print_summary(summary: dict[str, Any], out: TextIO) -> None:
    print("\n== summary", file=out)
    print(f"{'user':<8}{'sent':>6}{'acked':>7}{'received':>10}{'duplicates':>12}", file=out)
    for name, c in summary["users"].items():
        print(
            f"{name:<8}{c['sent']:>6}{c['acked']:>7}{c['received']:>10}{c['duplicates']:>12}",
            file=out,
        )
    lat = summary["ack_ms"]
    if lat:
        print(
            f"send->ack latency over {len(lat)} sends: median {statistics.median(lat):.1f} ms, "
            f"max {max(lat):.1f} ms",
            file=out,
        )
    print("demo finished: every step saw what it expected", file=out, flush=True)


async def _amain(args: argparse.Namespace, out: TextIO) -> int:
    from .server import LocalServer

    async with LocalServer(db=args.db, port=args.port) as server:
        print(f"local server on {server.ws_url} (HTTP {server.http_url})", file=out, flush=True)
        summary = await asyncio.wait_for(
            run_demo(server.ws_url, server.app.app_id, server.token_fetcher, out, quiet=args.quiet),
            timeout=STEP_TIMEOUT * 10,
        )
    _print_summary(summary, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mimc_rx demo``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mimc_rx demo",
        description="Start a local MIMC server, log in two users and exchange messages.",
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return asyncio.run(_amain(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
