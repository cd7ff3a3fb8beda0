"""Running the server: in the current event loop, or in a background thread.

:class:`LocalServer` is the Python API behind ``python -m mimc_rx serve``::

    async with LocalServer(db=":memory:") as server:      # inside Jupyter too (top-level await)
        fetch = server.token_fetcher("alice")             # the client's token_fetcher
        print(server.ws_url, server.http_url)

It starts uvicorn as a task of the *running* loop: no ``asyncio.run``, and no signal handlers
(uvicorn's would capture Ctrl-C of the notebook); the CLI installs its own. Plain scripts use
:meth:`LocalServer.start_in_thread`, which runs the same server on a private loop in a daemon
thread::

    with LocalServer(db="chat.db").start_in_thread() as server:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from mimc_rx.server.config import DEMO_APP, AppConfig, ServerConfig, netloc

if TYPE_CHECKING:
    from mimc_rx.server.broker import Broker
    from mimc_rx.server.hub import Hub
    from mimc_rx.server.listener import ConnectionGuard
    from mimc_rx.server.storage.interface import Storage

__all__ = ["LocalServer", "ServerThread", "TokenFetcher", "broker_from_url", "storage_from_url"]

log = logging.getLogger(__name__)

TokenFetcher = Callable[[], Awaitable[dict[str, Any]]]
"""What :meth:`LocalServer.token_fetcher` returns: an async callable giving the raw answer."""

_T = TypeVar("_T")

_MAX_FRAME = 1 << 20  # one MIMC frame per websocket message; ours are far below 1 MiB


def _make_uvicorn_server(app: Any, guard: ConnectionGuard) -> Any:
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        # The embedding program owns the signals (Jupyter's Ctrl-C, the CLI's SIGTERM).
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    # Our subclasses of uvicorn's h11 and websockets-sansio protocols (server/listener.py):
    # handshake timeout, pending cap, refusals that are sent, client errors summarised.
    http, ws = guard.protocols()
    config = uvicorn.Config(
        app,
        lifespan="off",
        http=http,
        ws=ws,
        ws_per_message_deflate=False,
        ws_ping_interval=None,  # liveness is the protocol's PING + our idle timeout
        ws_max_size=_MAX_FRAME,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return _EmbeddedServer(config)


def storage_from_url(url: str | os.PathLike[str], *, sync_full: bool = False) -> Storage:
    """The storage a URL names: ``postgresql://...`` (or ``postgres://``), else SQLite.

    ``sqlite:///path/to/chat.db``, ``sqlite://:memory:``, a plain path or ``":memory:"`` open
    the embedded SQLite store. Nothing is connected before ``await storage.open()``.
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        from mimc_rx.server.storage.postgres import PostgresStorage

        return PostgresStorage(text)
    from mimc_rx.server.storage.sqlite_async import SQLiteStorage

    if text.startswith("sqlite://"):
        # sqlite:///abs/path keeps its leading slash; sqlite://rel/path is relative.
        text = text.removeprefix("sqlite://") or ":memory:"
    elif "://" in text:
        raise ValueError(f"unknown storage URL scheme: {text.split('://')[0]!r}")
    return SQLiteStorage.at(text, sync_full=sync_full)


