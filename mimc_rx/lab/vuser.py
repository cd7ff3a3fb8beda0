"""A virtual user: the sans-I/O ``ClientSession`` over one websocket, and nothing else.

A ``MIMCUser`` brings Rx subjects, ack futures and a reconnect policy per user; a load of
hundreds of users on one core cannot pay for that. A :class:`VirtualUser` drives the protocol
core directly: bytes from the socket go into ``session.receive_data``, events come out and go
to the :class:`~mimc_rx.lab.schedule.Ledger`, frames from ``session.data_to_send`` go to a
writer task. The protocol rules (acks, dedup of redeliveries, auto-pull) stay in the core.

Sending never blocks the schedule: :meth:`VirtualUser.submit` only queues frames for the
writer task. While the user is offline its messages wait in order and leave once it is bound
again. A stored send whose ack a dead connection swallowed is the core's business: each user
keeps one ``SessionMemory`` across its connections, and its outbox sends the unacked ones again
right after the next BIND under the same packet id, which the server's sender dedup recognises.
So a run under cuts and partitions counts no duplicate that the outbox should have prevented;
this driver never resends anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from mimc_rx.lab.schedule import Ledger, MessageRecord, encode_payload
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import (
    P2PMessage,
    P2TMessage,
    SendExpired,
    ServerAck,
    StatusChange,
)
from mimc_rx.protocol.memory import SessionMemory

__all__ = ["TokenSource", "VirtualUser", "new_session"]

log = logging.getLogger(__name__)

TokenSource = Callable[[str], Awaitable[Mapping[str, Any]]]
"""``await tokens(account)``: the token service's raw answer for ``account``."""

_MAX_FRAME = 16 * 1024 * 1024


def new_session(app_id: int, account: str, resource: str, memory: SessionMemory) -> ClientSession:
    """A ``ClientSession`` for one connection of ``account``, with the user's lasting memory."""
    return ClientSession(app_id, account, resource, auto_pull=True, memory=memory)


