"""Columnar DataFrame schemas for the events of :mod:`mimc_rx.protocol.events`.

Theory of operation: a frame is built column by column. For each attribute an event type needs,
one list comprehension reads that attribute from every event (``[e.sequence for e in events]``,
the fastest way CPython reads a slot); each list then becomes one typed array (numpy, or pyarrow
for strings and payloads) and the arrays are handed to ``pandas.DataFrame`` without copies. No
per-row dict is ever made, so a million events take a fraction of a second
(``bench/frames_bench.py`` prints the figure).

Every frame starts with ``received_at``, the local time the event arrived (see
:mod:`mimc_rx.frames.clock`), then the columns of its event type. Dtypes are stable:

* times are ``datetime64[us, UTC]``: microseconds, timezone-aware UTC. The server's millisecond
  ``timestamp`` fits exactly, and local receive times keep the microseconds latency needs;
* sequences, codes and sizes are ``int64``; flags are ``bool``;
* accounts, resources, biz types, error kinds and topic ids are ``category`` over ``str``
  (topic ids as decimal strings, as the web SDK shows them, since they are uint64 on the wire);
  categories are listed in order of first appearance;
* packet ids, message text and free-form descriptions are ``str`` (pandas' string dtype);
* ``text`` is the payload decoded as UTF-8 (invalid bytes become U+FFFD) and ``size`` its length
  in bytes; the raw ``payload`` bytes are added (``object``) only when asked for.

Columns per event type (after ``received_at``; call :func:`describe_schema` for the meanings):

=================  ====================================================================
P2PMessage         timestamp, sequence, packet_id, from_account, from_resource,
                   to_account, to_resource, biz_type, is_store, size, text
P2TMessage         timestamp, sequence, packet_id, from_account, from_resource, topic_id,
UCMessage          biz_type, is_store, size, text
ServerAck          timestamp, sequence, packet_id, ok, err_msg
StatusChange       online, err_type, err_reason, err_desc
UCJoinResult       topic_id, code, ok, message
UCQuitResult       topic_id, code, ok, message
UCDismissed        topic_id
PullNotification   min_sequence, max_sequence
Kicked             err_type, err_reason, err_desc
ProtocolFailure    reason, detail
BadPacket          reason, packet_id, detail
Disconnected       reason, detail, code (nullable Int64), will_reconnect
Reconnecting       attempt, delay (float64 seconds)
=================  ====================================================================

Any other dataclass gets one column per field with inferred dtypes, dicts (as an operator
pipeline may emit) one column per key; any other value becomes a single ``value`` column. A
stream mixing several types gives one frame with an ``event`` column (the class name) and the
union of the columns, using nullable dtypes (``Int64``, ``boolean``) where a type lacks a column.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from mimc_rx.client import Disconnected, Reconnecting
from mimc_rx.protocol.events import (
    BadPacket,
    Kicked,
    P2PMessage,
    P2TMessage,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "SCHEMAS",
    "Column",
    "ColumnKind",
    "build_column",
    "describe_schema",
    "empty_frame",
    "events_to_frame",
    "schema_dtypes",
    "stream_event_type",
]

ColumnKind = Literal[
    "time_us",
    "time_ms",
    "int",
    "optional_int",
    "float",
    "bool",
    "category",
    "id",
    "str",
    "text",
    "size",
    "is_empty",
    "is_zero",
]
"""How a column is built: ``time_us``/``time_ms`` integer epoch times to ``datetime64[us, UTC]``;
``int`` to int64; ``optional_int`` to nullable Int64; ``float`` to float64; ``bool``;
``category`` of strings (enums by value); ``id`` integers shown as a category of
decimal strings; ``str`` (``None`` becomes missing); ``text`` payload bytes decoded as UTF-8;
``size`` payload length in bytes; ``is_empty`` / ``is_zero`` a bool telling whether a string
attribute is empty or an integer one is zero (the events' ``ok`` properties, computed on the
whole column instead of calling the property a million times)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a schema: its name, how to build it, the event attribute it reads."""

    name: str
    kind: ColumnKind
    attr: str
    doc: str


def _message_columns(*target: Column) -> tuple[Column, ...]:
    return (
        Column("timestamp", "time_ms", "timestamp", "server time of the message"),
        Column("sequence", "int", "sequence", "server-assigned sequence (docs/protocol.md 6.15)"),
        Column("packet_id", "str", "packet_id", "the sender's packet id"),
        Column("from_account", "category", "from_account", "sender account"),
        Column("from_resource", "category", "from_resource", "sender resource (device)"),
        *target,
        Column("biz_type", "category", "biz_type", "free-form message type"),
        Column("is_store", "bool", "is_store", "stored by the server for offline delivery"),
        Column("size", "size", "payload", "payload length in bytes"),
        Column("text", "text", "payload", "payload decoded as UTF-8"),
    )


_TOPIC = Column("topic_id", "id", "topic_id", "group id, as a decimal string")

SCHEMAS: Mapping[type, tuple[Column, ...]] = {
    P2PMessage: _message_columns(
        Column("to_account", "category", "to_account", "recipient account"),
        Column("to_resource", "category", "to_resource", "recipient resource, often empty"),
    ),
    P2TMessage: _message_columns(_TOPIC),
    UCMessage: _message_columns(_TOPIC),
    ServerAck: (
        Column("timestamp", "time_ms", "timestamp", "server time the packet was accepted"),
        Column("sequence", "int", "sequence", "sequence the server gave the packet"),
        Column("packet_id", "str", "packet_id", "id of the packet we sent"),
        Column("ok", "is_empty", "err_msg", "true when the server accepted the packet"),
        Column("err_msg", "str", "err_msg", "the server's error message, empty when ok"),
    ),
    StatusChange: (
        Column("online", "bool", "online", "true after a successful login"),
        Column("err_type", "category", "err_type", "error kind, empty when online"),
        Column("err_reason", "category", "err_reason", "error reason"),
        Column("err_desc", "str", "err_desc", "error description"),
    ),
    UCJoinResult: (
        _TOPIC,
        Column("code", "int", "code", "0 means joined"),
        Column("ok", "is_zero", "code", "true when joined"),
        Column("message", "str", "message", "the server's message"),
    ),
    UCQuitResult: (
        _TOPIC,
        Column("code", "int", "code", "0 means left"),
        Column("ok", "is_zero", "code", "true when left"),
        Column("message", "str", "message", "the server's message"),
    ),
    UCDismissed: (_TOPIC,),
    PullNotification: (
        Column("min_sequence", "int", "min_sequence", "first sequence of the backlog"),
        Column("max_sequence", "int", "max_sequence", "last sequence of the backlog"),
    ),
    Kicked: (
        Column("err_type", "category", "err_type", "why the server kicked us"),
        Column("err_reason", "category", "err_reason", "reason"),
        Column("err_desc", "str", "err_desc", "description"),
    ),
    ProtocolFailure: (
        Column("reason", "category", "reason", "short machine-friendly reason"),
        Column("detail", "str", "detail", "explanation"),
    ),
    BadPacket: (
        Column("reason", "category", "reason", "short machine-friendly reason"),
        Column("packet_id", "str", "packet_id", "id of the bad packet, missing if none"),
        Column("detail", "str", "detail", "explanation"),
    ),
    Disconnected: (
        Column("reason", "category", "reason", "why the connection ended (DisconnectReason)"),
        Column("detail", "str", "detail", "human explanation"),
        Column("code", "optional_int", "code", "websocket close code, missing if none"),
        Column("will_reconnect", "bool", "will_reconnect", "automatic reconnect will follow"),
    ),
    Reconnecting: (
        Column("attempt", "int", "attempt", "reconnect attempt number, from 1"),
        Column("delay", "float", "delay", "seconds until the attempt"),
    ),
}

_RECEIVED_AT = Column("received_at", "time_us", "", "local time the event arrived")
_STR: Final = "str"  # pandas 3's string dtype (pyarrow-backed, NaN for missing)
_TIME = "datetime64[us, UTC]"
_KIND_DTYPES: Mapping[ColumnKind, str] = {
    "time_us": _TIME,
    "time_ms": _TIME,
    "int": "int64",
    "optional_int": "Int64",
    "float": "float64",
    "bool": "bool",
    "category": "category",
    "id": "category",
    "str": _STR,
    "text": _STR,
    "size": "int64",
    "is_empty": "bool",
    "is_zero": "bool",
}


# --------------------------------------------------------------------------- extraction


@functools.cache
def _attribute_reader(attr: str) -> Callable[[Sequence[Any]], list[Any]]:
    """A function returning ``[e.<attr> for e in events]`` with a static attribute access.

    ``getattr(e, name)`` in a comprehension is about twice as slow as ``e.name``; the names come
    from our schemas or from ``dataclasses.fields``, never from data, so compiling the
    comprehension once per name is safe (the same trick ``collections.namedtuple`` uses).
    """
    if not attr.isidentifier():
        raise ValueError(f"not an attribute name: {attr!r}")
    code = f"lambda events: [e.{attr} for e in events]"
    reader: Callable[[Sequence[Any]], list[Any]] = eval(code, {})
    return reader


def _time_array(values: Any, scale: int) -> pd.Series:
    import numpy as np
    import pandas as pd

    ints = np.asarray(values, dtype=np.int64)
    if scale != 1:
        ints = ints * scale
    return pd.Series(pd.DatetimeIndex(ints.view("M8[us]"), tz="UTC"), copy=False)


def _categorical(values: list[Any], labels: Callable[[Any], str] | None = None) -> Any:
    """A categorical of ``values`` (categories in order of first appearance).

    ``labels`` turns each distinct value into its category string (``str`` for topic ids), so a
    million ids are converted only as often as there are distinct ones.
    """
    import numpy as np
    import pandas as pd

    n = len(values)
    if n and values.count(values[0]) == n:
        # One distinct value (a resource, an empty biz_type): no hashing at all. list.count
        # compares by identity first, so this costs about a millisecond per million.
        distinct: list[Any] = values[:1]
        codes = np.zeros(n, dtype=np.int8)
    else:
        # One pass in C: a missing key gets the next code from the counter (first appearance).
        code_of: defaultdict[Any, int] = defaultdict(itertools.count().__next__)
        codes = np.array(list(map(code_of.__getitem__, values)), dtype=np.int32)
        distinct = list(code_of)
    names = distinct if labels is None else [labels(value) for value in distinct]
    dtype = pd.CategoricalDtype(pd.Index(names, dtype=_STR))
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _arrow_strings(values: list[Any], cache: dict[str, Any]) -> Any:
    import pyarrow as pa

    if "string" not in cache:
        cache["string"] = pa.array(values, type=pa.string())
    return cache["string"]


def _strings(values: list[Any], cache: dict[str, Any] | None = None) -> pd.Series:
    import pandas as pd

    arrow = _arrow_strings(values, {} if cache is None else cache)
    return pd.Series(arrow, dtype=_STR, copy=False)


def _int64(values: list[Any], cache: dict[str, Any]) -> np.ndarray[Any, Any]:
    import numpy as np

    if "int" not in cache:
        cache["int"] = np.fromiter(values, dtype=np.int64, count=len(values))
    return cache["int"]  # type: ignore[no-any-return]


def _ids(values: list[Any]) -> Any:
    """Integer ids (topic ids) as a category of decimal strings."""
    import numpy as np
    import pandas as pd

    try:
        ints = np.asarray(values, dtype=np.int64)
    except OverflowError:  # a uint64 id over 2**63: the slower, exact path
        return _categorical(values, str)
    codes, uniques = pd.factorize(ints)
    names = pd.Index([str(value) for value in uniques.tolist()], dtype=_STR)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(names))


def _binary(payloads: list[bytes]) -> Any:
    import pyarrow as pa

    return pa.array(payloads, type=pa.binary())


def _texts(payloads: list[bytes], binary: Any) -> pd.Series:
    import pandas as pd
    import pyarrow as pa

    try:
        text = binary.cast(pa.string())  # validates UTF-8 in C: the common case
    except pa.ArrowInvalid:
        # docs/protocol.md 10.7: invalid bytes become U+FFFD, like P2PMessage.text.
        text = pa.array([p.decode("utf-8", errors="replace") for p in payloads], type=pa.string())
    return pd.Series(text, dtype=_STR, copy=False)


def _sizes(binary: Any) -> np.ndarray[Any, Any]:
    import pyarrow.compute as pc

    lengths: np.ndarray[Any, Any] = pc.binary_length(binary).to_numpy(zero_copy_only=False)
    return lengths.astype("int64", copy=False)


def build_column(kind: ColumnKind, values: list[Any], cache: dict[str, Any] | None = None) -> Any:
    """One column from the attribute values.

    ``cache`` shares intermediate arrays between the columns of one attribute: the payload's
    pyarrow array feeds both ``size`` and ``text``, ``err_msg`` feeds ``ok``.
    """
    import pyarrow.compute as pc

    if cache is None:
        cache = {}
    if kind == "time_ms":
        return _time_array(values, 1000)
    if kind == "time_us":
        return _time_array(values, 1)
    if kind == "int":
        return _int64(values, cache)
    if kind == "optional_int":
        import pandas as pd

        return pd.array(values, dtype="Int64")
    if kind == "float":
        import numpy as np

        return np.asarray(values, dtype=np.float64)
    if kind == "is_zero":
        return _int64(values, cache) == 0
    if kind == "bool":
        import numpy as np

        return np.fromiter(values, dtype=np.bool_, count=len(values))
    if kind == "category":
        return _categorical(values, str)
    if kind == "id":
        return _ids(values)
    if kind == "str":
        return _strings(values, cache)
    if kind == "is_empty":
        return pc.equal(_arrow_strings(values, cache), "").to_numpy(zero_copy_only=False)
    if kind in ("text", "size"):
        if "binary" not in cache:
            cache["binary"] = _binary(values)
        if kind == "text":
            return _texts(values, cache["binary"])
        return _sizes(cache["binary"])
    raise AssertionError(kind)  # pragma: no cover


# --------------------------------------------------------------------------- frames


def _received_column(received_at: Any, n: int) -> Any:
    import pandas as pd

    if received_at is None:
        return pd.Series(pd.NaT, index=range(n), dtype=_TIME)
    if len(received_at) != n:
        raise ValueError(f"{len(received_at)} receive times for {n} events")
    return _time_array(received_at, 1)


def _typed_frame(
    events: Sequence[Any], event_type: type, received_at: Any, payload: bool
) -> pd.DataFrame:
    import pandas as pd

    columns = SCHEMAS[event_type]
    values: dict[str, list[Any]] = {}
    caches: dict[str, dict[str, Any]] = {}
    data: dict[str, Any] = {"received_at": _received_column(received_at, len(events))}
    for column in columns:
        if column.attr not in values:
            values[column.attr] = _attribute_reader(column.attr)(events)
            caches[column.attr] = {}
        data[column.name] = build_column(column.kind, values[column.attr], caches[column.attr])
    if payload and "payload" in values:
        data["payload"] = pd.Series(values["payload"], dtype=object)
    return pd.DataFrame(data, copy=False)


def _generic_frame(
    events: Sequence[Any], event_type: type, received_at: Any, payload: bool
) -> pd.DataFrame:
    import pandas as pd

    data: dict[str, Any] = {"received_at": _received_column(received_at, len(events))}
    if dataclasses.is_dataclass(event_type):
        names = [field.name for field in dataclasses.fields(event_type)]
    else:
        names = []
    if not names and all(isinstance(event, Mapping) for event in events):
        # Dicts made by an operator pipeline (``ops.map(lambda m: {...})``): one column per key.
        table = pd.DataFrame.from_records(list(events))
        for key in table.columns:
            data[str(key)] = _values(table[key].tolist())
        return pd.DataFrame(data, copy=False)
    if not names:
        data["value"] = _values(list(events))
        return pd.DataFrame(data, copy=False)
    for name in names:
        column = _attribute_reader(name)(events)
        if column and all(isinstance(v, bytes) for v in column):
            if payload:
                data[name] = pd.Series(column, dtype=object)
            data[f"{name}_size"] = _sizes(_binary(column))
        else:
            data[name] = _values(column)
    return pd.DataFrame(data, copy=False)


def _values(values: list[Any]) -> pd.Series:
    """A column of arbitrary values: strings as ``str``, numbers as numpy, the rest ``object``."""
    import pandas as pd

    if values and all(isinstance(v, str) for v in values):
        return _strings(values)
    return pd.Series(values, dtype=object).infer_objects()


def _frame_of_type(
    events: Sequence[Any], event_type: type, received_at: Any, payload: bool
) -> pd.DataFrame:
    if event_type in SCHEMAS:
        return _typed_frame(events, event_type, received_at, payload)
    return _generic_frame(events, event_type, received_at, payload)


def stream_event_type(source: object) -> type | None:
    """The event type a stream says it carries (the user's streams do), else None.

    Used for the columns of a frame before the first event: an empty ``p2p_messages`` frame
    has every ``P2PMessage`` column, not just ``received_at``.
    """
    event_type = getattr(source, "event_type", None)
    return event_type if isinstance(event_type, type) else None


def empty_frame(event_type: type, *, payload: bool = False) -> pd.DataFrame:
    """A zero-row frame with the columns and dtypes ``event_type``'s events would get."""
    return _frame_of_type([], event_type, [], payload)


def events_to_frame(
    events: Sequence[Any],
    received_at: Sequence[int] | np.ndarray[Any, Any] | None = None,
    *,
    event_type: type | None = None,
    source: str | None = None,
    payload: bool = False,
) -> pd.DataFrame:
    """Build a DataFrame from events, column by column.

    Args:
        events: the events, oldest first (any sequence; a list is fastest).
        received_at: the local receive time of each event in microseconds since the epoch
            (list, ``array('q')`` or numpy array); ``None`` leaves the column missing (NaT).
        event_type: the schema to use when ``events`` may be empty; by default the type of the
            events themselves.
        source: when given, a constant ``source`` category column naming the client or stream
            the events came from (handy before concatenating several frames).
        payload: also keep the raw payload bytes in an ``object`` column.

    Returns:
        One row per event, in the given order, with the schema of the module docstring.
    """
    import numpy as np
    import pandas as pd

    types = dict.fromkeys(map(type, events))
    if not types:
        frame = empty_frame(event_type, payload=payload) if event_type else _empty_untyped()
    elif len(types) == 1:
        frame = _frame_of_type(events, next(iter(types)), received_at, payload)
    else:
        frame = _mixed_frame(events, list(types), received_at, payload)
    if source is not None:
        codes = np.zeros(len(frame), dtype=np.int8)
        label = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype([source]))
        frame.insert(1, "source", pd.Series(label, index=frame.index))
    return frame


