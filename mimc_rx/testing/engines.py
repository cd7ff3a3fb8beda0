"""Throw-away PostgreSQL and Redis servers for tests, started from Debian's packages.

The scale-out storage and broker (issue 14) are tested against the real engines, never against
fakes: a fake cannot show a row lock, a commit order or a Redis restart. These launchers start
private servers on 127.0.0.1 with their data in a temporary directory, so a test run needs no
system service, no configuration and no cleanup by hand::

    with PostgresEngine() as pg, RedisEngine() as redis:
        dsn = pg.create_database()          # a fresh, empty database per test
        ...
        redis.restart()                     # same port, empty data: what a crash looks like

Theory of operation
-------------------
* **PostgreSQL** refuses to run as root. When the caller is root (CI runs as root), the data
  directory is handed to an unprivileged system user (``postgres`` if Debian's package made it,
  else ``nobody``) and ``initdb`` and ``postgres`` run as that user (``subprocess``'s ``user=``);
  as any other user they simply run as the caller. Authentication is ``trust`` on 127.0.0.1 and on
  a unix socket inside the temporary directory, and durability is off (``fsync=off``): the data
  is thrown away anyway, and a test that measures commits must not wait for a disk.
* **Redis** runs with ``--save ''`` and ``--appendonly no``: nothing survives a restart, which is
  exactly the failure the broker must ride out (its presence entries vanish with the server).
* Ports are chosen free by binding port 0 just before the start; a start that loses the race for
  its port is retried on another. Readiness is the engine's own answer (``pg_isready``, a Redis
  ``PING``), polled with a deadline; a failed start raises :class:`EngineStartError` with the end
  of the engine's log.
* Everything is synchronous (``subprocess``), so the launchers work from session-scoped pytest
  fixtures and from plain scripts alike; an async test that restarts Redis mid-load calls
  ``await asyncio.to_thread(redis.restart)`` so its own traffic keeps running meanwhile.

:func:`find_postgres_bin` and :func:`find_redis_server` say whether the packages are installed;
the test fixtures skip with that reason when they are not.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "EngineStartError",
    "PostgresEngine",
    "RedisEngine",
    "find_postgres_bin",
    "find_redis_server",
    "free_port",
]

_POLL = 0.05
_PORT_TRIES = 5


class EngineStartError(RuntimeError):
    """An engine did not get ready; the message ends with the tail of its log."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- engine log ---\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (it may be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb``, ``postgres`` and ``pg_isready``, newest major first.

    Debian installs them under ``/usr/lib/postgresql/<major>/bin`` (not on PATH); elsewhere they
    are usually on PATH. ``MIMC_POSTGRES_BIN`` overrides both.
    """
    override = os.environ.get("MIMC_POSTGRES_BIN")
    candidates = [Path(override)] if override else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = [p for p in debian.iterdir() if p.name.replace(".", "").isdigit()]
        majors.sort(key=lambda p: float(p.name), reverse=True)
        candidates += [p / "bin" for p in majors]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "postgres", "pg_isready")):
            return directory
    return None


def find_redis_server() -> Path | None:
    """The ``redis-server`` executable (``MIMC_REDIS_SERVER`` overrides PATH), or None."""
    override = os.environ.get("MIMC_REDIS_SERVER")
    found = override if override else shutil.which("redis-server")
    return Path(found) if found and Path(found).is_file() else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _unprivileged_account() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL when we are root; None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EngineStartError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout)


class _Engine:
    """What both engines share: a child process, a temporary directory, ``with`` support.

    A subclass sets ``root`` at its first start and ``_proc`` at every start, and provides
    :meth:`start` and :meth:`stop`.
    """

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def is_running(self) -> bool:
        """True while the server process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class PostgresEngine(_Engine):
    """A private PostgreSQL cluster in a temporary directory, on 127.0.0.1.

    Args:
        bin_dir: where ``initdb``/``postgres`` live; found with :func:`find_postgres_bin`.
        port: the TCP port; 0 picks a free one.
        user: the database superuser's name (trust authentication, no password).
        settings: more ``postgres -c name=value`` settings (e.g. ``{"max_connections": "200"}``).
        ready_timeout: seconds ``initdb`` plus the start may take.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        port: int = 0,
        user: str = "mimc",
        settings: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise EngineStartError("PostgreSQL is not installed (initdb/postgres not found)")
        self.bin_dir = found
        self.port = port
        self.user = user
        self.settings = dict(settings or {})
        self.ready_timeout = ready_timeout
        self._account = _unprivileged_account()

    # ------------------------------------------------------------------ addresses

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` on this cluster (TCP on 127.0.0.1)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        """The server's log file (stdout and stderr)."""
        assert self.root is not None, "not started"
        return self.root / "postgres.log"

    # ------------------------------------------------------------------ lifecycle

    def _run_as(self) -> tuple[int | None, int | None, list[int] | None]:
        """``(user, group, extra_groups)`` for ``subprocess``: the unprivileged account or ours."""
        if self._account is None:
            return None, None, None
        return self._account.pw_uid, self._account.pw_gid, []

    def _chown(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def start(self) -> Self:
        """``initdb`` (first start only), then start the server and wait until it accepts."""
        if self.is_running:
            return self
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="mimc-pg-"))
            # The unprivileged account must reach its directory through the temporary root.
            self.root.chmod(0o755)
            self._chown(self.root)
            self._initdb()
        chosen = self.port
        for _ in range(_PORT_TRIES):
            self.port = chosen or free_port()
            if self._launch():
                return self
        raise EngineStartError("PostgreSQL did not start", log_tail=_tail(self.log_path))

    def _initdb(self) -> None:
        assert self.root is not None
        data = self.root / "data"
        user, group, extra_groups = self._run_as()
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            cwd=self.root,
            timeout=self.ready_timeout,
            check=False,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        if result.returncode != 0:
            raise EngineStartError(
                "initdb failed", log_tail=(result.stdout + result.stderr).decode(errors="replace")
            )

    def _launch(self) -> bool:
        assert self.root is not None
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            **self.settings,
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.root / "data")]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log = self.log_path.open("ab")
        self._chown(self.log_path)
        user, group, extra_groups = self._run_as()
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # most likely the port was taken meanwhile: try another
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return True
            time.sleep(_POLL)
        self.kill()
        raise EngineStartError("PostgreSQL did not get ready", log_tail=_tail(self.log_path))

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a random name unless given) and return its DSN.

        Each test gets its own database, so tests never see each other's rows and need no
        cleanup; ``CREATE DATABASE`` copies the empty template in a few tens of milliseconds.
        """
        name = name or f"t_{secrets.token_hex(6)}"
        self._psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _psql(self, sql: str) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(),
                "-c",
                sql,
            ],
            capture_output=True,
            timeout=self.ready_timeout,
            check=False,
        )
        if result.returncode != 0:
            raise EngineStartError(f"psql failed: {sql}", log_tail=result.stderr.decode())

    def stop(self) -> None:
        """Shut down cleanly (SIGINT: the fast shutdown mode)."""
        _stop_process(self._proc, signal.SIGINT, 30.0)

    def kill(self) -> None:
        """SIGKILL the server (its children exit when the postmaster is gone)."""
        _stop_process(self._proc, signal.SIGKILL, 10.0)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<PostgresEngine {self.host}:{self.port} {state} root={self.root}>"


class RedisEngine(_Engine):
    """A private ``redis-server`` on 127.0.0.1 with no persistence, restartable on its port.

    Args:
        executable: the ``redis-server`` binary; found with :func:`find_redis_server`.
        port: the TCP port; 0 picks a free one at the first start, kept for every restart.
        ready_timeout: seconds a start may take.
    """

    def __init__(
        self, *, executable: Path | None = None, port: int = 0, ready_timeout: float = 30.0
    ) -> None:
        super().__init__()
        found = executable or find_redis_server()
        if found is None:
            raise EngineStartError("redis-server is not installed")
        self.executable = found
        self.port = port
        self.ready_timeout = ready_timeout
        self.starts = 0
        """How many times the server was started (a restart counts)."""

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's log file, appended across restarts."""
        assert self.root is not None, "not started"
        return self.root / "redis.log"

    def start(self) -> Self:
        """Start the server (on the same port after the first start) and wait for ``PING``."""
        if self.is_running:
            return self
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="mimc-redis-"))
        keep_port = bool(self.port) and self.starts > 0
        for _ in range(_PORT_TRIES if not keep_port else 1):
            if not keep_port and not self.port:
                self.port = free_port()
            if self._launch():
                self.starts += 1
                return self
            if not keep_port:
                self.port = 0
        raise EngineStartError("redis-server did not start", log_tail=_tail(self.log_path))

    def _launch(self) -> bool:
        assert self.root is not None
        args = [
            str(self.executable),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(_POLL)
        self.kill()
        raise EngineStartError("redis-server did not get ready", log_tail=_tail(self.log_path))

    def ping(self) -> bool:
        """True when the server answers ``PING`` right now (a raw RESP exchange, no client)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        """Delete every key (between tests sharing one server)."""
        with socket.create_connection((self.host, self.port), timeout=5.0) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            answer = sock.recv(64)
        if not answer.startswith(b"+OK"):
            raise EngineStartError(f"FLUSHALL answered {answer!r}")

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM; nothing is saved)."""
        _stop_process(self._proc, signal.SIGTERM, 10.0)

    def kill(self) -> None:
        """SIGKILL the server."""
        _stop_process(self._proc, signal.SIGKILL, 10.0)

    def restart(self, *, down_for: float = 0.0, hard: bool = True) -> None:
        """Kill (or stop) the server, stay down ``down_for`` seconds, start it on the same port.

        Every key is lost, as after a crash of a Redis without persistence.
        """
        if hard:
            self.kill()
        else:
            self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<RedisEngine {self.host}:{self.port} {state}>"
