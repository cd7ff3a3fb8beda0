"""A fault-injecting TCP proxy for tests and the notebook network lab.

``FaultProxy`` sits on 127.0.0.1 between clients and a server and forwards bytes both ways
without parsing them, so it works for the websocket gateway, the HTTP APIs and any other TCP
protocol, and client bytes can never make it fail. Faults change live while traffic flows::

    async with FaultProxy.for_url(server.ws_url) as proxy:
        await proxy.route("bob")                  # bob gets a listening port of his own
        bob = MIMCUser("bob", ..., url=proxy.url("bob"))
        proxy.delay("bob", 80, jitter=20)         # only bob's connections, in milliseconds
        proxy.pause(None, seconds=3)              # everyone: hold traffic 3 s, then release
        proxy.cut("bob")                          # RST both sides of bob's connections now
        proxy.heal()                              # clear every fault

Theory of operation. Each *route* is one listening port; a user addressed by name simply
connects to its route's port, so no protocol parsing is needed to tell users apart (the
default route, :data:`DEFAULT_ROUTE`, exists from the start). Faults live in *conditions*:
one layer for all routes and one per route; a connection obeys both layers (delays add up,
either layer's pause holds it, each layer's bandwidth limit applies). Every accepted connection
gets one upstream connection and two directions; each direction is a reader task feeding a small
bounded queue and a writer task draining it. The reader stamps each chunk with its due time
(arrival + delay + jitter); the one writer takes chunks in arrival order and waits for each one's
due time, the gate (pause, half-open) and the token buckets, then writes, so jitter never
reorders bytes (a chunk due early waits behind the one ahead of it, as on TCP). The queue bound
is the memory bound: a held direction stops reading and TCP flow control pushes back on the
sender.

Instant faults (``cut``) act on the connections open at that moment. ``half_open`` freezes
the connections of its scope, and those accepted while it lasts, without closing them: nothing
is read or written, so the peer sees silence. Healing resets such frozen connections (a peer that
lost its state answers with RST), so they never linger. Every fault applied, and every timed
pause that ends by itself, is appended to :attr:`FaultProxy.faults` with its loop and wall time;
:meth:`FaultProxy.spans` pairs them into intervals a plot can shade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from mimc_rx.testing.faults import FaultKind, FaultRecord, FaultSpan, fault_spans

__all__ = ["DEFAULT_ROUTE", "FaultProxy", "RouteStats"]

log = logging.getLogger(__name__)

DEFAULT_ROUTE = "default"
"""The route every proxy opens at start; :attr:`FaultProxy.port` is its port."""

_UP, _DOWN = 0, 1  # client -> server, server -> client
_RESET = None  # queue marker: the source was reset; an empty chunk marks a clean EOF


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteStats:
    """Counters of one route since the proxy started.

    Attributes:
        route: the route's name.
        port: its listening port.
        connections_total: connections accepted.
        connections_open: connections open now.
        refused: connections reset at once because the proxy was full or upstream was down.
        cuts: connections reset by ``cut``, or by ``heal`` after ``half_open``.
        bytes_up: bytes forwarded from clients to the server.
        bytes_down: bytes forwarded from the server to clients.
    """

    route: str
    port: int
    connections_total: int
    connections_open: int
    refused: int
    cuts: int
    bytes_up: int
    bytes_down: int


class _TokenBucket:
    """Bytes per second with a small burst; a taker that overdraws sleeps off the debt."""

    def __init__(self, kbps: float, clock: Callable[[], float]) -> None:
        self.rate = kbps * 1000.0 / 8.0
        self.burst = max(4096.0, self.rate * 0.05)
        self.tokens = self.burst
        self._clock = clock
        self._last = clock()

    async def take(self, n: int) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        self.tokens -= n
        if self.tokens < 0:
            # Later takers see the debt too, so concurrent writers share the rate.
            await asyncio.sleep(-self.tokens / self.rate)


@dataclass(slots=True)
class _Conditions:
    """The faults in force on one layer (all routes, or one route)."""

    delay: float = 0.0
    jitter: float = 0.0
    buckets: tuple[_TokenBucket, _TokenBucket] | None = None
    kbps: float | None = None
    paused: bool = False
    release: asyncio.TimerHandle | None = None
    half_open: bool = False

    def clear(self) -> None:
        if self.release is not None:
            self.release.cancel()
        self.delay = self.jitter = 0.0
        self.buckets = self.kbps = self.release = None
        self.paused = self.half_open = False


@dataclass(slots=True)
class _Route:
    name: str
    server: asyncio.Server
    port: int
    conditions: _Conditions = field(default_factory=_Conditions)
    connections: set[_Connection] = field(default_factory=set)
    connections_total: int = 0
    refused: int = 0
    cuts: int = 0
    bytes: list[int] = field(default_factory=lambda: [0, 0])


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close abortively: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One client connection, its upstream connection and the two directions between them."""

    def __init__(
        self,
        proxy: FaultProxy,
        route: _Route,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.proxy, self.route = proxy, route
        self.client = (reader, writer)
        self.upstream: asyncio.StreamWriter | None = None
        self.frozen = proxy._half_open(route)
        self.task: asyncio.Task[None] | None = None

    def blocked(self) -> bool:
        return self.frozen or self.proxy._paused(self.route)

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        while predicate():
            await self.proxy._changed.wait()

    def reset(self) -> None:
        """RST both sides now and stop forwarding."""
        _reset(self.client[1])
        _reset(self.upstream)
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        client_reader, client_writer = self.client
        try:
            if self.frozen:
                await asyncio.Future()  # silent until healed (reset) or the proxy closes
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.proxy.upstream), self.proxy.connect_timeout
                )
            except (OSError, TimeoutError):
                # The server is down: the client sees what a dead host behind a NAT shows.
                self.route.refused += 1
                _reset(client_writer)
                return
            self.upstream = up_writer
            directions = [
                asyncio.create_task(self._direction(client_reader, up_writer, _UP)),
                asyncio.create_task(self._direction(up_reader, client_writer, _DOWN)),
            ]
            try:
                done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
                if any(t.exception() is not None for t in done):
                    _reset(client_writer)  # a reset on one side is passed on to the other
                    _reset(up_writer)
            finally:
                for task in directions:
                    task.cancel()
                await asyncio.gather(*directions, return_exceptions=True)
        finally:
            for writer in (client_writer, self.upstream):
                if writer is not None and not writer.transport.is_closing():
                    writer.close()
            self.route.connections.discard(self)

    async def _direction(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: int
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(self.proxy.queue_chunks)
        reader = asyncio.create_task(self._read(src, queue))
        try:
            await self._write(dst, queue, direction)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(
        self,
        src: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes | None]],
    ) -> None:
        while True:
            await self._wait(lambda: self.frozen)  # half-open: stop reading too
            try:
                data: bytes | None = await src.read(self.proxy.chunk_size)
            except OSError:
                data = _RESET
            await queue.put((self._due(), data))
            if not data:
                return

    def _due(self) -> float:
        delay = jitter = 0.0
        for layer in self.proxy._layers(self.route):
            delay += layer.delay
            jitter += layer.jitter
        now = self.proxy._loop.time()
        return now + max(0.0, delay + self.proxy._rng.uniform(-jitter, jitter)) if delay else now

    async def _write(
        self,
        dst: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        direction: int,
    ) -> None:
        loop = self.proxy._loop
        while True:
            due, data = await queue.get()
            await self._wait(self.blocked)
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _RESET:
                raise ConnectionResetError("the peer reset the connection")
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            for layer in self.proxy._layers(self.route):
                if layer.buckets is not None:
                    await layer.buckets[direction].take(len(data))
            await self._wait(self.blocked)  # a pause may have begun meanwhile
            dst.write(data)
            await dst.drain()
            self.route.bytes[direction] += len(data)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects network faults, per route or for all routes.

    Args:
        upstream_host: the server's host.
        upstream_port: the server's port (keep it when the server restarts, and the proxy
            follows).
        host: the interface the routes listen on.
        chunk_size: bytes read at a time; also the granularity of delay and bandwidth.
        queue_chunks: chunks buffered per direction per connection (the memory bound).
        max_connections: open connections at most, all routes together; more are reset.
        connect_timeout: seconds to reach the server before the client is reset.
        rng: the source of jitter (seed it for repeatable runs).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        chunk_size: int = 65536,
        queue_chunks: int = 16,
        max_connections: int = 1024,
        connect_timeout: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if chunk_size < 1 or queue_chunks < 1 or max_connections < 1:
            raise ValueError("chunk_size, queue_chunks and max_connections must be positive")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.chunk_size = chunk_size
        self.queue_chunks = queue_chunks
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._global = _Conditions()
        self._routes: dict[str, _Route] = {}
        self._faults: list[FaultRecord] = []
        self._changed = asyncio.Event()
        self._loop_: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @classmethod
    def for_url(cls, url: str, **kwargs: object) -> FaultProxy:
        """A proxy in front of the server of ``url`` (``ws://h:p/`` or ``http://h:p``)."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"the URL needs a host and a port: {url!r}")
        return cls(parts.hostname, parts.port, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        up = f"{self.upstream[0]}:{self.upstream[1]}"
        return f"<FaultProxy -> {up} routes={sorted(self._routes)}>"

    # ------------------------------------------------------------------ lifecycle

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._loop_ is None:
            raise RuntimeError("the proxy is not started: `async with FaultProxy(...)`")
        return self._loop_

    async def start(self) -> None:
        """Open the default route; returns once it accepts connections."""
        if self._loop_ is not None:
            raise RuntimeError("the proxy is already started")
        self._loop_ = asyncio.get_running_loop()
        await self.route(DEFAULT_ROUTE)

    async def aclose(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._global.clear()
        for route in self._routes.values():
            route.conditions.clear()
            route.server.close()
        tasks = [c.task for r in self._routes.values() for c in r.connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for route in self._routes.values():
            await route.server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ routes

    async def route(self, name: str) -> int:
        """The port of route ``name``, opening it on first use.

        Give each user whose network you want to shape alone a route of their own, and point
        that user's client at :meth:`url` of it.
        """
        existing = self._routes.get(name)
        if existing is not None:
            return existing.port
        if self._closed:
            raise RuntimeError("the proxy is closed")
        holder: list[_Route] = []

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._accept(holder[0], reader, writer)

        server = await asyncio.start_server(accept, self.host, 0, limit=self.chunk_size)
        port: int = server.sockets[0].getsockname()[1]
        route = _Route(name=name, server=server, port=port)
        holder.append(route)
        self._routes[name] = route
        return port

    @property
    def routes(self) -> tuple[str, ...]:
        """The names of the open routes."""
        return tuple(self._routes)

    @property
    def port(self) -> int:
        """The default route's port."""
        return self.port_of(DEFAULT_ROUTE)

    def port_of(self, route: str = DEFAULT_ROUTE) -> int:
        """The listening port of an open route."""
        return self._route(route).port

    def url(self, route: str = DEFAULT_ROUTE, *, scheme: str = "ws", path: str = "/") -> str:
        """The URL a client uses to reach the server through ``route`` (``ws://h:p/``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port_of(route)}{path}"

    def http_url(self, route: str = DEFAULT_ROUTE) -> str:
        """The HTTP base URL through ``route``, without a trailing slash."""
        return self.url(route, scheme="http", path="")

    def _route(self, name: str) -> _Route:
        try:
            return self._routes[name]
        except KeyError:
            raise KeyError(f"no route {name!r}; open it with `await proxy.route(name)`") from None

    def _accept(
        self, route: _Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        route.connections_total += 1
        open_now = sum(len(r.connections) for r in self._routes.values())
        if self._closed or open_now >= self.max_connections:
            route.refused += 1
            _reset(writer)
            return
        conn = _Connection(self, route, reader, writer)
        route.connections.add(conn)
        conn.task = self._loop.create_task(conn.run(), name=f"fault-proxy {route.name}")

    # ------------------------------------------------------------------ conditions

    def _layers(self, route: _Route) -> tuple[_Conditions, _Conditions]:
        return (self._global, route.conditions)

    def _paused(self, route: _Route) -> bool:
        return self._global.paused or route.conditions.paused

    def _half_open(self, route: _Route) -> bool:
        return self._global.half_open or route.conditions.half_open

    def _notify(self) -> None:
        # Wake every waiter; each re-checks its own condition on a fresh event.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _scope(self, route: str | None) -> tuple[_Conditions, list[_Route]]:
        if route is None:
            return self._global, list(self._routes.values())
        r = self._route(route)
        return r.conditions, [r]

    def _record(self, kind: FaultKind, route: str | None, **fields: float | None) -> FaultRecord:
        _, routes = self._scope(route)
        rec = FaultRecord(
            kind=kind,
            route=route,
            loop_time=self._loop.time(),
            wall_time=time.time(),
            connections=sum(len(r.connections) for r in routes),
            **fields,
        )
        self._faults.append(rec)
        log.info("fault %s on %s", kind, route or "all routes")
        return rec

    # ------------------------------------------------------------------ faults

    def cut(self, route: str | None = None) -> FaultRecord:
        """Reset (RST) both sides of every open connection of ``route`` (None: all), now.

        The client's next read or write fails with ``ConnectionResetError``; new connections are
        accepted as usual.
        """
        rec = self._record(FaultKind.CUT, route)
        for r in self._scope(route)[1]:
            for conn in list(r.connections):
                r.cuts += 1
                conn.reset()
        return rec

    def half_open(self, route: str | None = None) -> FaultRecord:
        """Freeze the connections of ``route`` (None: all) without closing them.

        Nothing more is read or forwarded either way, and connections accepted while it lasts
        freeze too: the client sees a silent peer until its own keepalive gives up. ``heal``
        resets the frozen connections.
        """
        layer, routes = self._scope(route)
        rec = self._record(FaultKind.HALF_OPEN, route)
        layer.half_open = True
        for r in routes:
            for conn in r.connections:
                conn.frozen = True
        self._notify()
        return rec

    def pause(self, route: str | None = None, *, seconds: float | None = None) -> FaultRecord:
        """Hold the traffic of ``route`` (None: all) for ``seconds``, or until ``heal``.

        Connections stay open and nothing is lost: held bytes flow again in order when the pause
        ends. A new pause of the same scope replaces the timer of the previous one.
        """
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must not be negative")
        layer, _ = self._scope(route)
        rec = self._record(FaultKind.PAUSE, route, seconds=seconds)
        if layer.release is not None:
            layer.release.cancel()
            layer.release = None
        layer.paused = True
        if seconds is not None:
            layer.release = self._loop.call_later(seconds, self._release, layer, route)
        self._notify()
        return rec

    partition = pause
    """Another name for :meth:`pause`: a partition that heals by itself keeps every byte."""

    def _release(self, layer: _Conditions, route: str | None) -> None:
        layer.release = None
        layer.paused = False
        self._record(FaultKind.RELEASE, route)
        self._notify()

    def delay(self, route: str | None, ms: float, *, jitter: float = 0.0) -> FaultRecord:
        """Delay every chunk of ``route`` (None: all) by ``ms`` +- ``jitter`` milliseconds.

        Jitter is uniform (a delay never goes below 0) but never reorders bytes: a chunk waits
        behind the one ahead of it in the same direction. Applies to bytes read from now on; a
        delay of 0 clears it.
        """
        if ms < 0 or jitter < 0:
            raise ValueError("delay and jitter must not be negative")
        layer, _ = self._scope(route)
        rec = self._record(FaultKind.DELAY, route, delay_ms=ms, jitter_ms=jitter)
        layer.delay, layer.jitter = ms / 1000.0, jitter / 1000.0
        return rec

    def bandwidth(self, route: str | None, kbps: float | None) -> FaultRecord:
        """Limit each direction of ``route`` (None: all) to ``kbps`` kilobits per second.

        The connections of the scope share one token bucket per direction, as users behind one
        link would; a small burst (50 ms of traffic, at least 4 KiB) passes at once. None clears it.
        """
        if kbps is not None and kbps <= 0:
            raise ValueError("kbps must be positive (None clears the limit)")
        layer, _ = self._scope(route)
        rec = self._record(FaultKind.BANDWIDTH, route, kbps=kbps)
        clock = self._loop.time
        layer.kbps = kbps
        layer.buckets = (
            None if kbps is None else (_TokenBucket(kbps, clock), _TokenBucket(kbps, clock))
        )
        return rec

    def heal(self, route: str | None = None) -> FaultRecord:
        """Clear every fault of ``route``, or of all routes and the global layer (None).

        Held traffic is released in order; connections frozen by ``half_open`` that no remaining
        fault freezes are reset.
        """
        rec = self._record(FaultKind.HEAL, route)
        if route is None:
            self._global.clear()
            for r in self._routes.values():
                r.conditions.clear()
        else:
            self._route(route).conditions.clear()
        for r in self._routes.values():
            if self._half_open(r):
                continue
            for conn in list(r.connections):
                if conn.frozen:
                    r.cuts += 1
                    conn.reset()
        self._notify()
        return rec

    # ------------------------------------------------------------------ observation

    @property
    def faults(self) -> tuple[FaultRecord, ...]:
        """The fault log, oldest first."""
        return tuple(self._faults)

    def spans(self) -> list[FaultSpan]:
        """The fault log as intervals (see :func:`fault_spans`)."""
        return fault_spans(self._faults)

    def stats(self, route: str = DEFAULT_ROUTE) -> RouteStats:
        """The counters of one route."""
        r = self._route(route)
        return RouteStats(
            route=r.name,
            port=r.port,
            connections_total=r.connections_total,
            connections_open=len(r.connections),
            refused=r.refused,
            cuts=r.cuts,
            bytes_up=r.bytes[_UP],
            bytes_down=r.bytes[_DOWN],
        )

    def all_stats(self) -> dict[str, RouteStats]:
        """The counters of every route, by name."""
        return {name: self.stats(name) for name in self._routes}
