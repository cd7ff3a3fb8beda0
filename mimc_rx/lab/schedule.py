"""The open-loop schedule of a load run, and the ledger that follows each message to its end.

Open loop means the schedule is fixed before the run starts: message ``i`` is due at
``start + t_i`` whatever happens to the messages before it. A slow server or a paused route
never slows the schedule; a message that cannot leave on time waits in its sender's queue and
its latency, measured from the *scheduled* time, includes that wait. (A closed loop, which sends
the next message when the previous one is acked, measures the server's pace instead of the
user's experience: the coordinated-omission mistake.)

Each message carries the run id, its sequence number and its scheduled wall time in the first
28 bytes of its payload (:func:`encode_payload`), so a receiver can tell this run's messages
from anything else, find the record, and count losses, duplicates and reordering per user.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "HEADER_BYTES",
    "KINDS",
    "Ledger",
    "MessageRecord",
    "Outcome",
    "build_schedule",
    "decode_payload",
    "encode_payload",
]

KINDS: tuple[str, ...] = ("p2p", "group")
"""The kinds of message a schedule can mix: one-to-one and normal-group (P2T)."""

_HEADER = struct.Struct("!4s8sQd")
_MAGIC = b"mlab"
HEADER_BYTES = _HEADER.size
"""Bytes at the start of each payload: magic, run id, sequence, scheduled wall time."""


class Outcome:
    """The end state of a message, as the ``outcome`` column spells it."""

    DELIVERED = "delivered"
    """Every expected recipient got it (a group message: every other member)."""
    PARTIAL = "partial"
    """Some but not all group members got it."""
    LOST = "lost"
    """The server acked it but no recipient got it before the run ended."""
    UNACKED = "unacked"
    """Sent, never acked, never delivered (in flight on a connection that died)."""
    FAILED = "failed"
    """The server answered with an error."""
    UNSENT = "unsent"
    """Never left its sender (offline until the end, or the run was cut short)."""

    ALL: tuple[str, ...] = (DELIVERED, PARTIAL, LOST, UNACKED, FAILED, UNSENT)


def encode_payload(run_id: bytes, seq: int, scheduled_wall: float, size: int) -> bytes:
    """The payload of message ``seq``: the header, padded with ``x`` to ``size`` bytes."""
    head = _HEADER.pack(_MAGIC, run_id, seq, scheduled_wall)
    return head + b"x" * max(0, size - len(head))


def decode_payload(payload: bytes) -> tuple[bytes, int, float] | None:
    """``(run_id, seq, scheduled_wall)`` of a lab payload, or None for anything else."""
    if len(payload) < HEADER_BYTES or payload[:4] != _MAGIC:
        return None
    _, run_id, seq, wall = _HEADER.unpack_from(payload)
    return run_id, seq, wall


class MessageRecord:
    """One scheduled message and what became of it (times are loop times, seconds).

    Mutable on purpose: the ledger fills it in as the message moves along.
    """

    __slots__ = (
        "acked",
        "attempts",
        "delivered",
        "deliveries",
        "duplicates",
        "error",
        "expected",
        "first_delivered",
        "kind",
        "receivers",
        "scheduled",
        "sender",
        "sent",
        "seq",
        "server_ts",
        "size",
        "target",
    )

    def __init__(
        self, *, seq: int, sender: int, target: int, kind: str, size: int, scheduled: float
    ) -> None:
        self.seq = seq
        self.sender = sender
        self.target = target
        """The recipient user index (p2p) or group index (group)."""
        self.kind = kind
        self.size = size
        self.scheduled = scheduled
        """Seconds after the run's start."""
        self.sent = math.nan
        self.acked = math.nan
        self.first_delivered = math.nan
        self.delivered = math.nan
        """When the last expected recipient got it."""
        self.server_ts = math.nan
        """The server's ack timestamp (its wall clock, seconds)."""
        self.error = ""
        self.attempts = 0
        self.deliveries = 0
        self.expected = 1
        self.duplicates = 0
        self.receivers: set[int] | None = None

    def outcome(self) -> str:
        """The end state, from the fields (see :class:`Outcome`)."""
        if self.error:
            return Outcome.FAILED
        if self.deliveries >= self.expected:
            return Outcome.DELIVERED
        if self.deliveries:
            return Outcome.PARTIAL
        if not math.isnan(self.acked):
            return Outcome.LOST
        if self.attempts:
            return Outcome.UNACKED
        return Outcome.UNSENT


@dataclass(frozen=True, slots=True, kw_only=True)
class _Groups:
    members: tuple[tuple[int, ...], ...]
    of_user: tuple[int, ...]


def _groups(users: int, group_size: int) -> _Groups:
    members: list[tuple[int, ...]] = []
    of_user: list[int] = []
    for start in range(0, users, group_size):
        chunk = tuple(range(start, min(users, start + group_size)))
        if len(chunk) < 2 and members:  # a lone last user joins the previous group
            members[-1] = (*members[-1], *chunk)
        else:
            members.append(chunk)
        of_user.extend([len(members) - 1] * len(chunk))
    return _Groups(members=tuple(members), of_user=tuple(of_user))


