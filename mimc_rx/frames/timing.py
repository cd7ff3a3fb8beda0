"""Message timing: what was sent, when it was acked, when it arrived, and what got lost.

Theory of operation. A :class:`SendLedger` stamps every message a client sends (packet id,
sender, target, size, local send time) by wrapping the client's public ``send_*`` methods. The
client's streams, collected with :mod:`mimc_rx.frames`, carry the other two times: the local
receive time of each ``ServerAck`` and of each message another client got. Joining them gives
the two latencies the OpenMessaging benchmark reports:

* **publish latency**: send -> server ack, on the sender (:func:`publish_latency`);
* **end-to-end latency**: send -> delivery, on a receiver (:func:`end_to_end_latency`).

Both are measured on local clocks (the wall clock by default, shared by every client on one
machine), never against the server's millisecond timestamps. Joins use the sender *and* the
packet id, because web-style packet ids (``"web" + ms + counter``) of two clients may collide.

:func:`latency_summary` gives count, average, p50, p90, p99, p99.9 and max in milliseconds;
:func:`omb_metrics` the same under the OpenMessaging benchmark's result names;
:func:`throughput` (from :mod:`mimc_rx.frames.rates`) messages and bytes per second.
:func:`loss_report` answers "did I lose messages?" by packet id against the ledger;
:func:`sequence_report` lists repeated and out-of-order sequences (and holes, for servers whose
sequences are contiguous: the local server's, like the cloud's, grow with time, so holes there
mean nothing). The plots live in
:mod:`mimc_rx.frames.plots` and are re-exported here; they import only ``rates``, never this
module, so the adapters have no import circle.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import reactivex
from reactivex.subject import Subject

from mimc_rx.frames.clock import Clock, resolve_clock
from mimc_rx.frames.plots import (
    plot_latency_cdf,
    plot_latency_histogram,
    plot_latency_over_time,
    plot_throughput,
)
from mimc_rx.frames.rates import throughput
from mimc_rx.protocol.events import PacketId

if TYPE_CHECKING:
    import pandas as pd
    from reactivex import Observable
    from reactivex.abc import SchedulerBase

__all__ = [
    "PERCENTILES",
    "SendLedger",
    "Sender",
    "Sent",
    "end_to_end_latency",
    "latency_summary",
    "loss_report",
    "omb_metrics",
    "plot_latency_cdf",
    "plot_latency_histogram",
    "plot_latency_over_time",
    "plot_throughput",
    "publish_latency",
    "sequence_report",
    "throughput",
]

PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
"""The percentiles of :func:`latency_summary`, by column name."""

_TIME = "datetime64[us, UTC]"


class Sender(Protocol):
    """What the ledger needs from a client: ``MIMCUser``'s public send methods."""

    @property
    def app_account(self) -> str: ...

    def send_message(
        self, to_account: str, payload: str | bytes, *, is_store: bool = ..., biz_type: str = ...
    ) -> PacketId: ...

    def send_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = ...,
        biz_type: str = ...,
    ) -> PacketId: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One sent message, as the ledger recorded it."""

    packet_id: PacketId
    kind: str
    """``"p2p"`` or ``"p2t"``."""
    sender: str
    target: str
    """The recipient account, or the topic id as a decimal string."""
    size: int
    """Payload size in bytes."""
    sent_at: int
    """Local time just before the send call, microseconds since the epoch."""


def _size(payload: str | bytes) -> int:
    return len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)


class SendLedger:
    """Records what clients send, for latency joins and loss reports.

    Use its ``send_*`` methods instead of the client's (same arguments, plus the client first)::

        ledger = SendLedger()
        pid = ledger.send_message(alice, "bob", "hi")

    One ledger may serve several clients. Thread-safe. Each record is also published on
    :attr:`sent`, so a :class:`~mimc_rx.frames.replay.Recorder` can keep the send side of a session
    next to its received streams, and :meth:`from_records` rebuilds a ledger from a replay.

    Args:
        clock: the send-time clock; use the same one as the receive side (the default wall
            clock for live traffic, ``scheduler``'s for virtual time).
        scheduler: see ``clock``.
    """

    def __init__(
        self, *, clock: Clock | None = None, scheduler: SchedulerBase | None = None
    ) -> None:
        self._clock = resolve_clock(clock, scheduler)
        self._records: list[Sent] = []
        self._lock = threading.Lock()
        self._published: Subject[Sent] = Subject()

    @classmethod
    def from_records(cls, records: Iterable[Sent]) -> SendLedger:
        """A ledger holding ``records`` (e.g. the ``Sent`` events of a replayed recording)."""
        ledger = cls()
        ledger._records.extend(records)
        return ledger

    @property
    def sent(self) -> Observable[Sent]:
        """Each record as it is made (hot: records made before subscribing are not replayed)."""
        published = self._published

        def subscribe(observer: Any, scheduler: Any = None) -> Any:
            return published.subscribe(observer, scheduler=scheduler)

        return reactivex.create(subscribe)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<SendLedger {len(self._records):,} sent>"

    @property
    def records(self) -> list[Sent]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def record(
        self,
        packet_id: str,
        *,
        kind: str,
        sender: str,
        target: str | int,
        size: int,
        sent_at: int | None = None,
    ) -> Sent:
        """Record a send made some other way (``sent_at`` defaults to now)."""
        entry = Sent(
            packet_id=PacketId(packet_id),
            kind=kind,
            sender=sender,
            target=str(target),
            size=size,
            sent_at=self._clock() if sent_at is None else sent_at,
        )
        with self._lock:
            self._records.append(entry)
        self._published.on_next(entry)
        return entry

    def send_message(
        self,
        user: Sender,
        to_account: str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """``user.send_message(...)``, recorded. Nothing is recorded when the send raises."""
        sent_at = self._clock()
        pid = user.send_message(to_account, payload, is_store=is_store, biz_type=biz_type)
        self.record(
            pid,
            kind="p2p",
            sender=user.app_account,
            target=to_account,
            size=_size(payload),
            sent_at=sent_at,
        )
        return pid

    def send_group_message(
        self,
        user: Sender,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """``user.send_group_message(...)``, recorded."""
        sent_at = self._clock()
        pid = user.send_group_message(topic_id, payload, is_store=is_store, biz_type=biz_type)
        self.record(
            pid,
            kind="p2t",
            sender=user.app_account,
            target=topic_id,
            size=_size(payload),
            sent_at=sent_at,
        )
        return pid

    def frame(self) -> pd.DataFrame:
        """The ledger as a DataFrame.

        Columns: ``packet_id`` str, ``kind`` / ``sender`` / ``target`` category, ``size`` int64,
        ``sent_at`` datetime64[us, UTC].
        """
        import pandas as pd

        from mimc_rx.frames.schema import build_column

        records = self.records
        return pd.DataFrame(
            {
                "packet_id": build_column("str", [r.packet_id for r in records]),
                "kind": build_column("category", [r.kind for r in records]),
                "sender": build_column("category", [r.sender for r in records]),
                "target": build_column("category", [r.target for r in records]),
                "size": build_column("int", [r.size for r in records]),
                "sent_at": build_column("time_us", [r.sent_at for r in records]),
            }
        )


# --------------------------------------------------------------------------- latency joins


def _ms(delta: pd.Series) -> pd.Series:
    """Durations as float milliseconds; missing (NaT) becomes NaN."""
    milliseconds: pd.Series = delta.dt.total_seconds() * 1000.0
    return milliseconds


def _plain(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Key columns as plain strings, so joins never trip over differing categories."""
    out = frame.copy()
    for name in columns:
        out[name] = out[name].astype("str")
    return out


def publish_latency(sent: pd.DataFrame, acks: pd.DataFrame) -> pd.DataFrame:
    """Join the ledger with server acks: one row per sent message.

    Args:
        sent: ``SendLedger.frame()``.
        acks: a ``ServerAck`` frame (``to_frame(user.server_acks, name=account)``). With a
            ``source`` column (the sender's account) the join is on sender and packet id,
            otherwise on packet id alone.

    Returns:
        The ledger's columns plus ``acked_at``, ``sequence`` (nullable Int64), ``server_time``,
        ``ok`` (nullable boolean) and ``publish_latency_ms`` (float64, NaN when no ack came).
    """

    keys = ["packet_id"]
    right = acks.rename(
        columns={"received_at": "acked_at", "timestamp": "server_time", "source": "sender"}
    )
    if "sender" in right.columns:
        keys = ["sender", "packet_id"]
    right = right[[*keys, "acked_at", "sequence", "server_time", "ok"]]
    right = _plain(right, keys).drop_duplicates(keys)  # a re-sent ack counts once
    table = _plain(sent, keys).merge(right, on=keys, how="left")
    table = table.astype({"sequence": "Int64", "ok": "boolean"})
    for name in ("kind", "sender", "target"):
        table[name] = table[name].astype("category")
    table["publish_latency_ms"] = _ms(table["acked_at"] - table["sent_at"])
    return table.reset_index(drop=True)


def end_to_end_latency(sent: pd.DataFrame, deliveries: pd.DataFrame) -> pd.DataFrame:
    """Join the ledger with messages other clients received: one row per delivery.

    Args:
        sent: ``SendLedger.frame()``.
        deliveries: a ``P2PMessage`` or ``P2TMessage`` frame, or several concatenated;
            a ``source`` column (the receiving client) becomes ``receiver``, otherwise the
            message's ``to_account`` does.

    Returns:
        The ledger's columns plus ``receiver``, ``delivered_at``, ``sequence`` and
        ``end_to_end_latency_ms`` (float64). A group message gives one row per receiver; a
        message never delivered gives none (see :func:`loss_report`).
    """
    keys = ["sender", "packet_id"]
    right = deliveries.rename(columns={"from_account": "sender", "received_at": "delivered_at"})
    if "source" in right.columns:
        right = right.rename(columns={"source": "receiver"})
    elif "to_account" in right.columns:
        right["receiver"] = right["to_account"]
    else:
        right["receiver"] = None
    right = _plain(right[[*keys, "receiver", "delivered_at", "sequence"]], keys)
    table = _plain(sent, keys).merge(right, on=keys, how="inner")
    for name in ("kind", "sender", "target", "receiver"):
        table[name] = table[name].astype("str").astype("category")
    table["end_to_end_latency_ms"] = _ms(table["delivered_at"] - table["sent_at"])
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- statistics


def _latency_values(data: pd.DataFrame | pd.Series | None) -> pd.Series | None:
    import pandas as pd

    if data is None:
        return None
    if isinstance(data, pd.DataFrame):
        names = [c for c in data.columns if str(c).endswith("latency_ms")]
        if len(names) != 1:
            raise ValueError(f"expected one *_latency_ms column, found {names}")
        data = data[names[0]]
    return data.dropna().astype("float64")


def latency_summary(
    publish: pd.DataFrame | pd.Series | None = None,
    end_to_end: pd.DataFrame | pd.Series | None = None,
) -> pd.DataFrame:
    """Latency statistics in milliseconds, one row per kind of latency given.

    Args:
        publish: :func:`publish_latency`'s table (or its latency column).
        end_to_end: :func:`end_to_end_latency`'s table (or its latency column).

    Returns:
        Rows ``publish latency`` and/or ``end-to-end latency``; columns ``count`` (int64),
        ``avg``, ``p50``, ``p90``, ``p99``, ``p99.9``, ``max`` (float64 ms). Percentiles are
        linear interpolations of the measured values; unacked or undelivered rows are ignored.
    """
    import pandas as pd

    rows: dict[str, dict[str, float]] = {}
    for label, data in (("publish latency", publish), ("end-to-end latency", end_to_end)):
        values = _latency_values(data)
        if values is None:
            continue
        row: dict[str, float] = {"count": float(len(values)), "avg": float(values.mean())}
        for name, q in PERCENTILES.items():
            row[name] = float(values.quantile(q))
        row["max"] = float(values.max())
        rows[label] = row
    columns = ["count", "avg", *PERCENTILES, "max"]
    summary = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype="float64")
    summary["count"] = summary["count"].astype("int64")
    summary.index.name = "latency (ms)"
    return summary


