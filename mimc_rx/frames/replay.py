"""Record a session's events and replay them later as the same observables.

Theory of operation. A :class:`Recorder` subscribes to named streams (``add``), or to every
stream of a client at once (``add_user`` names them ``"alice/p2p_messages"``...), and keeps one
list of records in arrival order: stream name, local receive time (integer microseconds, see
:mod:`mimc_rx.frames.clock`) and the event itself. A :class:`Recording` saves that list to
Parquet (pyarrow) or JSON lines and loads it back, equal record for record.

:meth:`Recording.replay` turns it into observables again (:class:`Replay`), one per stream,
emitting each event at its recorded time on a scheduler:

* on a virtual-time scheduler (``HistoricalScheduler``, ``TestScheduler``) events are due at
  their recorded receive times, so a sink using the scheduler's clock stamps exactly the recorded
  times: a notebook re-runs identically, offline and in no time;
* on a real scheduler (default: the running asyncio loop) events keep their recorded spacing,
  divided by ``speed``, starting now.

Streams are hot: subscribe, then ``start()`` (or ``await run()``). ``replay.user("alice")``
gives an object with the client's stream names as attributes, so code written against a live
``MIMCUser`` runs against the replay unchanged.

File format (version 1). Parquet: one row per record, columns ``_stream`` (string),
``_received_at`` (timestamp[us, UTC]), ``_type`` (``"module:QualName"``) and one column per event
field name across all types (null where a type lacks it); a column whose values pyarrow cannot
hold in one type is stored as tagged JSON text and listed in the schema metadata. JSON lines: a
header object, then ``{"stream", "received_at", "type", "fields"}`` per line, bytes as
``{"$bytes": base64}``. Only dataclasses from ``mimc_rx`` modules, or types passed to
:func:`register_event_type`, are loaded back; a file can never make us import anything else.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import importlib
import json
import threading
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import reactivex
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.scheduler import VirtualTimeScheduler
from reactivex.subject import Subject

from mimc_rx.frames.clock import Clock, datetime_to_us, resolve_clock, us_to_datetime

if TYPE_CHECKING:
    import pandas as pd
    from reactivex import Observable
    from reactivex.abc import DisposableBase, SchedulerBase

__all__ = [
    "FORMAT",
    "USER_STREAMS",
    "Record",
    "Recorder",
    "Recording",
    "Replay",
    "register_event_type",
]

FORMAT = "mimc-rx-recording"
_VERSION = 1

USER_STREAMS: tuple[str, ...] = (
    "status",
    "server_acks",
    "p2p_messages",
    "group_messages",
    "uc_messages",
    "uc_join_results",
    "uc_quit_results",
    "uc_dismissals",
    "pull_notifications",
    "disconnects",
    "reconnects",
)
"""The ``MIMCUser`` streams ``Recorder.add_user`` records (those the user object has)."""

_REGISTERED: dict[str, type] = {}


def register_event_type(cls: type) -> type:
    """Allow recordings to load events of ``cls``, a dataclass outside ``mimc_rx``.

    Usable as a class decorator.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is not a dataclass")
    _REGISTERED[_type_name(cls)] = cls
    return cls


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_type(name: str) -> type:
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, _, qualname = name.partition(":")
    if module_name != "mimc_rx" and not module_name.startswith("mimc_rx."):
        raise ValueError(f"unknown event type {name!r}: call register_event_type first")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        raise ValueError(f"{name!r} is not an event dataclass")
    return target


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded event: which stream, when it arrived (µs since the epoch), what it was."""

    stream: str
    received_at: int
    event: Any


# --------------------------------------------------------------------------- recording


class Recorder:
    """Records named streams into one arrival-ordered list.

    Args:
        clock: receive-time clock; defaults to ``scheduler``'s, else the wall clock.
        scheduler: passed to ``subscribe``; see ``clock``.
    """

    def __init__(
        self, *, clock: Clock | None = None, scheduler: SchedulerBase | None = None
    ) -> None:
        self._clock = resolve_clock(clock, scheduler)
        self._scheduler = scheduler
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._subscriptions = CompositeDisposable()
        self._names: set[str] = set()

    def add(self, name: str, source: Observable[Any]) -> Recorder:
        """Record ``source`` under ``name`` from now on; returns self."""
        if name in self._names:
            raise ValueError(f"a stream named {name!r} is already recorded")
        self._names.add(name)

        def on_next(event: Any) -> None:
            stamp = self._clock()
            with self._lock:
                self._records.append(Record(name, stamp, event))

        self._subscriptions.add(source.subscribe(on_next, scheduler=self._scheduler))
        return self

    def add_user(
        self, user: Any, name: str | None = None, streams: Iterable[str] = USER_STREAMS
    ) -> Recorder:
        """Record every stream of a client as ``"<name>/<stream>"``; ``name`` defaults to its
        ``app_account``. Streams the object lacks are skipped."""
        prefix = name if name is not None else str(user.app_account)
        for stream in streams:
            source = getattr(user, stream, None)
            if source is not None:
                self.add(f"{prefix}/{stream}", source)
        return self

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<Recorder {len(self._names)} streams, {len(self._records):,} records>"

    def recording(self) -> Recording:
        """What was recorded so far (a snapshot; recording goes on)."""
        with self._lock:
            return Recording(list(self._records), streams=sorted(self._names))

    def save(self, path: str | Path, *, format: str | None = None) -> Path:
        """Save what was recorded so far; see :meth:`Recording.save`."""
        return self.recording().save(path, format=format)

    def dispose(self) -> None:
        """Stop recording (unsubscribe from every stream)."""
        self._subscriptions.dispose()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()


class Recording:
    """Recorded events of several streams, in arrival order; saved, loaded and replayed.

    Args:
        records: the records, oldest first.
        streams: stream names, including any that recorded nothing (default: those seen).
    """

    def __init__(self, records: Sequence[Record], streams: Iterable[str] = ()) -> None:
        self.records: list[Record] = list(records)
        names = dict.fromkeys(streams)
        names.update(dict.fromkeys(r.stream for r in self.records))
        self.streams: tuple[str, ...] = tuple(names)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recording):
            return NotImplemented
        return self.records == other.records and set(self.streams) == set(other.streams)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        span = ""
        if self.records:
            span = f", {self.start:%Y-%m-%d %H:%M:%S} to {self.end:%H:%M:%S} UTC"
        return f"<Recording {len(self.streams)} streams, {len(self.records):,} records{span}>"

    @property
    def start(self) -> datetime:
        """Receive time of the first record (UTC)."""
        return us_to_datetime(self.records[0].received_at)

    @property
    def end(self) -> datetime:
        """Receive time of the last record (UTC)."""
        return us_to_datetime(self.records[-1].received_at)

    def events(self, stream: str) -> list[Any]:
        """The events of one stream, in order."""
        return [r.event for r in self.records if r.stream == stream]

    def frame(self, *streams: str, **options: Any) -> pd.DataFrame:
        """Streams as a DataFrame, with the recorded receive times, in arrival order.

        One stream gives its typed frame; several give one mixed frame (an ``event`` column and
        the union of the columns), e.g. a connection timeline from
        ``frame("bob/status", "bob/disconnects", "bob/reconnects")``. ``options`` go to
        :func:`mimc_rx.frames.events_to_frame` (``source=``, ``payload=``...).
        """
        from mimc_rx.frames import events_to_frame

        if not streams:
            raise TypeError("name at least one stream")
        wanted = set(streams)
        chosen = [r for r in self.records if r.stream in wanted]
        return events_to_frame(
            [r.event for r in chosen], [r.received_at for r in chosen], **options
        )

    def replay(
        self,
        scheduler: SchedulerBase | None = None,
        *,
        speed: float = 1.0,
        rebase: bool | None = None,
    ) -> Replay:
        """Observables that emit this recording again; see :class:`Replay`."""
        return Replay(self, scheduler, speed=speed, rebase=rebase)

    # -- files

    def save(self, path: str | Path, *, format: str | None = None) -> Path:
        """Write to ``path``: ``format`` ``"parquet"`` or ``"jsonl"``, by default from the
        suffix (``.parquet``; ``.jsonl`` / ``.json``)."""
        path = Path(path)
        kind = format or _format_of(path)
        if kind == "parquet":
            _save_parquet(self, path)
        elif kind == "jsonl":
            _save_jsonl(self, path)
        else:
            raise ValueError(f"unknown recording format {kind!r}")
        return path

    @classmethod
    def load(cls, path: str | Path, *, format: str | None = None) -> Recording:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        kind = format or _format_of(path)
        if kind == "parquet":
            return _load_parquet(path)
        if kind == "jsonl":
            return _load_jsonl(path)
        raise ValueError(f"unknown recording format {kind!r}")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name!r}: pass format='parquet' or 'jsonl'")


# --------------------------------------------------------------------------- values


def _fields(event: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        raise TypeError(f"only dataclass events can be recorded, not {type(event).__name__}")
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


def _plain(value: Any) -> Any:
    """A field value as pyarrow/JSON sees it: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _tag(value: Any) -> Any:
    """JSON-safe form of a plain value (bytes tagged as base64)."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot record a field value of type {type(value).__name__}")


def _untag(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _rebuild(cls: type, values: Mapping[str, Any]) -> Any:
    """An event of ``cls`` from plain field values (enums and tuples restored by type hint)."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        kwargs[field.name] = _restore(hints.get(field.name), values[field.name])
    return cls(**kwargs)


