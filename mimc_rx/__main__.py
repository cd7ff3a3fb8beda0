"""The command line: ``python -m mimc_rx <command>`` (also installed as ``mimc-rx``).

Commands:

* ``serve``: run the local MIMC server until Ctrl-C or SIGTERM. It prints one line with the
  websocket and HTTP URLs on stdout once it accepts connections; logs go to stderr. One process
  on SQLite (``--db``) by default; with ``--storage postgresql://... --broker redis://...``
  several processes share the state, and with ``--reuse-port`` one port (docs/scale-out.md).
* ``demo``: the guided demo (implemented in :mod:`mimc_rx.demo`, imported only when asked for).
* ``load``: an open-loop load against a MIMC server (:mod:`mimc_rx.lab.cli`, imported only
  when asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimc_rx.server.config import AppConfig

__all__ = ["main"]

log = logging.getLogger("mimc_rx.cli")

PROG = "mimc-rx"
DESCRIPTION = (
    "mimc-rx: a local server that speaks Xiaomi's MIMC instant-messaging protocol, and a demo "
    "of the reactive client against it. Also runs as: python -m mimc_rx COMMAND."
)

DEFAULT_DB = "mimc-rx.db"

_STORAGE_SCHEMES = ("postgresql://", "postgres://", "sqlite://")
_BROKER_SCHEMES = ("redis://", "rediss://", "unix://")
_SCALE_MODULES = {"postgresql": ("psycopg", "psycopg_pool"), "redis": ("redis",)}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but never breaking a line at a hyphen ("mimc-rx", "built-in")."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )


def _app_option(spec: str) -> AppConfig:
    from mimc_rx.server.config import parse_app_spec

    try:
        return parse_app_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url_option(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if not value.startswith(schemes):
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a URL starting with {' or '.join(schemes)}"
            )
        return value

    return parse


def _build_parser() -> argparse.ArgumentParser:
    from mimc_rx.server.config import ServerConfig

    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the local MIMC server",
        formatter_class=_HelpFormatter,
        description="Run the wire-compatible local MIMC server (websocket at /, HTTP under /api).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one")
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        default=None,
        help=f"SQLite database file (default: {DEFAULT_DB}; ':memory:' keeps nothing)",
    )
    where.add_argument(
        "--storage",
        type=_url_option(_STORAGE_SCHEMES),
        metavar="URL",
        help="the durable state as a URL instead of --db: postgresql://user@host:port/db, which "
        "several server processes may share (needs the scale extra), or sqlite:///path",
    )
    serve.add_argument(
        "--broker",
        type=_url_option(_BROKER_SCHEMES),
        metavar="URL",
        help="how server processes signal each other: redis://host:port/db (needs the scale "
        "extra); without it, this process alone holds the connections",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT so that several serve processes share --port (the kernel "
        "spreads connections over them); needs --storage postgresql://... and --broker",
    )
    serve.add_argument(
        "--app",
        dest="apps",
        action="append",
        type=_app_option,
        default=[],
        metavar="APP_ID:APP_KEY:APP_SECRET[:PACKAGE]",
        help="an app to serve (repeatable); without any, the built-in demo app",
    )
    serve.add_argument(
        "--token-ttl", type=float, default=defaults.token_ttl, help="token lifetime in seconds"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help="drop connections silent for this many seconds",
    )
    serve.add_argument(
        "--backlog-limit",
        type=int,
        default=defaults.backlog_limit,
        help="offline messages pushed at login; more become a pull notification",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (stderr)",
    )

    commands.add_parser("demo", help="run the guided demo", add_help=False)
    commands.add_parser("load", help="run an open-loop load (see load --help)", add_help=False)
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from mimc_rx.server import DEMO_APP, LocalServer, ServerConfig

    config = ServerConfig(
        token_ttl=args.token_ttl,
        idle_timeout=args.idle_timeout,
        backlog_limit=args.backlog_limit,
        storage_url=args.storage,
        broker_url=args.broker,
    )
    server = LocalServer(
        db=args.db or DEFAULT_DB if args.storage is None else ":memory:",
        apps=args.apps,
        host=args.host,
        port=args.port,
        config=config,
        reuse_port=args.reuse_port,
    )
    if not args.apps:
        app = DEMO_APP
        log.info(
            "no --app given; serving the demo app: appId=%s appKey=%s appSecret=%s package=%s",
            app.app_id,
            app.app_key,
            app.app_secret,
            app.package,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await server.start()
    try:
        apps = ",".join(str(a.app_id) for a in server.apps)
        print(
            f"mimc-rx server ready: {server.ws_url} {server.http_url}/api apps={apps}", flush=True
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
    return 0


def _version() -> str:
    from mimc_rx import __version__

    return __version__


def _db_problem(db: str, option: str = "--db") -> str | None:
    """Why the SQLite file ``db`` cannot be opened, in one line, or None when it looks usable.

    Checked before the server starts, so a typo in the path is one line on stderr rather
    than a sqlite traceback from deep inside the storage layer.
    """
    if db == ":memory:" or db.startswith("file:"):
        return None
    path = Path(db)
    if path.is_dir():
        return f"{option} {db}: is a directory, not a database file"
    parent = path.parent
    if not parent.is_dir():
        return f"{option} {db}: the directory {parent} does not exist"
    return None


def _db_option(args: argparse.Namespace) -> str:
    return "--db" if args.storage is None else "--storage"


def _engine_of(exc: BaseException) -> str | None:
    """``psycopg`` or ``redis`` when ``exc`` (or its cause) comes from that client library."""
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain: the storage or broker may wrap the client's error
        if seen is None:
            return None
        root = type(seen).__module__.split(".")[0]
        if root in ("psycopg", "psycopg_pool", "redis"):
            return "redis" if root == "redis" else "psycopg"
        seen = seen.__cause__
    return None


def _sqlite_path(storage: str) -> str | None:
    """The file of a ``sqlite://`` storage URL, or None for another engine."""
    return storage.removeprefix("sqlite://") if storage.startswith("sqlite://") else None


