"""``python -m mimc_rx load``: the lab's open-loop load generator from a terminal.

Against any MIMC server given by ``--url`` (ours, or another with ``--http`` and the app's
credentials), or, without ``--url``, against a local server that the command starts in a
child process of its own (so the server's CPU is not the load generator's). Prints a progress
bar and a summary table; ``--out run.parquet`` saves one row per message for later analysis.

Every sender and receiver runs in this one process, on one clock: latencies need no clock
correction. The server's clock offset (estimated from its ack timestamps) is printed for
reference, e.g. to compare the server's own timestamps with the frame's times.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mimc_rx.lab.load import Endpoint, HttpTokens, run_load
from mimc_rx.lab.run import LoadRun
from mimc_rx.lab.spec import LoadSpec

__all__ = ["build_parser", "format_stats", "main"]


def _mix(text: str) -> dict[str, float]:
    try:
        pairs = (item.split("=", 1) for item in text.split(",") if item)
        return {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected kind=share,...; got {text!r}") from None


def _sizes(text: str) -> tuple[int, int]:
    low, _, high = text.partition(":")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX bytes; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The options of the ``load`` command."""
    from mimc_rx.server.config import DEMO_APP

    p = argparse.ArgumentParser(
        prog="python -m mimc_rx load",
        description="Open-loop load against a MIMC server: latency from the scheduled send "
        "time, HDR percentiles, lost/duplicated/out-of-order counts.",
    )
    p.add_argument("--users", type=int, default=100, help="virtual users (default 100)")
    p.add_argument("--rate", type=float, default=1000.0, help="messages per second, all users")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the schedule")
    p.add_argument(
        "--mix", type=_mix, default={"p2p": 0.8, "group": 0.2}, help="e.g. p2p=0.8,group=0.2"
    )
    p.add_argument("--payload", type=_sizes, default=(50, 2000), help="MIN:MAX payload bytes")
    p.add_argument("--group-size", type=int, default=5, help="users per normal group")
    p.add_argument("--arrivals", choices=["uniform", "poisson"], default="uniform")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for stragglers")
    p.add_argument("--seed", type=int, default=None, help="repeatable schedule")
    p.add_argument(
        "--url", default=None, help="websocket URL of the server (default: start a local one)"
    )
    p.add_argument("--http", default=None, help="HTTP base URL (default: from --url)")
    p.add_argument("--app-id", type=int, default=DEMO_APP.app_id)
    p.add_argument("--app-key", default=DEMO_APP.app_key)
    p.add_argument("--app-secret", default=DEMO_APP.app_secret)
    p.add_argument("--prefix", default="vu", help="account prefix (vu000, vu001, ...)")
    p.add_argument("--out", default=None, help="save one row per message (.parquet or .csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _http_from_ws(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def format_stats(run: LoadRun) -> str:
    """The summary table the command prints."""
    s = run.stats()
    rows = [
        ("users", _fmt(s.users)),
        ("offered rate (msg/s)", _fmt(s.offered_rate)),
        ("scheduled / sent / delivered", f"{s.scheduled:,} / {s.sent:,} / {s.delivered:,}"),
        ("achieved send rate (msg/s)", _fmt(s.send_rate)),
        ("achieved delivery rate (msg/s)", _fmt(s.delivery_rate)),
        ("latency p50 / p90 (ms, HDR)", f"{_fmt(s.p50, 2)} / {_fmt(s.p90, 2)}"),
        ("latency p99 / p99.9 / max (ms, HDR)", f"{_fmt(s.p99, 2)} / {_fmt(s.p999, 2)} / "
         f"{_fmt(s.max, 2)}"),
        ("latency p50 / p99 / p99.9 (ms, exact)",
         f"{_fmt(s.exact_p50, 2)} / {_fmt(s.exact_p99, 2)} / {_fmt(s.exact_p999, 2)}"),
        ("lost (acked, never delivered)", _fmt(s.lost)),
        ("duplicated", _fmt(s.duplicated)),
        ("out of order", _fmt(s.out_of_order)),
        ("unacked / unsent / failed / partial",
         f"{s.unacked} / {s.unsent} / {s.failed} / {s.partial}"),
        ("server clock offset (ms, from acks)",
         "-" if s.clock_offset_ms is None
         else f"{s.clock_offset_ms:+.2f} +- {s.clock_uncertainty_ms:.2f}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    by_kind = []
    for kind in ("p2p", "group"):
        hist = run.histogram([r for r in run.records if r.kind == kind])
        if hist.count:
            p50, p99 = hist.percentile(50), hist.percentile(99)
            by_kind.append(f"{kind:>6}: n={hist.count:,} p50={p50:.2f} ms p99={p99:.2f} ms")
    return "\n".join([*lines, "latency by kind (from scheduled time):", *by_kind])


async def _run(args: argparse.Namespace) -> LoadRun:
    spec = LoadSpec(
        users=args.users,
        rate=args.rate,
        seconds=args.seconds,
        mix=args.mix,
        payload_bytes=args.payload,
        group_size=args.group_size,
        arrivals=args.arrivals,
        drain=args.drain,
        prefix=args.prefix,
        seed=args.seed,
        label="load",
    )
    server = None
    url, http = args.url, args.http
    if url is None:
        from mimc_rx.testing import ServerProcess

        tmp = tempfile.mkdtemp(prefix="mimc-rx-load-")
        server = ServerProcess(Path(tmp) / "load.db")
        await server.start()
        url, http = server.ws_url, server.http_url
        print(f"started a local server: {url} (pid {server.pid})", file=sys.stderr)
    tokens = HttpTokens(
        http or _http_from_ws(url),
        app_id=args.app_id,
        app_key=args.app_key,
        app_secret=args.app_secret,
    )
    try:
        endpoint = Endpoint(
            app_id=args.app_id,
            http_url=http or _http_from_ws(url),
            tokens=tokens,
            url_for=lambda _account: url,
        )
        return await run_load(spec, endpoint, progress=not args.no_progress)
    finally:
        await tokens.aclose()
        if server is not None:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``load`` command; returns the exit status (1 when a message was lost)."""
    args = build_parser().parse_args(argv)
    try:
        run = asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_stats(run))
    if args.out:
        frame = run.frame()
        if str(args.out).endswith(".csv"):
            frame.to_csv(args.out, index=False)
        else:
            frame.to_parquet(args.out, index=False)
        print(f"wrote {len(frame):,} rows to {args.out}")
    return 1 if run.stats().lost else 0
