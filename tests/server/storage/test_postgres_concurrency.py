"""Several writers on one PostgreSQL database, as several server processes would be.

Each writer is its own :class:`PostgresStorage` (its own pool and connections), and each runs
several ticks at once. What must hold (see ``mimc_rx.server.storage.pg_tick``):

* per recipient, sequences are unique and strictly increasing **in commit order**: a reader
  that keeps a cursor at the highest sequence it has seen (as a client's cumulative ack does)
  never has a message appear below its cursor later;
* a packet resent to two processes at once is stored once, and both answers carry the same ack.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from mimc_rx.server.storage.interface import P2PWrite, P2PWritten
from mimc_rx.server.storage.postgres import PostgresStorage
from mimc_rx.server.storage.records import User

from .conftest import APP

WRITERS = 3
TASKS_PER_WRITER = 4
TICKS = 15
PER_TICK = 4


def message(sender: User, pid: str, to: str = "bob") -> P2PWrite:
    return P2PWrite(
        app=APP,
        packet_id=pid,
        sender=sender,
        from_resource="r",
        to_account=to,
        payload=b"x",
        ts=1_800_000_000_000,
    )


@pytest.fixture
async def writers(postgres_dsn: str) -> AsyncIterator[list[PostgresStorage]]:
    opened = [PostgresStorage(postgres_dsn, max_size=TASKS_PER_WRITER) for _ in range(WRITERS)]
    for storage in opened:
        await storage.open()  # the migrations run once; the others find them done
    yield opened
    for storage in opened:
        await storage.close()


async def test_concurrent_writers_commit_in_sequence_order(
    writers: list[PostgresStorage],
) -> None:
    bob = await writers[0].ensure_user(APP.app_id, "bob")
    senders = [
        await writers[0].ensure_user(APP.app_id, f"sender{i}")
        for i in range(WRITERS * TASKS_PER_WRITER)
    ]
    counter = itertools.count()
    written: list[int] = []
    done = asyncio.Event()

    async def write(storage: PostgresStorage, sender: User) -> None:
        for _ in range(TICKS):
            intents = [message(sender, f"p{next(counter)}") for _ in range(PER_TICK)]
            # Another user too, so that ticks lock several rows in varying combinations.
            intents.append(message(sender, f"p{next(counter)}", to=f"side{len(written) % 3}"))
            for outcome in await storage.write_tick(intents):
                assert isinstance(outcome, P2PWritten)
                if outcome.recipient.uuid == bob.uuid:
                    written.append(outcome.recipient_seq)

    seen: list[int] = []

    async def read_like_a_client() -> None:
        # A reader on its own connection pool, acking cumulatively like a client does.
        reader = PostgresStorage(writers[0].dsn, max_size=1)
        await reader.open()
        cursor = 0
        try:
            while True:
                finished = done.is_set()
                batch = await reader.backlog(bob.uuid, cursor, 1000)
                seen.extend(m.seq for m in batch)
                if batch:
                    cursor = batch[-1].seq
                if finished and not batch:
                    return
                await asyncio.sleep(0)
        finally:
            await reader.close()

    reading = asyncio.create_task(read_like_a_client())
    await asyncio.gather(*(write(writers[i % WRITERS], sender) for i, sender in enumerate(senders)))
    done.set()
    await reading
    expected = WRITERS * TASKS_PER_WRITER * TICKS * PER_TICK
    assert len(written) == expected
    assert len(set(written)) == expected, "a sequence was issued twice"
    # Nothing committed below the reader's cursor after it passed: it saw every message.
    assert sorted(seen) == sorted(written)
    assert seen == sorted(seen)
    stored = await writers[1].backlog(bob.uuid, 0, expected + 1)
    assert [m.seq for m in stored] == sorted(written)


async def test_a_packet_resent_to_two_processes_at_once_is_stored_once(
    writers: list[PostgresStorage],
) -> None:
    alice = await writers[0].ensure_user(APP.app_id, "alice")
    for round_ in range(20):
        pid = f"resent-{round_}"
        outcomes = await asyncio.gather(*(w.write_tick([message(alice, pid)]) for w in writers))
        answers = [o[0] for o in outcomes]
        assert all(isinstance(a, P2PWritten) for a in answers)
        firsts = [a for a in answers if isinstance(a, P2PWritten) and not a.duplicate]
        assert len(firsts) == 1
        assert {a.sender_seq for a in answers if isinstance(a, P2PWritten)} == {
            firsts[0].sender_seq
        }
    bob = await writers[0].find_user(APP.app_id, "bob")
    assert bob is not None
    assert len(await writers[2].backlog(bob.uuid, 0, 100)) == 20


async def test_one_new_account_created_by_several_processes_at_once(
    writers: list[PostgresStorage],
) -> None:
    for round_ in range(10):
        made = await asyncio.gather(*(w.ensure_user(APP.app_id, f"new{round_}") for w in writers))
        assert len({(u.uuid, u.security_key) for u in made}) == 1