def omb_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """:func:`latency_summary` under the OpenMessaging benchmark's result names.

    For example ``aggregatedPublishLatency99pct`` or ``aggregatedEndToEndLatencyMax``, in
    milliseconds like OMB's. (OMB has no 90th percentile; ``...Latency90pct`` follows its
    pattern.)
    """
    prefixes = {"publish latency": "PublishLatency", "end-to-end latency": "EndToEndLatency"}
    suffixes = {"avg": "Avg", "p50": "50pct", "p90": "90pct", "p99": "99pct"}
    suffixes |= {"p99.9": "999pct", "max": "Max"}
    metrics: dict[str, float] = {}
    for label, row in summary.iterrows():
        prefix = prefixes[str(label)]
        for column, suffix in suffixes.items():
            metrics[f"aggregated{prefix}{suffix}"] = float(row[column])
    return metrics


# --------------------------------------------------------------------------- "did I lose messages?"


def loss_report(sent: pd.DataFrame, received: pd.DataFrame) -> pd.DataFrame:
    """Compare what was sent to one receiver with what it got, by sender and packet id.

    Args:
        sent: the ledger rows the receiver should have got, e.g.
            ``ledger[(ledger.kind == "p2p") & (ledger.target == "bob")]``, or for a group the
            rows with ``target == str(topic_id)`` and ``sender != "bob"``.
        received: the receiver's message frame (P2P and/or P2T).

    Returns:
        One row per problem (an empty table means nothing was lost or repeated): ``sender``,
        ``packet_id``, ``problem`` (``lost``: sent, never delivered; ``duplicate``: delivered
        more than once; ``unexpected``: delivered but not in ``sent``) and ``deliveries``
        (int64, how many times it arrived).
    """
    import pandas as pd

    keys = ["sender", "packet_id"]
    expected = _plain(sent[keys], keys).drop_duplicates()
    got = _plain(received.rename(columns={"from_account": "sender"})[keys], keys)
    counts = got.value_counts(keys).rename("deliveries").reset_index()
    table = expected.merge(counts, on=keys, how="outer", indicator=True)
    table["deliveries"] = table["deliveries"].fillna(0).astype("int64")
    problem = pd.Series(pd.NA, index=table.index, dtype="str")
    problem[table["_merge"] == "left_only"] = "lost"
    problem[(table["_merge"] == "both") & (table["deliveries"] > 1)] = "duplicate"
    problem[table["_merge"] == "right_only"] = "unexpected"
    table["problem"] = problem
    table = table[table["problem"].notna()].drop(columns="_merge")
    table["problem"] = pd.Categorical(
        table["problem"], categories=["lost", "duplicate", "unexpected"]
    )
    table = table.sort_values(["problem", *keys], kind="stable").reset_index(drop=True)
    return table[[*keys, "problem", "deliveries"]]