def broker_from_url(url: str | None) -> Broker:
    """The broker a URL names: ``redis://...`` (or ``rediss://``), or the in-process one."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        from mimc_rx.server.broker_redis import RedisBroker

        return RedisBroker(url)
    if url and url not in ("local", "local://"):
        raise ValueError(f"unknown broker URL: {url!r}")
    from mimc_rx.server.broker import LocalBroker

    return LocalBroker()


def _done_now(coro: Coroutine[Any, Any, _T]) -> _T:
    # Runs a storage coroutine that never suspends (the embedded SQLite one) to its end.
    try:
        coro.send(None)
    except StopIteration as stop:
        result: _T = stop.value
        return result
    coro.close()
    raise RuntimeError("seeding from synchronous code needs the embedded SQLite storage")


class LocalServer:
    """A wire-compatible MIMC server: websocket at ``/`` and HTTP APIs under ``/api``, one port.

    Args:
        db: SQLite file for the durable state, or ``":memory:"`` for a throw-away server;
            used when neither ``storage`` nor ``config.storage_url`` is given.
        apps: the apps to serve; :data:`~mimc_rx.server.config.DEMO_APP` when empty.
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        config: limits, timeouts and clock.
        reuse_port: bind with ``SO_REUSEPORT``, so several server processes on one host share
            the port and the kernel spreads new connections over them (docs/scale-out.md);
            they must share their storage and broker too. Linux and the BSDs only.
        storage: the durable state, opened by :meth:`start` and closed by :meth:`stop`;
            default from ``config.storage_url`` (``sqlite:///...`` or ``postgresql://...``),
            else the SQLite file ``db``.
        broker: presence and signals between server processes; default from
            ``config.broker_url`` (``redis://...``), else the in-process
            :class:`~mimc_rx.server.broker.LocalBroker`.
    """

    def __init__(
        self,
        *,
        db: str | os.PathLike[str] = ":memory:",
        apps: Sequence[AppConfig] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        config: ServerConfig | None = None,
        reuse_port: bool = False,
        storage: Storage | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.db = os.fspath(db)
        self.storage = storage
        self.broker = broker
        self.apps: tuple[AppConfig, ...] = tuple(apps) or (DEMO_APP,)
        ids = [a.app_id for a in self.apps]
        if len(set(ids)) != len(ids):
            raise ValueError("two apps share an app id")
        self.host = host
        self.port = port
        self.config = config or ServerConfig()
        self.reuse_port = reuse_port
        if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError("SO_REUSEPORT is not available on this platform")
        self._uvicorn: Any = None
        self.guard: ConnectionGuard | None = None
        """The connection guard while running: client error counts, pending connections."""
        self._task: asyncio.Task[None] | None = None
        self.hub: Hub | None = None
        """The routing and storage state while running (for tests and introspection)."""

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<LocalServer {self.ws_url} {state} db={self.db!r}>"

    # ------------------------------------------------------------------ addresses

    @property
    def app(self) -> AppConfig:
        """The default (first) app."""
        return self.apps[0]

    @property
    def _netloc(self) -> str:
        return netloc(self.host, self.port)

    @property
    def ws_url(self) -> str:
        """The websocket URL clients connect to (root path, docs/protocol.md 1)."""
        return f"ws://{self._netloc}/"

    @property
    def http_url(self) -> str:
        """The base URL of the HTTP APIs (``/api/...`` is below it), without a trailing slash."""
        return f"http://{self._netloc}"

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store, bind the port and serve in the running loop; returns once ready."""
        if self._task is not None:
            raise RuntimeError("the server is already started")
        from mimc_rx.server.auth import TokenService
        from mimc_rx.server.hub import Hub
        from mimc_rx.server.listener import CLIENT_LEFT, ConnectionGuard
        from mimc_rx.server.rest import build_app

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every small response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        storage = self.storage
        if storage is None:
            url = self.config.storage_url or self.db
            storage = self.storage = storage_from_url(url, sync_full=self.config.sync_full)
        broker = self.broker
        if broker is None:
            broker = self.broker = broker_from_url(self.config.broker_url)
        try:
            await storage.open()
            for app in self.apps:
                await storage.save_app(app)
            await storage.prune_tokens(self.config.clock())
            apps = {a.app_id: a for a in self.apps}
            tokens = TokenService(storage, apps, self.config, fe_domain=self.host)
            hub = Hub(storage, apps, self.config, tokens, broker)
            await hub.start()
        except BaseException:
            sock.close()
            await storage.close()
            raise
        self.hub = hub
        self.guard = ConnectionGuard(self.config, hub.unbound)
        asgi = build_app(hub)
        asgi.http.state.client_left = functools.partial(self.guard.client_error, CLIENT_LEFT)
        self._uvicorn = _make_uvicorn_server(asgi, self.guard)
        self._task = asyncio.get_running_loop().create_task(
            self._uvicorn.serve(sockets=[sock]), name=f"mimc-rx server :{self.port}"
        )
        while not self._uvicorn.started:
            if self._task.done():
                await hub.close()
                self._task.result()  # raises the startup error
                raise RuntimeError("the server stopped during startup")
            await asyncio.sleep(0.005)
        log.info("serving %s and %s (db %s)", self.ws_url, self.http_url, self.db)

    async def stop(self) -> None:
        """Close every connection, stop serving and close the store. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        hub = self.hub
        try:
            if hub is not None:
                for conn in list(hub.connections):
                    conn.close(1001, "server shutting down")
                await hub.flush()
            self._uvicorn.should_exit = True
            await asyncio.gather(task, return_exceptions=True)
        finally:
            if hub is not None:
                await hub.close()
            if self.guard is not None:
                self.guard.close()
            log.info("stopped %s", self.ws_url)

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 30.0) -> ServerThread:
        """Run this server on a private event loop in a daemon thread; returns once ready."""
        runner = ServerThread(self)
        runner.start(timeout)
        return runner

    # ------------------------------------------------------------------ seeding

    def _running_hub(self) -> Hub:
        if self.hub is None or not self.is_running:
            raise RuntimeError("seed a running server: inside `async with LocalServer(...)`")
        return self.hub

    def _now(self, name: str, coro: Coroutine[Any, Any, _T]) -> _T:
        # The synchronous seed_* run their async twin to its end at once, which only the
        # embedded SQLite storage allows (its calls never suspend).
        from mimc_rx.server.storage.sqlite_async import SQLiteStorage

        try:
            hub = self._running_hub()
            if not isinstance(hub.storage, SQLiteStorage):
                raise RuntimeError(
                    f"LocalServer.{name} is synchronous and works on the embedded SQLite storage "
                    f"only; on {hub.storage!r} use `await server.{name}_async(...)`"
                )
        except RuntimeError:
            coro.close()
            raise
        return _done_now(coro)

    def seed_user(
        self,
        account: str,
        *,
        uuid: int | None = None,
        security_key: str | None = None,
        token: str | None = None,
        app: AppConfig | int | None = None,
        last_sequence: int = 0,
        token_ttl: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`seed_user_async` from synchronous code, on the embedded SQLite storage only.

        Raises:
            RuntimeError: the server is not running, or its storage is not SQLite.
        """
        seeding = self.seed_user_async(
            account,
            uuid=uuid,
            security_key=security_key,
            token=token,
            app=app,
            last_sequence=last_sequence,
            token_ttl=token_ttl,
        )
        return self._now("seed_user", seeding)

    async def seed_user_async(
        self,
        account: str,
        *,
        uuid: int | None = None,
        security_key: str | None = None,
        token: str | None = None,
        app: AppConfig | int | None = None,
        last_sequence: int = 0,
        token_ttl: float | None = None,
    ) -> dict[str, Any]:
        """Create an account with a chosen identity and register a token for it.

        The token service picks uuids, keys and tokens at random; seeding picks them, so that a
        recorded session (the golden vectors of the official SDK, a test fixture, an account
        moved from another server) can log in here unchanged: its BIND frame carries the
        token and a signature made with the security key (docs/protocol.md 6.3). Call it from the
        server's event loop while the server runs; the change is committed at once. Works on
        every storage; :meth:`seed_user` is the synchronous twin for SQLite.

        Args:
            account: the app account.
            uuid: the ``miUserId``; random for a new account, the existing one by default.
            security_key: the ``miUserSecurityKey`` (base64 text); as for ``uuid``.
            token: the token to register (random when None); it stays valid ``token_ttl``
                seconds (default ``ServerConfig.token_ttl``). Earlier tokens stay valid.
            app: the app (default: the first served app).
            last_sequence: the user's sequence space continues above this value (6.15).

        Returns:
            The token service's answer ``data`` for this account (8.1), as a client's token
            fetcher would return it inside ``{"code": 200, "message": "success", "data": ...}``.

        Raises:
            ValueError: the identity conflicts with an existing account, uuid or token.
            RuntimeError: the server is not running.
        """
        from mimc_rx.server.storage import new_security_key, random_id

        hub = self._running_hub()
        chosen = self._pick_app(app)
        storage = hub.storage
        existing = await storage.find_user(chosen.app_id, account)
        if uuid is None:
            uuid = existing.uuid if existing is not None else random_id()
            while existing is None and await storage.user(uuid) is not None:
                uuid = random_id()
        if security_key is None:
            security_key = existing.security_key if existing is not None else new_security_key()
        user = await storage.import_user(
            chosen.app_id, account, uuid=uuid, security_key=security_key, last_seq=last_sequence
        )
        token = token or secrets.token_urlsafe(32)
        return await hub.tokens.grant(chosen, user, token, ttl=token_ttl)

    def seed_topic(
        self,
        topic_id: int,
        *,
        owner: str,
        members: Sequence[str] = (),
        name: str = "",
        app: AppConfig | int | None = None,
    ) -> int:
        """:meth:`seed_topic_async` from synchronous code, on the embedded SQLite storage only.

        Raises:
            RuntimeError: the server is not running, or its storage is not SQLite.
        """
        seeding = self.seed_topic_async(topic_id, owner=owner, members=members, name=name, app=app)
        return self._now("seed_topic", seeding)

    async def seed_topic_async(
        self,
        topic_id: int,
        *,
        owner: str,
        members: Sequence[str] = (),
        name: str = "",
        app: AppConfig | int | None = None,
    ) -> int:
        """Create a normal group (docs/protocol.md 8.3) with a chosen id; returns the id.

        Accounts are created as the token service would create them. The owner is a member.

        Raises:
            ValueError: the id is taken, or the group would exceed ``max_group_members``.
            RuntimeError: the server is not running.
        """
        hub = self._running_hub()
        chosen = self._pick_app(app)
        storage = hub.storage
        uuids = [(await storage.ensure_user(chosen.app_id, a)).uuid for a in (owner, *members)]
        if len(set(uuids)) > self.config.max_group_members:
            raise ValueError(f"a group has at most {self.config.max_group_members} members")
        topic = await storage.create_topic(
            app_id=chosen.app_id,
            name=name,
            owner=uuids[0],
            members=uuids[1:],
            now_ms=self.config.now_ms(),
            topic_id=topic_id,
        )
        return topic.topic_id

    def seed_uc_topic(
        self,
        topic_id: int,
        *,
        owner: str,
        members: Sequence[str] = (),
        name: str = "",
        app: AppConfig | int | None = None,
    ) -> int:
        """:meth:`seed_uc_topic_async` from synchronous code, on the embedded SQLite storage only.

        Raises:
            RuntimeError: the server is not running, or its storage is not SQLite.
        """
        seeding = self.seed_uc_topic_async(
            topic_id, owner=owner, members=members, name=name, app=app
        )
        return self._now("seed_uc_topic", seeding)

    async def seed_uc_topic_async(
        self,
        topic_id: int,
        *,
        owner: str,
        members: Sequence[str] = (),
        name: str = "",
        app: AppConfig | int | None = None,
    ) -> int:
        """Create an unlimited group (docs/protocol.md 8.2, 6.12) with a chosen id; returns the id.

        The owner and ``members`` are members already (no JOIN needed).

        Raises:
            ValueError: the id is taken.
            RuntimeError: the server is not running.
        """
        hub = self._running_hub()
        chosen = self._pick_app(app)
        storage = hub.storage
        owner_uuid = (await storage.ensure_user(chosen.app_id, owner)).uuid
        topic = await storage.create_uc_topic(
            app_id=chosen.app_id,
            name=name,
            owner=owner_uuid,
            now_ms=self.config.now_ms(),
            topic_id=topic_id,
        )
        for account in members:
            member = await storage.ensure_user(chosen.app_id, account)
            await storage.uc_join(topic.topic_id, member.uuid)
        return topic.topic_id

    # ------------------------------------------------------------------ tokens

    def _pick_app(self, app: AppConfig | int | None) -> AppConfig:
        if app is None:
            return self.app
        if isinstance(app, AppConfig):
            return app
        for candidate in self.apps:
            if candidate.app_id == app:
                return candidate
        raise KeyError(f"app {app} is not served here")

    async def fetch_token(self, account: str, app: AppConfig | int | None = None) -> dict[str, Any]:
        """Ask the token service (over HTTP, protocol.md 8.1) for a token; the raw JSON answer."""
        import httpx

        chosen = self._pick_app(app)
        body = {
            "appId": str(chosen.app_id),
            "appKey": chosen.app_key,
            "appSecret": chosen.app_secret,
            "appAccount": account,
        }
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.post(f"{self.http_url}/api/account/token", json=body)
            answer: dict[str, Any] = response.json()
            return answer

    def token_fetcher(self, account: str, app: AppConfig | int | None = None) -> TokenFetcher:
        """A token fetcher for ``account``, the shape ``MIMCUser(token_fetcher=...)`` expects.

        Each call fetches a fresh token and returns the service's raw answer (a dict).
        """
        chosen = self._pick_app(app)

        async def fetch() -> dict[str, Any]:
            return await self.fetch_token(account, chosen)

        return fetch


class ServerThread:
    """A :class:`LocalServer` running on its own loop in a daemon thread (for plain scripts).

    Attributes and URLs are those of the wrapped server; :meth:`stop` (or leaving the ``with``
    block) stops it and joins the thread.
    """

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<ServerThread {self.server!r}>"

    @property
    def ws_url(self) -> str:
        """The websocket URL."""
        return self.server.ws_url

    @property
    def http_url(self) -> str:
        """The HTTP base URL."""
        return self.server.http_url

    @property
    def apps(self) -> tuple[AppConfig, ...]:
        """The served apps."""
        return self.server.apps

    @property
    def app(self) -> AppConfig:
        """The default app."""
        return self.server.app

    def token_fetcher(self, account: str, app: AppConfig | int | None = None) -> TokenFetcher:
        """Same as :meth:`LocalServer.token_fetcher` (usable from any event loop)."""
        return self.server.token_fetcher(account, app)

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and wait until the server is ready (or raise its startup error)."""
        self._thread = threading.Thread(target=self._run, name="mimc-rx server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server did not start within {timeout} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and join the thread. Idempotent."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
