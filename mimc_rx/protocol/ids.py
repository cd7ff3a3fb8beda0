"""Id factories: the web SDK's packet ids, our server's ids, and connection challenges.

Ids are opaque strings to every peer (docs/protocol.md 6.2) but they matter twice: PACKET_ACK
correlation and RC4 key material (5). The sessions take any ``Callable[[], str]``; these are
the defaults, with the clock injectable so tests are deterministic.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

__all__ = ["CounterIdFactory", "WebIdFactory", "random_challenge", "wall_clock_ms"]


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, like JavaScript's ``Date.now()``."""
    return time.time_ns() // 1_000_000


class WebIdFactory:
    """``"web"`` + ``Date.now()`` in ms + a counter 0..999, not zero-padded (docs/protocol.md 6.2).

    Example: ``web17958629475961``. The counter wraps after 999, as in the web SDK, and the
    same factory makes header ids and packet ids.
    """

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._clock_ms = clock_ms or wall_clock_ms
        self._counter = 0

    def __call__(self) -> str:
        value = f"web{self._clock_ms()}{self._counter}"
        self._counter = (self._counter + 1) % 1000
        return value


class CounterIdFactory:
    """``prefix`` + ms + ``-`` + a counter that never wraps, e.g. ``srv1795863109632-1``.

    The shape our capture server used for s2c header and packet ids; any string would do.
    """

    def __init__(self, prefix: str = "srv", clock_ms: Callable[[], int] | None = None) -> None:
        self._prefix = prefix
        self._clock_ms = clock_ms or wall_clock_ms
        self._counter = 0

    def __call__(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._clock_ms()}-{self._counter}"


def random_challenge() -> str:
    """A fresh CONN challenge: 32 random hex characters (docs/protocol.md 6.1 step 2)."""
    return secrets.token_hex(16)
