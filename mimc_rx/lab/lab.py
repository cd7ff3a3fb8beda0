"""``NetworkLab``: a fault proxy in front of a server, users behind it, load through it.

::

    lab = await NetworkLab.start("lab.db")       # a server process of its own (restartable)
    bob = await lab.user("bob")                   # a MIMCUser on bob's own proxy route
    lab.delay("bob", 80, jitter=20)               # only bob's traffic, in milliseconds
    run = await lab.load(users=50, rate=500, seconds=10,
                         actions={3.0: lambda: lab.partition("vu001", seconds=3)})
    run.stats(); run.frame(); run.faults(); run.plot_latency()
    await lab.close()

Theory of operation. Every user (a ``MIMCUser`` from :meth:`NetworkLab.user` or a virtual user
of :meth:`NetworkLab.load`) reaches the server's websocket through a
:class:`~mimc_rx.testing.FaultProxy` route named after it, so a fault can hit one user or all
of them. Tokens and REST calls go to the server directly: a partition of bob's network should
stall bob's messages, not the lab's own bookkeeping. Network faults are the proxy's (and its
fault log); server faults (a SIGKILL and restart, expiring tokens) are the lab's own, and both
logs merge into one list of :class:`~mimc_rx.lab.results.RunFault` spans on the loop clock, which
each run shifts to its own zero.

A :class:`~mimc_rx.testing.ServerProcess` (or a database path, from which the lab makes one)
can be killed and restarted, and runs the server on its own CPU, so load figures are not the
client's and the server's work on one core. An in-process
:class:`~mimc_rx.server.LocalServer` works for everything but :meth:`restart_server`.
:meth:`expire_tokens` works with both: it asks the server's admin route
``POST /api/account/token/expire`` with the app's credentials (docs/server.md).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mimc_rx.lab.load import Action, Endpoint, HttpTokens, run_load
from mimc_rx.lab.results import RunFault
from mimc_rx.lab.run import LoadRun
from mimc_rx.lab.spec import LoadSpec
from mimc_rx.testing import FaultKind, FaultProxy, FaultRecord, ServerProcess

if TYPE_CHECKING:
    import pandas as pd

    from mimc_rx import MIMCUser
    from mimc_rx.server import AppConfig, LocalServer

__all__ = ["LabError", "NetworkLab"]


class LabError(RuntimeError):
    """The lab cannot do this with the server it was given (e.g. restart an in-process one)."""


def _detail(rec: FaultRecord) -> str:
    if rec.kind is FaultKind.DELAY:
        return f"{rec.delay_ms:g} +- {rec.jitter_ms:g} ms"
    if rec.kind is FaultKind.BANDWIDTH:
        return "unlimited" if rec.kbps is None else f"{rec.kbps:g} kbps"
    if rec.kind is FaultKind.PAUSE and rec.seconds is not None:
        return f"{rec.seconds:g} s"
    return ""


class NetworkLab:
    """A server, a fault proxy in front of it, and the faults applied so far.

    Make one with :meth:`start`; close it with :meth:`close` (or ``async with``).
    """

    def __init__(
        self,
        server: LocalServer | ServerProcess,
        proxy: FaultProxy,
        *,
        owns_server: bool,
    ) -> None:
        self.server = server
        self.proxy = proxy
        self._owns_server = owns_server
        app = server.app
        self._tokens_issued: dict[str, list[str]] = {}
        self.tokens = HttpTokens(
            server.http_url,
            app_id=app.app_id,
            app_key=app.app_key,
            app_secret=app.app_secret,
            on_token=self._remember_token,
        )
        self._server_faults: list[RunFault] = []
        self._users: list[MIMCUser] = []

    @classmethod
    async def start(
        cls,
        server: LocalServer | ServerProcess | str | os.PathLike[str],
        *,
        seed: int | None = None,
    ) -> NetworkLab:
        """Put a fault proxy in front of ``server`` and return the lab.

        Args:
            server: a ``ServerProcess`` or ``LocalServer`` (started if it is not running; the
                lab then stops it on close), or a database path: the lab runs
                ``python -m mimc_rx serve`` on it as a ``ServerProcess`` of its own.
            seed: seeds the proxy's jitter.
        """
        owns = False
        if isinstance(server, str | os.PathLike):
            server = ServerProcess(server)
        if not server.is_running:
            await server.start()
            owns = True
        proxy = FaultProxy.for_url(server.ws_url, rng=random.Random(seed))
        await proxy.start()
        return cls(server, proxy, owns_server=owns)

    async def close(self) -> None:
        """Close the lab's users, the proxy, and the server if the lab started it."""
        for user in self._users:
            await user.close()
        await self.proxy.aclose()
        await self.tokens.aclose()
        if self._owns_server:
            await self.server.stop()

    async def __aenter__(self) -> NetworkLab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<NetworkLab {self.server!r} routes={len(self.proxy.routes)}>"

    # ------------------------------------------------------------------ users

    @property
    def app(self) -> AppConfig:
        """The app the lab's users log in to."""
        return self.server.app

    async def route(self, name: str) -> str:
        """The websocket URL of ``name``'s proxy route, opening the route on first use."""
        await self.proxy.route(name)
        return self.proxy.url(name)

    def _remember_token(self, account: str, answer: Mapping[str, Any]) -> None:
        data = answer.get("data")
        if isinstance(data, Mapping) and isinstance(data.get("token"), str):
            self._tokens_issued.setdefault(account, []).append(data["token"])

    async def user(self, name: str, *, login: bool = True, **kwargs: Any) -> MIMCUser:
        """A ``MIMCUser`` whose websocket goes through route ``name`` (tokens and REST direct).

        Args:
            name: the account, also the route's name (faults address the user by it).
            login: log in before returning.
            kwargs: more ``MIMCUser`` arguments (``reconnect=``, ``auto_pull=``, ...).
        """
        from mimc_rx import MIMCUser

        url = await self.route(name)
        tokens = self.tokens

        async def fetch() -> Mapping[str, Any]:
            return await tokens(name)

        user = MIMCUser(
            name,
            app_id=self.app.app_id,
            token_fetcher=fetch,
            url=url,
            api_url=self.server.http_url,
            **kwargs,
        )
        self._users.append(user)
        if login:
            await user.login()
        return user

    # ------------------------------------------------------------------ network faults

    def delay(self, route: str | None, ms: float, *, jitter: float = 0.0) -> FaultRecord:
        """Delay ``route``'s traffic (None: everyone's) by ``ms`` +- ``jitter`` ms; 0 clears."""
        return self.proxy.delay(route, ms, jitter=jitter)

    def bandwidth(self, route: str | None, kbps: float | None) -> FaultRecord:
        """Limit each direction of ``route`` to ``kbps`` kilobits per second (None clears)."""
        return self.proxy.bandwidth(route, kbps)

    def partition(self, route: str | None = None, *, seconds: float | None = None) -> FaultRecord:
        """Hold ``route``'s traffic for ``seconds`` (or until :meth:`heal`); nothing is lost."""
        return self.proxy.pause(route, seconds=seconds)

    pause = partition

    def cut(self, route: str | None = None) -> FaultRecord:
        """Reset (RST) ``route``'s connections now; clients reconnect by themselves."""
        return self.proxy.cut(route)

    def half_open(self, route: str | None = None) -> FaultRecord:
        """Freeze ``route``'s connections silently until the client's keepalive gives up."""
        return self.proxy.half_open(route)

    def heal(self, route: str | None = None) -> FaultRecord:
        """Clear the faults of ``route`` (None: every fault of every route)."""
        return self.proxy.heal(route)

    # ------------------------------------------------------------------ server faults

    async def restart_server(self, *, graceful: bool = False) -> RunFault:
        """Kill the server process (SIGKILL, or SIGTERM with ``graceful``) and start it again
        on the same port and database; returns once it accepts connections.

        Raises:
            LabError: the server runs in this process (a ``LocalServer``): it cannot be killed
                without killing the lab. Start the lab with a ``ServerProcess`` or a db path.
        """
        server = self.server
        if not isinstance(server, ServerProcess):
            raise LabError(
                "restart_server needs a server process: NetworkLab.start(ServerProcess(db)) "
                "or NetworkLab.start('path/to.db'); an in-process LocalServer cannot be killed"
            )
        loop = asyncio.get_running_loop()
        start = loop.time()
        await server.restart(graceful=graceful)
        fault = RunFault(
            kind="restart",
            route=None,
            start=start,
            end=loop.time(),
            detail="SIGTERM" if graceful else "SIGKILL",
        )
        self._server_faults.append(fault)
        return fault

    async def expire_tokens(self, name: str) -> RunFault:
        """Expire every token the lab fetched for ``name``, on the server, now.

        A BIND with one of them is refused with ``token-expired`` and REST calls with them
        answer 401; a bound connection stays up (the server checks tokens at BIND). The lab's
        users fetch a fresh token for each login, so they recover at their next reconnect;
        combine with :meth:`cut` to force one. Works with a ``LocalServer`` and a server
        process alike, through ``POST /api/account/token/expire`` (the app's credentials).

        Raises:
            LabError: the server refused (a server without that route, such as the cloud).
        """
        answer = await self.tokens.expire(name, self._tokens_issued.get(name, []))
        data = answer.get("data")
        if answer.get("code") != 200 or not isinstance(data, Mapping):
            raise LabError(f"the server did not expire {name}'s tokens: {answer.get('message')}")
        expired = data.get("expired")
        loop_now = asyncio.get_running_loop().time()
        fault = RunFault(
            kind="expire-tokens", route=name, start=loop_now, end=loop_now, detail=f"{expired}"
        )
        self._server_faults.append(fault)
        return fault

    # ------------------------------------------------------------------ the log

    @property
    def faults(self) -> list[RunFault]:
        """Every fault so far, network and server, as loop-time spans in start order."""
        spans = [
            RunFault(
                kind=str(s.kind),
                route=s.route,
                start=s.start,
                end=s.end,
                detail=_detail(s.record),
            )
            for s in self.proxy.spans()
            if s.kind is not FaultKind.HEAL
        ]
        return sorted([*spans, *self._server_faults], key=lambda f: f.start)

    # ------------------------------------------------------------------ load

    async def load(
        self,
        *,
        users: int = 50,
        rate: float = 500.0,
        seconds: float = 10.0,
        mix: Mapping[str, float] | None = None,
        payload_bytes: tuple[int, int] = (50, 2000),
        actions: Mapping[float, Action] | None = None,
        progress: bool = True,
        label: str = "",
        seed: int | None = None,
        drain: float = 10.0,
        prefix: str = "vu",
        group_size: int = 5,
        arrivals: str = "uniform",
    ) -> LoadRun:
        """Run an open-loop load through the proxy; every virtual user has its own route.

        The routes are named after the accounts (``vu000``, ``vu001``, ...), so
        ``lab.delay("vu003", 80)`` before or during a run (see ``actions``) shapes one user.
        See :class:`~mimc_rx.lab.spec.LoadSpec` for the arguments and
        :func:`~mimc_rx.lab.load.run_load` for ``actions`` and ``progress``.
        """
        spec = LoadSpec(
            users=users,
            rate=rate,
            seconds=seconds,
            mix=dict(mix) if mix is not None else {"p2p": 0.8, "group": 0.2},
            payload_bytes=payload_bytes,
            group_size=group_size,
            arrivals=arrivals,
            drain=drain,
            prefix=prefix,
            seed=seed,
            label=label,
        )
        await self.open_routes(spec.accounts())
        endpoint = Endpoint(
            app_id=self.app.app_id,
            http_url=self.server.http_url,
            tokens=self.tokens,
            url_for=self.proxy.url,
            faults=lambda: self.faults,
        )
        return await run_load(spec, endpoint, actions=actions, progress=progress)

    async def open_routes(self, names: list[str]) -> None:
        """Open a route for each name (so faults can address users before a run starts)."""
        for name in names:
            await self.proxy.route(name)

    @staticmethod
    def compare(runs: Mapping[str, LoadRun]) -> pd.DataFrame:
        """The headline figures of several runs side by side, one row per condition."""
        from mimc_rx.lab.frames import compare_frame

        return compare_frame(runs)
