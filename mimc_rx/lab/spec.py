"""``LoadSpec``: the shape of an open-loop load (a leaf: :mod:`.run` needs it, not :mod:`.load`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LoadSpec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """What to send: the shape of an open-loop load.

    Attributes:
        users: virtual users, each sending and receiving.
        rate: messages per second, all users together (the offered load).
        seconds: how long the schedule lasts.
        mix: share of each kind of message (``p2p``, ``group``).
        payload_bytes: smallest and largest payload (uniform); at least 28 (the header).
        group_size: users per normal group (each user sends group messages to its own).
        arrivals: ``"uniform"`` spacing or ``"poisson"`` gaps.
        drain: seconds to wait after the schedule for the last deliveries.
        prefix: account names are ``<prefix>000``, ``<prefix>001``, ...
        seed: makes the schedule repeatable (None: random).
        label: a name for the run, in tables and plots.
    """

    users: int = 50
    rate: float = 500.0
    seconds: float = 10.0
    mix: Mapping[str, float] = field(default_factory=lambda: {"p2p": 0.8, "group": 0.2})
    payload_bytes: tuple[int, int] = (50, 2000)
    group_size: int = 5
    arrivals: str = "uniform"
    drain: float = 10.0
    prefix: str = "vu"
    seed: int | None = None
    label: str = ""

    def accounts(self) -> list[str]:
        """The account of each user index."""
        width = max(3, len(str(self.users - 1)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(self.users)]