def sequence_report(
    received: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    contiguous: bool = False,
) -> pd.DataFrame:
    """Repeated, out-of-order and (optionally) missing sequences, in arrival order.

    Args:
        received: a message frame (sequences in one user's space, or per topic for UC); rows
            are taken in ``received_at`` order when the column is there.
        by: column(s) splitting independent sequence spaces: ``"source"`` for several
            receivers, ``"topic_id"`` for unlimited groups.
        contiguous: the server numbers messages 1, 2, 3...: report holes as ``gap`` rows.
            Leave it off for the local server and the cloud, whose sequences grow with time.

    Returns:
        One row per finding, ``by`` columns first: ``problem`` (``duplicate``, ``out_of_order``
        or ``gap``), ``first`` and ``last`` (int64: the sequence, or a gap's missing range) and
        ``count`` (int64: deliveries of a duplicate, 1 for out-of-order, missing numbers of a
        gap). Empty when all is well.
    """
    import pandas as pd

    groups = [] if by is None else [by] if isinstance(by, str) else list(by)
    if "received_at" in received.columns:
        # Frames concatenated per stream (P2P, then group) are put back in arrival order.
        received = received.sort_values("received_at", kind="stable")
    rows: list[dict[str, Any]] = []
    parts = received.groupby(groups, observed=True, sort=False) if groups else [((), received)]
    for key, part in parts:
        labels = dict(zip(groups, key if isinstance(key, tuple) else (key,), strict=True))
        sequences = part["sequence"].astype("int64").to_numpy()
        counts = pd.Series(sequences).value_counts(sort=False)
        repeated = counts[counts > 1].sort_index()
        for sequence, count in zip(repeated.index.tolist(), repeated.tolist(), strict=True):
            rows.append(labels | _finding("duplicate", sequence, sequence, count))
        highest = None
        seen: set[int] = set()
        for sequence in sequences.tolist():
            if highest is not None and sequence < highest and sequence not in seen:
                rows.append(labels | _finding("out_of_order", sequence, sequence, 1))
            seen.add(sequence)
            highest = sequence if highest is None else max(highest, sequence)
        if contiguous and len(seen) > 1:
            ordered = sorted(seen)
            for low, high in itertools.pairwise(ordered):
                if high - low > 1:
                    rows.append(labels | _finding("gap", low + 1, high - 1, high - low - 1))
    columns = [*groups, "problem", "first", "last", "count"]
    table = pd.DataFrame(rows, columns=columns)
    table["problem"] = pd.Categorical(
        table["problem"], categories=["duplicate", "out_of_order", "gap"]
    )
    return table.astype({"first": "int64", "last": "int64", "count": "int64"})


def _finding(problem: str, first: int, last: int, count: int) -> dict[str, Any]:
    return {"problem": problem, "first": first, "last": last, "count": count}
