"""The open-loop load generator: virtual users, a fixed schedule, a progress bar, a result.

:func:`run_load` logs ``users`` virtual users in (each a ``ClientSession`` over a websocket,
see :mod:`mimc_rx.lab.vuser`), creates their groups, then walks the schedule of
:func:`~mimc_rx.lab.schedule.build_schedule`: each message is handed to its sender at its
scheduled time, whatever state earlier messages are in. After the last scheduled send it keeps
running until every message reached its recipients (to the last delivery, not the last ack) or
``drain`` seconds passed, then returns a :class:`~mimc_rx.lab.run.LoadRun`.

The network lab calls it with proxy routes and fault hooks; the ``load`` command calls it
against any MIMC server (``python -m mimc_rx load``). Cancelling the awaiting task stops the
run at once and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mimc_rx.lab.results import RunFault
from mimc_rx.lab.run import LoadRun
from mimc_rx.lab.schedule import Ledger, build_schedule
from mimc_rx.lab.spec import LoadSpec
from mimc_rx.lab.timing import ClockOffset
from mimc_rx.lab.vuser import TokenSource, VirtualUser

__all__ = ["Endpoint", "HttpTokens", "create_group", "run_load"]

log = logging.getLogger(__name__)

Action = Callable[[], object]
"""Something to do at a moment of the run: a plain call, or one returning an awaitable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where the load goes.

    Attributes:
        app_id: the app the users belong to.
        http_url: the server's HTTP base (group creation), reached directly.
        tokens: the token source (reached directly, never through a faulty route).
        url_for: the websocket URL of one account (a proxy route of its own, or the server).
        faults: the faults recorded so far, as loop-time spans (the lab's log); None outside
            a lab.
    """

    app_id: int
    http_url: str
    tokens: TokenSource
    url_for: Callable[[str], str]
    faults: Callable[[], Sequence[RunFault]] | None = None


class HttpTokens:
    """Fetches tokens from a token service (``POST /api/account/token``) with one HTTP client.

    One shared ``httpx.AsyncClient`` serves every user of a load: a client per fetch costs
    tens of milliseconds of CPU each, which hundreds of logins at once cannot afford.

    Args:
        http_url: the server's HTTP base URL (no trailing slash).
        app_id, app_key, app_secret: the app's credentials.
        on_token: called with ``(account, answer)`` after each fetch (the lab keeps tokens to
            expire them).
    """

    def __init__(
        self,
        http_url: str,
        *,
        app_id: int,
        app_key: str,
        app_secret: str,
        on_token: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> None:
        import httpx

        self.url = http_url.rstrip("/") + "/api/account/token"
        self._body = {"appId": str(app_id), "appKey": app_key, "appSecret": app_secret}
        self._client = httpx.AsyncClient(timeout=30.0)
        self._on_token = on_token

    async def __call__(self, account: str) -> Mapping[str, Any]:
        response = await self._client.post(self.url, json={**self._body, "appAccount": account})
        answer: dict[str, Any] = response.json()
        if self._on_token is not None:
            self._on_token(account, answer)
        return answer

    async def expire(self, account: str, tokens: Sequence[str]) -> Mapping[str, Any]:
        """Expire ``tokens`` of ``account`` on the server now (``POST /api/account/token/expire``,
        a route of the local server, docs/server.md); the raw answer, ``data.expired`` counted."""
        body = {**self._body, "appAccount": account, "tokens": list(tokens)}
        response = await self._client.post(self.url + "/expire", json=body)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:  # not a MIMC envelope: a server without the route
            return {"code": response.status_code, "message": response.reason_phrase}
        return answer

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


async def create_group(
    http_url: str, app_id: int, token: str, name: str, members: Sequence[str]
) -> int:
    """Create a normal group (REST, docs/protocol.md 8.3) owned by ``token``'s user; its id."""
    import httpx

    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.post(
            f"{http_url.rstrip('/')}/api/topic/{app_id}",
            headers={"token": token},
            json={"topicName": name, "accounts": ",".join(members)},
        )
    answer = response.json()
    if answer.get("code") != 200:
        raise RuntimeError(f"creating group {name!r} failed: {answer!r}")
    return int(answer["data"]["topicInfo"]["topicId"])


def _token_of(answer: Mapping[str, Any]) -> str:
    data = answer.get("data", answer)
    return str(data["token"])


async def _start_users(vus: Sequence[VirtualUser], concurrency: int, timeout: float) -> None:  # noqa: ASYNC109
    gate = asyncio.Semaphore(concurrency)

    async def one(vu: VirtualUser) -> None:
        async with gate:
            await vu.start(timeout)

    await asyncio.gather(*(one(vu) for vu in vus))


async def _run_action(action: Action) -> None:
    try:
        result = action()
        if inspect.isawaitable(result):
            await result
    except Exception:  # an action that fails must not end the run; it is logged
        log.exception("a load action failed")


def _progress(total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return None
    # tqdm.auto: a widget in Jupyter, text in a terminal. Imported by name: it ships no types.
    tqdm = importlib.import_module("tqdm.auto").tqdm
    return tqdm(total=total, desc=label or "load", unit="msg", leave=True, mininterval=0.25)


async def run_load(
    spec: LoadSpec,
    endpoint: Endpoint,
    *,
    actions: Mapping[float, Action] | None = None,
    progress: bool = True,
    login_concurrency: int = 32,
    login_timeout: float = 30.0,
) -> LoadRun:
    """Run one open-loop load and return what happened to every message.

    Args:
        spec: the load.
        endpoint: the server, its token source and the URL of each user.
        actions: things to do during the run, by offset in seconds from the first scheduled
            send (e.g. ``{2.0: lambda: lab.partition("vu001", seconds=3)}``; coroutines are
            awaited in a task of their own, so a slow one never delays the schedule).
        progress: show a tqdm progress bar (notebook widget or terminal).
        login_concurrency: logins in flight at once.
        login_timeout: seconds each user may take to log in before the run fails.
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(spec.seed)
    records, groups = build_schedule(
        users=spec.users,
        rate=spec.rate,
        seconds=spec.seconds,
        mix=spec.mix,
        payload_bytes=spec.payload_bytes,
        group_size=spec.group_size,
        arrivals=spec.arrivals,
        rng=rng,
    )
    accounts = spec.accounts()
    ledger = Ledger(secrets.token_bytes(8), records)
    offset = ClockOffset()
    base = [loop.time()]  # the run's zero, moved to the first scheduled send below
    wall_base = [time.time() - (loop.time() - base[0])]

    def clock() -> float:
        return loop.time() - base[0]

    def wall(t: float) -> float:
        return wall_base[0] + t

    vus = [
        VirtualUser(
            i,
            account,
            app_id=endpoint.app_id,
            url=endpoint.url_for(account),
            tokens=endpoint.tokens,
            ledger=ledger,
            clock=clock,
            wall=wall,
            peers=accounts,
            on_ack_sample=offset.add,
            rng=random.Random(rng.random()),
        )
        for i, account in enumerate(accounts)
    ]
    tasks: list[asyncio.Task[None]] = []
    bar = None
    try:
        await _start_users(vus, login_concurrency, login_timeout)
        if any(r.kind == "group" for r in records):
            for g, members in enumerate(groups):
                owner = vus[members[0]]
                assert owner.token_answer is not None
                topic = await create_group(
                    endpoint.http_url,
                    endpoint.app_id,
                    _token_of(owner.token_answer),
                    f"lab-{ledger.run_id.hex()}-{g}",
                    [accounts[m] for m in members],
                )
                for m in members:
                    vus[m].topics[g] = topic
        bar = _progress(len(records), spec.label, progress)
        start_loop = loop.time() + 0.05
        base[0] = start_loop
        wall_base[0] = time.time() + 0.05
        for at, action in sorted((actions or {}).items()):
            handle_time = start_loop + max(0.0, at)
            loop.call_at(
                handle_time,
                lambda a=action: tasks.append(loop.create_task(_run_action(a))),  # type: ignore[misc]
            )
        tasks.append(loop.create_task(_ticker(vus, ledger, bar)))
        i, n = 0, len(records)
        while i < n:
            now = clock()
            while i < n and records[i].scheduled <= now:
                rec = records[i]
                vus[rec.sender].submit(rec)
                i += 1
            if bar is not None:
                bar.n = i
            if i < n:
                await asyncio.sleep(max(0.0, records[i].scheduled - clock()))
        schedule_end = clock()
        deadline = schedule_end + spec.drain
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.all_settled.wait(), max(0.0, deadline - clock()))
        end = clock()
        if bar is not None:
            bar.n = n
            bar.refresh()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(vu.close() for vu in vus), return_exceptions=True)
        if bar is not None:
            bar.close()
    faults: list[RunFault] = []
    if endpoint.faults is not None:
        faults = [f.shifted(-base[0]) for f in endpoint.faults()]
        # The lab's log covers its whole life: keep what overlaps this run.
        faults = [f for f in faults if (f.end is None or f.end > 0.0) and f.start <= end]
    return LoadRun(
        spec=spec,
        run_id=ledger.run_id.hex(),
        accounts=tuple(accounts),
        records=records,
        groups=groups,
        start_wall=wall_base[0],
        schedule_end=schedule_end,
        end=end,
        faults=faults,
        offset=offset.estimate(),
        out_of_order=dict(ledger.out_of_order),
        foreign=ledger.foreign,
        connections={vu.account: vu.connections for vu in vus},
        duplicates_dropped_by_core=sum(vu.memory.duplicates for vu in vus),
    )


async def _ticker(vus: Sequence[VirtualUser], ledger: Ledger, bar: Any) -> None:
    while True:
        await asyncio.sleep(0.25)
        for vu in vus:
            vu.tick()
        if bar is not None:
            with contextlib.suppress(Exception):
                backlog = sum(vu.backlog() for vu in vus)
                online = sum(vu.online for vu in vus)
                bar.set_postfix(
                    deliveries=ledger.delivered_count, backlog=backlog, online=online, refresh=False
                )
                bar.refresh()