def _scale_problem(args: argparse.Namespace) -> str | None:
    """Why the ``--storage`` / ``--broker`` / ``--reuse-port`` combination cannot work, or None."""
    shared = args.storage is not None and _sqlite_path(args.storage) is None
    if args.reuse_port and not (shared and args.broker):
        return (
            "--reuse-port: processes that share a port must share their state: "
            "give --storage postgresql://... and --broker redis://..."
        )
    wanted: list[str] = []
    if shared:
        wanted += _SCALE_MODULES["postgresql"]
    if args.broker:
        wanted += _SCALE_MODULES["redis"]
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"--storage/--broker need {', '.join(missing)}, which is not installed: "
            'pip install "mimc-rx[scale]"'
        )
    return None


def _missing_server_extra(command: str) -> int | None:
    """Exit status 1 with a one-line hint when the ``server`` extra is absent, else None."""
    from mimc_rx._extras import MissingExtra, require_extra

    try:
        require_extra("server", f"{PROG} {command}")
    except MissingExtra as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("serve", "demo") and "--help" not in args_list:
        status = _missing_server_extra(args_list[0])
        if status is not None:
            return status
    if args_list and args_list[0] == "demo":
        # Delegated whole, options included, to mimc_rx.demo:main(argv).
        demo = importlib.import_module("mimc_rx.demo")
        return int(demo.main(args_list[1:]) or 0)
    if args_list and args_list[0] == "load":
        # Delegated whole to mimc_rx.lab.cli:main(argv), like demo.
        lab_cli = importlib.import_module("mimc_rx.lab.cli")
        return int(lab_cli.main(args_list[1:]) or 0)
    args = _build_parser().parse_args(args_list)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        sqlite_file = args.db or DEFAULT_DB if args.storage is None else _sqlite_path(args.storage)
        problem = _scale_problem(args)
        if problem is None and sqlite_file is not None:
            problem = _db_problem(sqlite_file, _db_option(args))
        if problem is not None:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
            return 1
        try:
            return asyncio.run(_serve(args))
        except sqlite3.Error as exc:
            print(f"{PROG}: error: {_db_option(args)} {sqlite_file}: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            log.error("cannot start the server: %s", exc)
            return 1
        except Exception as exc:
            engine = _engine_of(exc)
            if engine is None:
                raise
            # psycopg's and redis-py's errors are not OSErrors: an engine that is down or
            # refuses us is one line too, naming the option to check.
            option = "--storage" if engine == "psycopg" else "--broker"
            print(f"{PROG}: error: {option}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
