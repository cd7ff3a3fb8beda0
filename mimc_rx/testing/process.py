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
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimc_rx import AccountTokenFetcher
    from mimc_rx.server.config import AppConfig

__all__ = ["ServerProcess", "ServerStartError"]

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
        db_path: the SQLite file; it outlives every kill and restart.
        port: the TCP port; 0 lets the first start pick one, kept for every restart.
        host: the interface to listen on.
        apps: the apps to serve; the demo app when empty.
        log_path: where the child's stdout and stderr go (appended); by default next to the
            database as ``<db name>.log``.
        extra_args: more ``serve`` options, e.g. ``["--idle-timeout", "5"]``.
        ready_timeout: seconds a start may take before :class:`ServerStartError`.
        python: the interpreter to run.
        env: extra environment variables for the child.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        apps: Sequence[AppConfig] = (),
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        if str(db_path) == ":memory:":
            raise ValueError("a restartable server needs a database file, not ':memory:'")
        self.port = port
        self.host = host
        self.apps = tuple(apps)
        if log_path is None:
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
        return f"<ServerProcess {self.host}:{self.port} {state} db={str(self.db_path)!r}>"

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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

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
        args += ["--port", str(self.port), "--db", str(self.db_path)]
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