def _empty_untyped() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"received_at": pd.Series([], dtype=_TIME)})


def _mixed_frame(
    events: Sequence[Any], types: list[type], received_at: Any, payload: bool
) -> pd.DataFrame:
    """One frame for a stream of several event types: per-type frames merged in order."""
    import numpy as np
    import pandas as pd

    kind = np.fromiter(map(types.index, map(type, events)), dtype=np.int32, count=len(events))
    stamps = None if received_at is None else np.asarray(received_at, dtype=np.int64)
    parts = []
    categorical: set[str] = set()
    for number, event_type in enumerate(types):
        positions = np.flatnonzero(kind == number)
        subset = [events[i] for i in positions.tolist()]
        part = _frame_of_type(
            subset, event_type, None if stamps is None else stamps[positions], payload
        )
        part.index = positions
        part.insert(1, "event", event_type.__name__)
        categorical.update(
            c for c in part.columns if isinstance(part[c].dtype, pd.CategoricalDtype)
        )
        parts.append(_nullable(part))
    frame = pd.concat(parts).sort_index()
    frame["event"] = pd.Categorical(frame["event"], categories=[t.__name__ for t in types])
    for name in categorical:
        frame[name] = frame[name].astype(_STR).astype("category")
    return frame.reset_index(drop=True)


def _nullable(frame: pd.DataFrame) -> pd.DataFrame:
    """Dtypes that survive a concat with missing values: Int64, boolean, str for categories."""
    replace: dict[str, Any] = {"int64": "Int64", "bool": "boolean"}
    for name in frame.columns:
        dtype = str(frame[name].dtype)
        if dtype in replace:
            frame[name] = frame[name].astype(replace[dtype])
        elif dtype == "category":
            frame[name] = frame[name].astype(_STR)
    return frame


def schema_dtypes(event_type: type) -> dict[str, str]:
    """Column name to dtype name for ``event_type``, ``received_at`` first (for docs and tests)."""
    columns = (_RECEIVED_AT, *SCHEMAS[event_type])
    return {column.name: _KIND_DTYPES[column.kind] for column in columns}


def describe_schema(event_type: type) -> pd.DataFrame:
    """A small table of the columns of ``event_type``'s frames: name, dtype and meaning."""
    import pandas as pd

    columns = (_RECEIVED_AT, *SCHEMAS[event_type])
    return pd.DataFrame(
        {
            "column": [c.name for c in columns],
            "dtype": [_KIND_DTYPES[c.kind] for c in columns],
            "meaning": [c.doc for c in columns],
        }
    ).set_index("column")