def build_schedule(
    *,
    users: int,
    rate: float,
    seconds: float,
    mix: Mapping[str, float],
    payload_bytes: tuple[int, int],
    group_size: int = 5,
    arrivals: str = "uniform",
    rng: random.Random,
) -> tuple[list[MessageRecord], tuple[tuple[int, ...], ...]]:
    """Every message of a run, in scheduled order, and the members of each group.

    Args:
        users: how many users send and receive; each sends to a random other user, or to
            its own group (users are split into groups of ``group_size``).
        rate: messages per second, all users together.
        seconds: how long the schedule lasts.
        mix: the share of each kind (``{"p2p": 0.8, "group": 0.2}``); normalised.
        payload_bytes: the smallest and largest payload, uniform in between.
        arrivals: ``"uniform"`` (one every ``1/rate`` seconds) or ``"poisson"``
            (exponential gaps with the same mean).
        rng: the source of every random choice (seed it for a repeatable run).

    Raises:
        ValueError: fewer than two users, a rate or duration that is not positive, an unknown
            kind, or sizes too small to carry the header.
    """
    if users < 2:
        raise ValueError("a load needs at least two users")
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    unknown = set(mix) - set(KINDS)
    if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix gives non-negative shares of {KINDS}, not {dict(mix)!r}")
    low, high = payload_bytes
    if low < HEADER_BYTES or high < low:
        raise ValueError(f"payload sizes must be at least {HEADER_BYTES} bytes and low <= high")
    if arrivals not in ("uniform", "poisson"):
        raise ValueError("arrivals is 'uniform' or 'poisson'")
    groups = _groups(users, max(2, group_size))
    kinds: Sequence[str] = list(mix)
    weights = [mix[k] for k in kinds]
    records: list[MessageRecord] = []
    count = round(rate * seconds)
    t = 0.0
    for seq in range(count):
        if arrivals == "uniform":
            t = seq / rate
        else:
            t += rng.expovariate(rate) if seq else 0.0
            if t >= seconds:
                break
        sender = rng.randrange(users)
        kind = rng.choices(kinds, weights)[0]
        if kind == "p2p":
            target = rng.randrange(users - 1)
            target += target >= sender  # anyone but the sender
            expected = 1
        else:
            target = groups.of_user[sender]
            expected = len(groups.members[target]) - 1
        rec = MessageRecord(
            seq=seq,
            sender=sender,
            target=target,
            kind=kind,
            size=rng.randint(low, high),
            scheduled=t,
        )
        rec.expected = expected
        records.append(rec)
    return records, groups.members


class Ledger:
    """The records of one run, and the receiving side's bookkeeping.

    Args:
        run_id: 8 bytes that mark this run's payloads.
        records: the schedule, indexed by sequence number.
    """

    def __init__(self, run_id: bytes, records: list[MessageRecord]) -> None:
        if len(run_id) != 8:
            raise ValueError("a run id is 8 bytes")
        self.run_id = run_id
        self.records = records
        self.foreign = 0
        """Messages received that were not this run's (another run, another client)."""
        self.out_of_order: dict[int, int] = {}
        """Per receiver: deliveries whose sequence is below one already seen from that sender."""
        self._highest: dict[tuple[int, int], int] = {}
        self.delivered_count = 0
        """Deliveries counted so far (first ones only), for the progress bar."""
        self.open = len(records)
        """Messages that can still change (not fully delivered, not failed)."""
        self.all_settled = asyncio.Event()
        """Set once :attr:`open` reaches 0."""
        if not records:
            self.all_settled.set()

    def _settle(self) -> None:
        self.open -= 1
        if self.open <= 0:
            self.all_settled.set()

    def fail(self, rec: MessageRecord, error: str) -> None:
        """The server (or the core) refused ``rec``: it will never be delivered."""
        if not rec.error and rec.deliveries < rec.expected:
            self._settle()
        rec.error = error or "error"

    def deliver(self, receiver: int, payload: bytes, now: float) -> None:
        """A message arrived at user ``receiver`` at ``now`` (seconds after the start)."""
        head = decode_payload(payload)
        if head is None or head[0] != self.run_id or head[1] >= len(self.records):
            self.foreign += 1
            return
        rec = self.records[head[1]]
        if rec.kind == "p2p":
            if rec.deliveries:
                rec.duplicates += 1
                return
        else:
            if rec.receivers is None:
                rec.receivers = set()
            if receiver in rec.receivers:
                rec.duplicates += 1
                return
            rec.receivers.add(receiver)
        rec.deliveries += 1
        self.delivered_count += 1
        if rec.deliveries == 1:
            rec.first_delivered = now
        if rec.deliveries == rec.expected:
            rec.delivered = now
            if not rec.error:
                self._settle()
        key = (receiver, rec.sender)
        highest = self._highest.get(key, -1)
        if rec.seq < highest:
            self.out_of_order[receiver] = self.out_of_order.get(receiver, 0) + 1
        else:
            self._highest[key] = rec.seq

    def settled(self) -> bool:
        """True once no message can still change: each one delivered in full, or failed."""
        return self.open <= 0

    def pending_after_ack(self) -> int:
        """Acked messages still waiting for a recipient: what the drain phase waits for."""
        return sum(
            1
            for r in self.records
            if not r.error and r.deliveries < r.expected and not math.isnan(r.acked)
        )
