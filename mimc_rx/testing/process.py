"""The local server as a child process that a test can SIGKILL and restart.

``LocalServer`` runs in the test's own event loop, so it cannot show what a crash does: the
durability tests of a messaging system need a server that dies mid-write and comes back on the
same port and the same database file. ``ServerProcess`` runs ``python -m mimc_rx serve`` for
that::

    async with ServerProcess(tmp_path / "chat.db") as server:
        alice = MIMCUser("alice", app_id=server.app.app_id,
                         token_fetcher=server.token_fetcher("alice"), url=server.ws_url)
        ...
        await server.kill()        # SIGKILL: no shutdown, no flush
        await server.start()       # same port, same database (or: await server.restart())
        assert "Traceback" not in server.log_text()

Readiness is the ``serve`` command's own signal: it prints ``mimc-rx server ready: <ws url>
<http url>/api ...`` once it accepts connections, and with ``port=0`` that line tells the
chosen port, which every later start reuses. The child's stdout and stderr go to one log file
(appended across restarts) that a test can read. No thread is used: the child is polled from
the event loop.

Several processes on shared state (issue 14, docs/scale-out.md): a ``ServerProcess`` may run on
a storage URL and a broker URL instead of a SQLite file, and :class:`ServerCluster` starts
``count`` of them on the same PostgreSQL database and Redis, each on its own port (a test pins
alice to one process and bob to another) or all on one port with ``SO_REUSEPORT``::

    async with ServerCluster(3, storage_url=dsn, broker_url=redis_url, log_dir=tmp_path) as nodes:
        alice_url, bob_url = nodes[0].ws_url, nodes[1].ws_url
        await nodes[0].kill()      # the others keep serving; its presence expires in Redis
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mimc_rx.server.config import netloc

if TYPE_CHECKING:
    from mimc_rx import AccountTokenFetcher
    from mimc_rx.server.config import AppConfig

__all__ = ["ServerCluster", "ServerProcess", "ServerStartError"]

_READY = re.compile(r"mimc-rx server ready: ws://(?P<netloc>\S+?)/ ")
_POLL = 0.02


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


class ServerStartError(RuntimeError):
    """The server process exited or stayed silent instead of getting ready.

    Attributes:
        returncode: the child's exit status, or None if it was still running (and was killed).
        log_tail: the end of its log, for the assertion message.
    """

    def __init__(self, message: str, *, returncode: int | None, log_tail: str) -> None:
        super().__init__(f"{message} (exit status {returncode})\n--- server log ---\n{log_tail}")
        self.returncode = returncode
        self.log_tail = log_tail


class ServerProcess:
    """``python -m mimc_rx serve`` in a child process, restartable on the same port and database.

    Args:
        db_path: the SQLite file; it outlives every kill and restart. None with ``storage_url``.
        port: the TCP port; 0 lets the first start pick one, kept for every restart.
        host: the interface to listen on.
        apps: the apps to serve; the demo app when empty.
        log_path: where the child's stdout and stderr go (appended); by default next to the
            database as ``<db name>.log`` (required with ``storage_url``).
        extra_args: more ``serve`` options, e.g. ``["--idle-timeout", "5"]``.
        storage_url: ``serve --storage``: e.g. a ``postgresql://`` URL that other processes
            share, instead of ``db_path``.
        broker_url: ``serve --broker``: the ``redis://`` URL the processes signal through.
        reuse_port: ``serve --reuse-port``: bind with ``SO_REUSEPORT``, so processes given the
            same ``port`` share it.
        ready_timeout: seconds a start may take before :class:`ServerStartError`.
        python: the interpreter to run.
        env: extra environment variables for the child.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        apps: Sequence[AppConfig] = (),
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        storage_url: str | None = None,
        broker_url: str | None = None,
        reuse_port: bool = False,
    ) -> None:
        if (db_path is None) == (storage_url is None):
            raise ValueError("give either a database file or a storage URL")
        if str(db_path) == ":memory:":
            raise ValueError("a restartable server needs a database file, not ':memory:'")
        self.db_path = None if db_path is None else Path(db_path)
        self.storage_url = storage_url
        self.broker_url = broker_url
        self.reuse_port = reuse_port
        self.port = port
        self.host = host
        self.apps = tuple(apps)
        if log_path is None:
            if self.db_path is None:
                raise ValueError("a server on a storage URL needs a log_path")
            log_path = self.db_path.with_name(self.db_path.name + ".log")
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.ready_timeout = ready_timeout
        self.python = python
        self.env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        """How many times the child was started."""

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.is_running and self._proc else "stopped"
        where = f"db={str(self.db_path)!r}" if self.db_path else f"storage={self.storage_url!r}"
        return f"<ServerProcess {self.host}:{self.port} {state} {where}>"

    # ------------------------------------------------------------------ addresses and apps

    @property
    def app(self) -> AppConfig:
        """The default (first) app, which clients log in to."""
        if self.apps:
            return self.apps[0]
        from mimc_rx.server.config import DEMO_APP

        return DEMO_APP

    @property
    def _netloc(self) -> str:
        if not self.port:
            raise RuntimeError("the port is not known before the first start")
        return netloc(self.host, self.port)

    @property
    def ws_url(self) -> str:
        """The websocket URL (``ws://host:port/``)."""
        return f"ws://{self._netloc}/"

    @property
    def http_url(self) -> str:
        """The HTTP base URL, without a trailing slash (the APIs are under ``/api``)."""
        return f"http://{self._netloc}"

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """True while the child has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The last child's exit status (negative: killed by that signal), None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def token_fetcher(self, account: str, *, base_url: str | None = None) -> AccountTokenFetcher:
        """A token fetcher for ``account`` calling this server's token service.

        Args:
            account: the app account to log in.
            base_url: where to reach the token service, e.g. a proxy's ``http_url``; by default
                this server directly, so a fault on the websocket route does not stop logins.
                The URL is read when the fetcher is made: call it after the first start.
        """
        from mimc_rx import AccountTokenFetcher

        app = self.app
        return AccountTokenFetcher(
            base_url or self.http_url,
            app_id=app.app_id,
            app_key=app.app_key,
            app_secret=app.app_secret,
            app_account=account,
        )

    # ------------------------------------------------------------------ logs

    def log_text(self) -> str:
        """Everything the child printed so far, across restarts."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> list[str]:
        """The log lines that start a Python traceback (empty when the server never crashed)."""
        return [line for line in self.log_text().splitlines() if line.startswith("Traceback")]

    # ------------------------------------------------------------------ lifecycle

    def _command(self) -> list[str]:
        args = [self.python, "-m", "mimc_rx", "serve", "--host", self.host]
        args += ["--port", str(self.port)]
        if self.db_path is not None:
            args += ["--db", str(self.db_path)]
        else:
            args += ["--storage", str(self.storage_url)]
        if self.broker_url is not None:
            args += ["--broker", self.broker_url]
        if self.reuse_port:
            args.append("--reuse-port")
        for app in self.apps:
            args += ["--app", f"{app.app_id}:{app.app_key}:{app.app_secret}:{app.package}"]
        return [*args, *self.extra_args]

    async def start(self) -> None:
        """Start the child and return once it accepts connections.

        Raises:
            RuntimeError: it is already running.
            ServerStartError: it exited, or printed no ready line within ``ready_timeout``
                (it is killed then).
        """
        if self.is_running:
            raise RuntimeError("the server process is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            # Popen returns at once; asyncio's own subprocess API would need a child-watcher
            # thread on Python 3.11, so the child is polled from the loop instead.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C of the test run is not sent to it twice
            )
        self.starts += 1
        # A test that forgets to stop the server must not leave it running after the interpreter.
        weakref.finalize(self, _kill_quietly, self._proc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while True:
            match = _READY.search(self._log_from(offset))
            if match is not None:
                self.port = int(match["netloc"].rsplit(":", 1)[1])
                return
            if not self.is_running:
                raise ServerStartError(
                    "the server exited during startup",
                    returncode=self.returncode,
                    log_tail=self._log_from(offset)[-4000:],
                )
            if loop.time() > deadline:
                await self.kill()
                raise ServerStartError(
                    f"the server was not ready within {self.ready_timeout} s",
                    returncode=None,
                    log_tail=self._log_from(offset)[-4000:],
                )
            await asyncio.sleep(_POLL)

    def _log_from(self, offset: int) -> str:
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
        return ""

    async def _wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.is_running:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    async def kill(self) -> None:
        """SIGKILL the child and wait until it is gone: no shutdown, no flush. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await self._wait(30.0)

    async def stop(self, timeout: float = 10.0) -> int | None:  # noqa: ASYNC109
        """Stop gracefully (SIGTERM), SIGKILL after ``timeout`` seconds; the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            if not await self._wait(timeout):
                await self.kill()
        return proc.poll()

    async def restart(self, *, graceful: bool = False) -> None:
        """Kill (SIGKILL, or SIGTERM with ``graceful``) and start again on the same port and db."""
        if graceful:
            await self.stop()
        else:
            await self.kill()
        await self.start()

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ServerCluster:
    """``count`` server processes on one shared storage and broker (issue 14).

    Args:
        count: how many ``serve`` processes.
        storage_url: the storage they share (``serve --storage``), e.g. a fresh PostgreSQL
            database per test.
        broker_url: the broker they signal through (``serve --broker``).
        log_dir: each process logs to ``<log_dir>/node<i>.log``.
        shared_port: all on one port with ``SO_REUSEPORT`` (the kernel picks a process for each
            new connection); otherwise each on a port of its own, so a test can choose which
            process a client talks to.
        apps, extra_args, ready_timeout, env: as for :class:`ServerProcess`, for every process.

    Index it (``cluster[0]``) for the processes; :attr:`ws_url` and :attr:`http_url` are the
    first one's, which is every one's with ``shared_port``.
    """

    def __init__(
        self,
        count: int,
        *,
        storage_url: str,
        broker_url: str,
        log_dir: str | os.PathLike[str],
        shared_port: bool = False,
        apps: Sequence[AppConfig] = (),
        extra_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a cluster has at least one process")
        self.shared_port = shared_port
        self.processes = [
            ServerProcess(
                storage_url=storage_url,
                broker_url=broker_url,
                reuse_port=shared_port,
                log_path=Path(log_dir) / f"node{i}.log",
                apps=apps,
                extra_args=extra_args,
                ready_timeout=ready_timeout,
                env=env,
            )
            for i in range(count)
        ]

    def __repr__(self) -> str:
        return f"<ServerCluster {self.processes!r}>"

    def __len__(self) -> int:
        return len(self.processes)

    def __getitem__(self, index: int) -> ServerProcess:
        return self.processes[index]

    def __iter__(self) -> Iterator[ServerProcess]:
        return iter(self.processes)

    @property
    def app(self) -> AppConfig:
        """The default app, the same on every process."""
        return self.processes[0].app

    @property
    def ws_url(self) -> str:
        """The first process's websocket URL (everyone's with ``shared_port``)."""
        return self.processes[0].ws_url

    @property
    def http_url(self) -> str:
        """The first process's HTTP base URL."""
        return self.processes[0].http_url

    def urls(self) -> list[str]:
        """Every process's websocket URL, in order."""
        return [p.ws_url for p in self.processes]

    async def start(self) -> None:
        """Start every process; returns once all accept connections.

        With ``shared_port`` the first one picks the port and the others then bind it too;
        otherwise they all start at once (the storage's migrations take a lock of their own).
        """
        first, *rest = self.processes
        try:
            if self.shared_port:
                await first.start()
                for process in rest:
                    process.port = first.port
            else:
                rest = self.processes
            await asyncio.gather(*(p.start() for p in rest if not p.is_running))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every running process (SIGTERM, then SIGKILL)."""
        await asyncio.gather(*(p.stop() for p in self.processes))

    def tracebacks(self) -> list[str]:
        """The traceback lines of every process's log, prefixed with the log's name."""
        return [f"{p.log_path.name}: {line}" for p in self.processes for line in p.tracebacks()]

    async def __aenter__(self) -> ServerCluster:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