def _restore(hint: Any, value: Any) -> Any:
    if value is None or hint is None:
        return value
    candidates = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
    if typing.get_origin(hint) is tuple or (isinstance(value, list) and tuple in candidates):
        return tuple(value)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate(value)
        if typing.get_origin(candidate) is tuple and isinstance(value, list):
            return tuple(value)
    return value


# --------------------------------------------------------------------------- parquet


def _save_parquet(recording: Recording, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_fields(r.event) for r in recording.records]
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns: dict[str, Any] = {
        "_stream": pa.array([r.stream for r in recording.records], pa.string()),
        "_received_at": pa.array([r.received_at for r in recording.records], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "_type": pa.array([_type_name(type(r.event)) for r in recording.records], pa.string()),
    }
    json_columns = []
    for name in names:
        values = [_plain(row[name]) if name in row else None for row in rows]
        try:
            columns[name] = _arrow_column(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array(
                [None if v is None else json.dumps(_tag(v)) for v in values], pa.string()
            )
            json_columns.append(name)
    metadata = {
        "mimc_rx.format": FORMAT,
        "mimc_rx.version": str(_VERSION),
        "mimc_rx.streams": json.dumps(list(recording.streams)),
        "mimc_rx.json_columns": json.dumps(json_columns),
    }
    table = pa.table(columns).replace_schema_metadata(metadata)
    pq.write_table(table, path)


def _arrow_column(values: list[Any]) -> Any:
    """One typed column; ids over 2**63 (topic ids are uint64 on the wire) as uint64."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except OverflowError:
        present = [v for v in values if v is not None]
        if all(type(v) is int and v >= 0 for v in present):
            return pa.array(values, pa.uint64())
        raise


def _load_parquet(path: Path) -> Recording:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    _check_header(metadata.get("mimc_rx.format"), metadata.get("mimc_rx.version"))
    json_columns = set(json.loads(metadata.get("mimc_rx.json_columns", "[]")))
    streams = table.column("_stream").to_pylist()
    stamps = table.column("_received_at").cast(pa.int64()).to_pylist()
    types = table.column("_type").to_pylist()
    fields: dict[str, list[Any]] = {}
    for name in table.column_names:
        if name.startswith("_"):
            continue
        values = table.column(name).to_pylist()
        if name in json_columns:
            values = [None if v is None else _untag(json.loads(v)) for v in values]
        fields[name] = values
    records = []
    for i, type_name in enumerate(types):
        cls = _resolve_type(type_name)
        names = [f.name for f in dataclasses.fields(cls)]
        values = {name: fields[name][i] for name in names if name in fields}
        records.append(Record(streams[i], stamps[i], _rebuild(cls, values)))
    return Recording(records, streams=json.loads(metadata.get("mimc_rx.streams", "[]")))


def _check_header(fmt: str | None, version: str | int | None) -> None:
    if fmt != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if int(version or 0) > _VERSION:
        raise ValueError(f"recording version {version} is newer than this mimc-rx ({_VERSION})")


# --------------------------------------------------------------------------- JSON lines


def _save_jsonl(recording: Recording, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        header = {"format": FORMAT, "version": _VERSION, "streams": list(recording.streams)}
        out.write(json.dumps(header) + "\n")
        for record in recording.records:
            fields = {k: _tag(_plain(v)) for k, v in _fields(record.event).items()}
            line = {
                "stream": record.stream,
                "received_at": record.received_at,
                "type": _type_name(type(record.event)),
                "fields": fields,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _load_jsonl(path: Path) -> Recording:
    with path.open(encoding="utf-8") as lines:
        header = json.loads(next(lines, "{}"))
        _check_header(header.get("format"), header.get("version"))
        records = []
        for text in lines:
            if not text.strip():
                continue
            line = json.loads(text)
            cls = _resolve_type(line["type"])
            values = {k: _untag(v) for k, v in line["fields"].items()}
            records.append(Record(line["stream"], int(line["received_at"]), _rebuild(cls, values)))
    return Recording(records, streams=header.get("streams", ()))


# --------------------------------------------------------------------------- replay


class Replay:
    """A recording emitted again, one hot observable per stream.

    Args:
        recording: what to replay.
        scheduler: where emissions are scheduled; default an ``AsyncIOScheduler`` on the
            running loop (created by ``start``).
        speed: how many times faster than recorded (real schedulers; ``float("inf")`` for as
            fast as possible).
        rebase: start the timeline at the scheduler's current time instead of the recorded
            times. Default: False on virtual-time schedulers (so sinks stamp the recorded
            times), True otherwise.
    """

    def __init__(
        self,
        recording: Recording,
        scheduler: SchedulerBase | None = None,
        *,
        speed: float = 1.0,
        rebase: bool | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.recording = recording
        self.speed = speed
        self._scheduler = scheduler
        self._rebase = rebase
        self._subjects: dict[str, Subject[Any]] = {name: Subject() for name in recording.streams}
        self._observables = {name: _read_only(subject) for name, subject in self._subjects.items()}
        self._next = 0
        self._origin = 0
        self._rebased = False
        self._started = False
        self._finished = False
        self._disposed = False
        self._task: DisposableBase | None = None
        self._done: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = "finished" if self._finished else "running" if self._started else "ready"
        return f"<Replay {len(self.recording):,} records, {self._next:,} emitted, {state}>"

    @property
    def streams(self) -> tuple[str, ...]:
        return self.recording.streams

    def stream(self, name: str) -> Observable[Any]:
        """The observable of one recorded stream."""
        try:
            return self._observables[name]
        except KeyError:
            raise KeyError(f"no stream {name!r} in this recording: {self.streams}") from None

    __getitem__ = stream

    def user(self, name: str) -> SimpleNamespace:
        """The streams recorded with ``Recorder.add_user(user, name)``, as attributes named like
        ``MIMCUser``'s (``.p2p_messages``...); streams not recorded never emit and complete
        with the replay."""
        prefix = f"{name}/"
        names = {s[len(prefix) :] for s in self.streams if s.startswith(prefix)}
        if not names:
            raise KeyError(f"no streams recorded for {name!r}")
        attributes: dict[str, Any] = {"app_account": name}
        for stream in (*USER_STREAMS, *sorted(names - set(USER_STREAMS))):
            if stream in names:
                attributes[stream] = self.stream(prefix + stream)
            else:
                attributes[stream] = self._silent()
        return SimpleNamespace(**attributes)

    def _silent(self) -> Observable[Any]:
        if self._finished:
            return reactivex.empty()
        subject: Subject[Any] = Subject()
        self._subjects[f"\0silent{len(self._subjects)}"] = subject
        return _read_only(subject)

    # -- running

    def start(self) -> DisposableBase:
        """Schedule the emissions; returns a disposable that stops the replay."""
        if self._started:
            raise RuntimeError("this replay was already started")
        self._started = True
        scheduler = self._scheduler
        if scheduler is None:
            from reactivex.scheduler.eventloop import AsyncIOScheduler

            scheduler = self._scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        try:
            self._done = asyncio.get_running_loop().create_future()
        except RuntimeError:
            self._done = None
        virtual = isinstance(scheduler, VirtualTimeScheduler)
        rebase = (not virtual) if self._rebase is None else self._rebase
        records = self.recording.records
        if rebase and records:
            self._origin = datetime_to_us(scheduler.now)
        self._rebased = rebase
        self._schedule(scheduler)
        return Disposable(self.dispose)

    async def run(self) -> None:
        """Start and wait until every event was emitted.

        On a virtual-time scheduler this also runs the scheduler (``scheduler.start()``).
        """
        self.start()
        scheduler = self._scheduler
        if isinstance(scheduler, VirtualTimeScheduler):
            scheduler.start()
        elif self._done is not None:
            await asyncio.shield(self._done)

    def dispose(self) -> None:
        """Stop emitting (subscribers see no completion)."""
        self._disposed = True
        if self._task is not None:
            self._task.dispose()

    @property
    def finished(self) -> bool:
        """True once every event was emitted and the streams completed."""
        return self._finished

    def _due(self, index: int) -> int:
        """When record ``index`` is due, in scheduler time (µs since the epoch)."""
        stamp = self.recording.records[index].received_at
        if not self._rebased:
            return stamp
        offset = stamp - self.recording.records[0].received_at
        return self._origin + (0 if self.speed == float("inf") else round(offset / self.speed))

    def _schedule(self, scheduler: SchedulerBase) -> None:
        if self._next >= len(self.recording.records):
            self._finish()
            return
        due = us_to_datetime(self._due(self._next))
        self._task = scheduler.schedule_absolute(due, self._emit_due)

    def _emit_due(self, scheduler: SchedulerBase, _state: Any = None) -> None:
        if self._disposed:
            return
        now = datetime_to_us(scheduler.now)
        records = self.recording.records
        first = True  # this action was scheduled for the next record: emit it even if a clock
        # rounded a microsecond down (float-second virtual clocks, timers firing early)
        while self._next < len(records) and (first or self._due(self._next) <= now):
            first = False
            record = records[self._next]
            self._next += 1
            self._subjects[record.stream].on_next(record.event)
            if self._disposed:
                return
        self._schedule(scheduler)

    def _finish(self) -> None:
        self._finished = True
        for subject in self._subjects.values():
            subject.on_completed()
        if self._done is not None and not self._done.done():
            self._done.get_loop().call_soon_threadsafe(_resolve, self._done)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _read_only(subject: Subject[Any]) -> Observable[Any]:
    def subscribe(observer: Any, scheduler: Any = None) -> DisposableBase:
        return subject.subscribe(observer, scheduler=scheduler)

    return reactivex.create(subscribe)