class VirtualUser:
    """One lightweight load user: login, send on demand, receive, reconnect.

    Args:
        index: the user's index in the run (what the ledger knows it by).
        account: the app account.
        app_id: the app id.
        url: the websocket URL (a lab proxy route, or the server itself).
        tokens: where tokens come from (not through the faulty route).
        ledger: the run's records.
        clock: seconds since the run's start (the loop clock, shifted).
        wall: the wall time of a clock value, for payload stamps and ack round trips.
        peers: every account of the run, by index (recipients of one-to-one messages).
        on_ack_sample: called with ``(sent_wall, ack_wall, server_ts)`` for each ack.
        keepalive: seconds between websocket pings; a silent connection dies after twice this.
    """

    def __init__(
        self,
        index: int,
        account: str,
        *,
        app_id: int,
        url: str,
        tokens: TokenSource,
        ledger: Ledger,
        clock: Callable[[], float],
        wall: Callable[[float], float],
        peers: Sequence[str],
        on_ack_sample: Callable[[float, float, float], None] | None = None,
        keepalive: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.account = account
        self.app_id = app_id
        self.url = url
        self._tokens = tokens
        self._ledger = ledger
        self._clock = clock
        self._wall = wall
        self._peers = peers
        self._on_ack_sample = on_ack_sample
        self._keepalive = keepalive
        self._rng = rng or random.Random()
        self.resource = f"lab_{secrets.token_hex(4)}"
        self.memory = SessionMemory()
        self.topics: dict[int, int] = {}  # group index -> topic id
        self._session: ClientSession | None = None
        self._ws: Any = None
        self._out: asyncio.Queue[tuple[bytes, MessageRecord | None]] = asyncio.Queue()
        self._waiting: deque[MessageRecord] = deque()
        self._inflight: dict[str, MessageRecord] = {}
        self._bound = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.connections = 0
        """Connections that reached BIND success."""
        self.token_answer: Mapping[str, Any] | None = None
        """The last token answer (group setup uses its token)."""

    # ------------------------------------------------------------------ life

    @property
    def online(self) -> bool:
        """True while bound."""
        return self._bound.is_set()

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start the connection loop and wait for the first login."""
        self._task = asyncio.get_running_loop().create_task(
            self._life(), name=f"lab vuser {self.account}"
        )
        waiter = asyncio.ensure_future(self._bound.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._task.done() and self._task.exception() is not None:
                raise RuntimeError(f"{self.account} could not log in") from self._task.exception()
            raise TimeoutError(f"{self.account} was not online within {timeout} s")

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _life(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._connect_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one connection: log, back off, retry
                log.debug("%s: connection ended: %s: %s", self.account, type(exc).__name__, exc)
            finally:
                self._lost_connection()
            if self._closing:
                return
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(2.0, delay * 2)

    async def _connect_once(self) -> None:
        import websockets

        answer = await self._tokens(self.account)
        self.token_answer = answer
        async with websockets.connect(
            self.url,
            compression=None,
            max_size=_MAX_FRAME,
            ping_interval=self._keepalive,
            ping_timeout=self._keepalive,
            open_timeout=10.0,
            close_timeout=1.0,
        ) as ws:
            self._ws = ws
            session = new_session(self.app_id, self.account, self.resource, self.memory)
            self._session = session
            session.login(answer, self._clock())
            writer = asyncio.get_running_loop().create_task(self._write(ws))
            try:
                self._handle(session)
                async for data in ws:
                    if isinstance(data, str):
                        continue
                    session.receive_data(data, self._clock())
                    self._handle(session)
                    if session.close_requested:
                        return
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    def _lost_connection(self) -> None:
        self._bound.clear()
        self._ws = None
        session, self._session = self._session, None
        if session is not None:
            session.receive_eof()
        # Frames still queued never left: drop them. Their stored sends wait in the memory's
        # outbox, which the next session sends again after BIND; their records stay in flight
        # under the same packet ids until the ack comes.
        self._out = asyncio.Queue()

    # ------------------------------------------------------------------ sending

    def submit(self, rec: MessageRecord) -> None:
        """Send ``rec`` now if bound, or as soon as the user is bound again. Never blocks."""
        if self._session is not None and self._bound.is_set() and not self._waiting:
            self._send(self._session, rec)
        else:
            self._waiting.append(rec)

    def _send(self, session: ClientSession, rec: MessageRecord) -> None:
        now = self._clock()
        payload = encode_payload(self._ledger.run_id, rec.seq, self._wall(rec.scheduled), rec.size)
        try:
            if rec.kind == "p2p":
                pid = session.send_p2p(self._peers[rec.target], payload, now=now)
            else:
                pid = session.send_p2t(self.topics[rec.target], payload, now=now)
        except Exception as exc:  # the core refused it (NotLoggedIn, PayloadTooLarge)
            self._ledger.fail(rec, f"{type(exc).__name__}: {exc}")
            return
        rec.attempts += 1
        self._inflight[pid] = rec
        frames = session.data_to_send()
        for i, frame in enumerate(frames):
            self._out.put_nowait((frame, rec if i == len(frames) - 1 else None))

    def _flush_waiting(self, session: ClientSession) -> None:
        while self._waiting and self._bound.is_set():
            self._send(session, self._waiting.popleft())

    async def _write(self, ws: Any) -> None:
        queue = self._out
        while True:
            frame, rec = await queue.get()
            if rec is not None and math.isnan(rec.sent):
                rec.sent = self._clock()
            await ws.send(frame)

    # ------------------------------------------------------------------ receiving

    def _handle(self, session: ClientSession) -> None:
        ledger = self._ledger
        for event in session.events_received():
            match event:
                case ServerAck(packet_id=pid, timestamp=ts, err_msg=err):
                    rec = self._inflight.pop(pid, None)
                    if rec is None:
                        continue
                    now = self._clock()
                    if math.isnan(rec.acked):
                        rec.acked = now
                        rec.server_ts = ts / 1000.0
                    if err:
                        ledger.fail(rec, err)
                    elif self._on_ack_sample is not None and not math.isnan(rec.sent):
                        self._on_ack_sample(self._wall(rec.sent), self._wall(now), ts / 1000.0)
                case SendExpired(packet_id=pid, age=age):  # the outbox gave it up
                    rec = self._inflight.pop(pid, None)
                    if rec is not None:
                        ledger.fail(rec, f"SendExpired: unacked after {age:.0f} s")
                case P2PMessage(payload=payload) | P2TMessage(payload=payload):
                    ledger.deliver(self.index, payload, self._clock())
                case StatusChange(online=True):
                    self.connections += 1
                    self._bound.set()
                    self._flush_waiting(session)
                case StatusChange(online=False, err_reason=reason):
                    log.info("%s: login refused: %s", self.account, reason)
                case _:
                    pass
        for frame in session.data_to_send():
            self._out.put_nowait((frame, None))

    def tick(self) -> None:
        """Fire the core's timers (keepalive PING) when due; the run calls it every second."""
        session = self._session
        if session is None:
            return
        deadline = session.next_deadline()
        now = self._clock()
        if deadline is not None and now >= deadline:
            session.expire(now)
            for frame in session.data_to_send():
                self._out.put_nowait((frame, None))

    def backlog(self) -> int:
        """Messages waiting to leave (offline, or behind others)."""
        return len(self._waiting) + self._out.qsize()
