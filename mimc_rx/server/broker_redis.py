"""The Redis broker between server processes (redis-py's asyncio client).

Theory of operation
-------------------
Keys and channels, under a prefix (``mimc`` by default, so several deployments can share one
Redis):

* ``<p>:node:<id>``: a string with a time to live (``ttl``, a few heartbeats). Each node
  refreshes its own every ``heartbeat`` seconds; a node killed with SIGKILL stops refreshing
  and, ``ttl`` later, is dead to everyone.
* ``<p>:presence:<uuid>``: a hash ``resource -> node id`` of the user's connections. Entries of
  dead nodes are **ignored at once** by :meth:`RedisBroker.holders` (their node key is gone) and
  deleted lazily when met; the hash itself expires after a day without a claim. (Redis 7.0, which
  Debian ships, has no per-field expiry, so the node key carries the liveness.)
* ``<p>:to:<id>``: the channel each node subscribes to for signals addressed to it;
  ``<p>:all``: the broadcast channel.

Failures: every Redis error is caught, logged **once per outage** (a warning, then one line when
Redis answers again) and turned into "nothing done" (``send`` returns False, ``holders`` returns
``{}``): messages are durable in the database before their ack, so a lost signal only delays a
delivery to the next pull or login. The subscriber task reconnects with a backoff and subscribes
again; the heartbeat notices a Redis that restarted empty (its node key is missing) and writes
this node's presence again. Either way ``on_resync`` is called, so the hub can tell its
connections to look for stored messages whose live signal may have been lost.

redis-py retries a failed call once at once (``Retry(NoBackoff(), 1)``): after a restart the
pool still holds connections to the old server, each failing on its first use, and the retry
takes a fresh one. More is left to this module, so no call hangs in a retry loop while Redis is
down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mimc_rx.server.broker import (
    ResyncHandler,
    Signal,
    SignalHandler,
    SignalKind,
    decode_signal,
    dispatch,
    encode_signal,
    new_node_id,
    stamped,
)

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

_PRESENCE_TTL = 24 * 3600
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)

# Delete a presence entry only if it is still ours: a KICKed node releasing late must not
# remove the entry of the node that took the connection over.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


async def _close(pubsub: PubSub) -> None:
    with contextlib.suppress(*_FAILURES):
        await pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisBroker:
    """A :class:`~mimc_rx.server.broker.Broker` on Redis (see the module docstring).

    Args:
        url: ``redis://host:port/db``.
        node_id: this process's id; a fresh one by default (a restarted process is a new node).
        prefix: of every key and channel.
        heartbeat: seconds between refreshes of this node's liveness key.
        ttl: seconds a node stays alive without a refresh (default: three heartbeats).
        timeout: seconds any one Redis call may take.
    """

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        prefix: str = "mimc",
        heartbeat: float = 2.0,
        ttl: float | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.node_id = node_id or new_node_id()
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.ttl = ttl if ttl is not None else 3 * heartbeat
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._release_script = self._redis.register_script(_RELEASE)
        self._local: set[tuple[int, str]] = set()
        self._on_signal: SignalHandler | None = None
        self._on_resync: ResyncHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self.resyncs = 0
        """How many times presence was written again after Redis lost it or was unreachable."""

    def __repr__(self) -> str:
        return f"<RedisBroker {self.node_id} {self.url}>"

    # ------------------------------------------------------------------ names

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def _presence_key(self, uuid: int) -> str:
        return f"{self.prefix}:presence:{uuid}"

    def _channel(self, node: str) -> str:
        return f"{self.prefix}:to:{node}"

    @property
    def _all(self) -> str:
        return f"{self.prefix}:all"

    # ------------------------------------------------------------------ outage logging

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "redis unreachable (%s: %s: %s); signals are lost until it is back, "
                "messages wait in the database",
                what,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("redis still unreachable (%s: %s)", what, exc)

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.warning("redis reachable again")

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_signal: SignalHandler, on_resync: ResyncHandler | None = None) -> None:
        """Register this node, subscribe, start the heartbeat.

        Raises:
            redis.exceptions.RedisError, OSError: Redis is unreachable now (a wrong URL should
                stop the server at start, not later).
        """
        self._on_signal, self._on_resync = on_signal, on_resync
        await self._redis.set(self._node_key(self.node_id), "1", px=self._ttl_ms())
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel(self.node_id), self._all)
        self._tasks = [
            asyncio.create_task(self._listen(pubsub), name=f"broker {self.node_id} listener"),
            asyncio.create_task(self._beat(), name=f"broker {self.node_id} heartbeat"),
        ]

    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    async def close(self) -> None:
        """Stop, drop this node's presence and liveness key (best effort), disconnect."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(*_FAILURES):
            for uuid, resource in list(self._local):
                await self._release_script(
                    keys=[self._presence_key(uuid)], args=[resource, self.node_id]
                )
            await self._redis.delete(self._node_key(self.node_id))
        self._local.clear()
        with contextlib.suppress(*_FAILURES):
            await self._redis.aclose()

    # ------------------------------------------------------------------ presence

    async def claim(self, uuid: int, resource: str) -> str | None:
        """Hold ``(uuid, resource)``; kick another live holder and return its node id."""
        self._local.add((uuid, resource))
        key = self._presence_key(uuid)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(key, resource)
                pipe.hset(key, resource, self.node_id)
                pipe.expire(key, _PRESENCE_TTL)
                old_raw, *_ = await pipe.execute()
            old: str | None = bytes(old_raw).decode() if old_raw else None
            if old is None or old == self.node_id or not await self._alive([old]):
                return None
            self._succeeded()
        except _FAILURES as exc:
            self._failed("claim", exc)
            return None
        await self.send(old, Signal(kind=SignalKind.KICK, uuids=(uuid,), resource=resource))
        return old

    async def release(self, uuid: int, resource: str) -> None:
        """Forget ``(uuid, resource)`` unless another node claimed it since."""
        self._local.discard((uuid, resource))
        try:
            await self._release_script(
                keys=[self._presence_key(uuid)], args=[resource, self.node_id]
            )
            self._succeeded()
        except _FAILURES as exc:
            self._failed("release", exc)

    async def _alive(self, nodes: list[str]) -> set[str]:
        others = [n for n in nodes if n != self.node_id]
        alive = {self.node_id} & set(nodes)
        if others:
            values = await self._redis.mget([self._node_key(n) for n in others])
            alive.update(n for n, v in zip(others, values, strict=True) if v is not None)
        return alive

    async def holders(self, uuids: Iterable[int]) -> dict[int, dict[str, str]]:
        """Who holds the users' connections, live nodes only (``{}`` while Redis is down)."""
        wanted = list(dict.fromkeys(uuids))
        if not wanted:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for uuid in wanted:
                    pipe.hgetall(self._presence_key(uuid))
                raw: list[dict[bytes, bytes]] = await pipe.execute()
            entries = {
                uuid: {r.decode(): n.decode() for r, n in held.items()}
                for uuid, held in zip(wanted, raw, strict=True)
                if held
            }
            nodes = sorted({n for held in entries.values() for n in held.values()})
            alive = await self._alive(nodes) if nodes else set()
            found: dict[int, dict[str, str]] = {}
            dead: list[tuple[int, str, str]] = []
            for uuid, held in entries.items():
                live = {r: n for r, n in held.items() if n in alive}
                dead += [(uuid, r, n) for r, n in held.items() if n not in alive]
                if live:
                    found[uuid] = live
            for uuid, resource, node in dead:
                # Garbage of a node that died: delete it unless it changed meanwhile.
                await self._release_script(keys=[self._presence_key(uuid)], args=[resource, node])
            self._succeeded()
            return found
        except _FAILURES as exc:
            self._failed("holders", exc)
            return {}

    # ------------------------------------------------------------------ signals

    async def send(self, node: str, signal: Signal) -> bool:
        """Publish to ``node``'s channel (this node's own: straight to the handler)."""
        signal = stamped(signal, self.node_id)
        if node == self.node_id:
            asyncio.get_running_loop().call_soon(dispatch, self._on_signal, signal)
            return True
        return await self._publish(self._channel(node), signal)

    async def broadcast(self, signal: Signal) -> bool:
        """Publish to every node (this one ignores its own broadcasts)."""
        return await self._publish(self._all, stamped(signal, self.node_id))

    async def _publish(self, channel: str, signal: Signal) -> bool:
        try:
            await self._redis.publish(channel, encode_signal(signal))
        except _FAILURES as exc:
            self._failed("publish", exc)
            return False
        self._succeeded()
        return True

    def _receive(self, data: Any) -> None:
        try:
            signal = decode_signal(bytes(data))
        except ValueError as exc:
            log.info("ignoring a foreign message on the broker channel: %s", exc)
            return
        if signal.origin == self.node_id:
            return  # our own broadcast
        dispatch(self._on_signal, signal)

    # ------------------------------------------------------------------ background tasks

    async def _listen(self, pubsub: PubSub) -> None:
        delay = 0.05
        while True:
            try:
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
            except asyncio.CancelledError:
                await _close(pubsub)
                raise
            except _FAILURES as exc:
                self._failed("subscriber", exc)
            await _close(pubsub)
            # Subscribe again, with a backoff while Redis stays down.
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                try:
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self._channel(self.node_id), self._all)
                    break
                except _FAILURES as exc:
                    self._failed("subscribe", exc)
                    await _close(pubsub)
            delay = 0.05
            self._succeeded()
            await self._resync()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                fresh = await self._redis.set(
                    self._node_key(self.node_id), "1", px=self._ttl_ms(), nx=True
                )
                if fresh:
                    # Our key was gone: Redis restarted empty (or we were away past the ttl),
                    # and our presence with it.
                    await self._resync()
                else:
                    await self._redis.pexpire(self._node_key(self.node_id), self._ttl_ms())
                self._succeeded()
            except _FAILURES as exc:
                self._failed("heartbeat", exc)

    async def _resync(self) -> None:
        """Write this node's liveness and presence again, then call ``on_resync``."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._node_key(self.node_id), "1", px=self._ttl_ms())
                for uuid, resource in self._local:
                    pipe.hset(self._presence_key(uuid), resource, self.node_id)
                    pipe.expire(self._presence_key(uuid), _PRESENCE_TTL)
                await pipe.execute()
        except _FAILURES as exc:
            self._failed("resync", exc)
            return
        self.resyncs += 1
        log.info(
            "broker %s: presence written again (%d connections)", self.node_id, len(self._local)
        )
        if self._on_resync is not None:
            try:
                self._on_resync()
            except Exception:
                log.exception("resync handler failed")
