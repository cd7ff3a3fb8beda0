"""Test helpers that users can import too: sessions joined in memory, a tiny server.

* ``SessionPair``: one ``ClientSession`` and one ``ServerSession`` back to back.
* ``MemoryHub``: several pairs and the least business logic that routes between them.
* ``ManualClock``: the time they all see.
* ``FaultProxy``: a TCP proxy that cuts, freezes, pauses, delays and throttles connections,
  per route (one port per user) or for all, and logs each fault (``FaultRecord``).
* ``ServerProcess``: ``python -m mimc_rx serve`` as a child process to SIGKILL and restart on
  the same port and database; ``ServerCluster``: several of them on one PostgreSQL and Redis.
* ``PostgresEngine``, ``RedisEngine``: throw-away PostgreSQL and Redis servers on 127.0.0.1.
"""

from __future__ import annotations

from mimc_rx.testing.engines import PostgresEngine, RedisEngine
from mimc_rx.testing.faults import FaultKind, FaultRecord, FaultSpan, fault_spans
from mimc_rx.testing.hub import (
    DEFAULT_APP_ID,
    DEFAULT_PACKAGE,
    FakeAccount,
    MemoryHub,
    token_answer,
)
from mimc_rx.testing.pair import ManualClock, SessionPair
from mimc_rx.testing.process import ServerCluster, ServerProcess, ServerStartError
from mimc_rx.testing.proxy import DEFAULT_ROUTE, FaultProxy, RouteStats

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_PACKAGE",
    "DEFAULT_ROUTE",
    "FakeAccount",
    "FaultKind",
    "FaultProxy",
    "FaultRecord",
    "FaultSpan",
    "ManualClock",
    "MemoryHub",
    "PostgresEngine",
    "RedisEngine",
    "RouteStats",
    "ServerCluster",
    "ServerProcess",
    "ServerStartError",
    "SessionPair",
    "fault_spans",
    "token_answer",
]
