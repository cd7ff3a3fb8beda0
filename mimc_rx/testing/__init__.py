"""Test helpers that users can import too: sessions joined in memory, a tiny server.

* ``SessionPair``: one ``ClientSession`` and one ``ServerSession`` back to back.
* ``MemoryHub``: several pairs and the least business logic that routes between them.
* ``ManualClock``: the time they all see.
"""

from __future__ import annotations

from mimc_rx.testing.hub import (
    DEFAULT_APP_ID,
    DEFAULT_PACKAGE,
    FakeAccount,
    MemoryHub,
    token_answer,
)
from mimc_rx.testing.pair import ManualClock, SessionPair

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_PACKAGE",
    "FakeAccount",
    "ManualClock",
    "MemoryHub",
    "SessionPair",
    "token_answer",
]
