"""events_to_frame: exact frames for known events, stable dtypes, edge cases."""

from __future__ import annotations

import dataclasses
from array import array
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from mimc_rx.client.values import Disconnected, DisconnectReason, Reconnecting
from mimc_rx.frames import (
    SCHEMAS,
    describe_schema,
    empty_frame,
    events_to_frame,
    schema_dtypes,
)
from mimc_rx.protocol.events import (
    BadPacket,
    Kicked,
    P2PMessage,
    P2TMessage,
    PacketId,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)

T0_MS = 1_780_000_000_000  # 2026-05-28T...Z, a plausible server clock
T0_US = T0_MS * 1000


def utc(values_us: list[int]) -> pd.Series:
    """Expected datetime column, built independently of the code under test."""
    return pd.Series(pd.to_datetime(values_us, unit="us", utc=True)).astype("datetime64[us, UTC]")


def cat(values: list[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=pd.Index(list(dict.fromkeys(values)), dtype="str"))


def p2p(seq: int, sender: str, text: str | bytes, **kw: Any) -> P2PMessage:
    payload = text if isinstance(text, bytes) else text.encode()
    fields: dict[str, Any] = {
        "packet_id": PacketId(f"web{T0_MS + seq}{seq}"),
        "sequence": seq,
        "timestamp": T0_MS + seq,
        "from_account": sender,
        "from_resource": "resWeb",
        "to_account": "bob",
        "to_resource": "",
        "payload": payload,
    }
    fields.update(kw)
    return P2PMessage(**fields)


EXAMPLES: dict[type, Any] = {
    P2PMessage: p2p(1, "alice", "hi"),
    P2TMessage: P2TMessage(
        packet_id=PacketId("g1"),
        sequence=7,
        timestamp=T0_MS,
        from_account="a",
        from_resource="r",
        topic_id=42,
        payload=b"x",
    ),
    UCMessage: UCMessage(
        packet_id=PacketId("u1"),
        sequence=1,
        timestamp=T0_MS,
        from_account="a",
        from_resource="r",
        topic_id=43,
        payload=b"y",
    ),
    ServerAck: ServerAck(packet_id=PacketId("p"), sequence=3, timestamp=T0_MS),
    StatusChange: StatusChange(online=False, err_type="auth", err_reason="x", err_desc="y"),
    UCJoinResult: UCJoinResult(topic_id=5, code=0, message="success"),
    UCQuitResult: UCQuitResult(topic_id=5, code=1, message="no"),
    UCDismissed: UCDismissed(topic_id=5),
    PullNotification: PullNotification(min_sequence=10, max_sequence=20),
    Kicked: Kicked(err_type="kick", err_reason="newer", err_desc="login elsewhere"),
    ProtocolFailure: ProtocolFailure(reason="bad-checksum", detail="adler"),
    BadPacket: BadPacket(reason="bad-payload", packet_id=None, detail="junk"),
    Disconnected: Disconnected(reason=DisconnectReason.KICKED, detail="kick", code=None),
    Reconnecting: Reconnecting(attempt=2, delay=1.5),
}


def test_every_schema_has_an_example() -> None:
    assert set(EXAMPLES) == set(SCHEMAS)


def test_p2p_frame_equals_a_hand_built_frame() -> None:
    events = [
        p2p(1, "alice", "hello"),
        p2p(2, "carol", "smile 😀 end", biz_type="chat", is_store=False),
        p2p(3, "alice", b"\xff ok", to_resource="phone"),
    ]
    received = [T0_US + 1_500, T0_US + 2_250, T0_US + 9_000]
    frame = events_to_frame(events, received)
    expected = pd.DataFrame(
        {
            "received_at": utc(received),
            "timestamp": utc([(T0_MS + i) * 1000 for i in (1, 2, 3)]),
            "sequence": np.array([1, 2, 3], dtype="int64"),
            "packet_id": pd.Series([e.packet_id for e in events], dtype="str"),
            "from_account": cat(["alice", "carol", "alice"]),
            "from_resource": cat(["resWeb"] * 3),
            "to_account": cat(["bob"] * 3),
            "to_resource": cat(["", "", "phone"]),
            "biz_type": cat(["", "chat", ""]),
            "is_store": np.array([True, False, True]),
            "size": np.array([5, len("smile 😀 end".encode()), 4], dtype="int64"),
            "text": pd.Series(["hello", "smile 😀 end", "\ufffd ok"], dtype="str"),
        }
    )
    assert_frame_equal(frame, expected)


def test_group_and_uc_frames_show_topic_ids_as_decimal_strings() -> None:
    big = 2**64 - 1  # topic ids are uint64 on the wire
    events = [
        dataclasses.replace(EXAMPLES[P2TMessage], topic_id=9_000_000_000_001),
        dataclasses.replace(EXAMPLES[P2TMessage], topic_id=42),
        dataclasses.replace(EXAMPLES[P2TMessage], topic_id=9_000_000_000_001),
    ]
    frame = events_to_frame(events)
    assert frame["topic_id"].tolist() == ["9000000000001", "42", "9000000000001"]
    assert list(frame["topic_id"].cat.categories) == ["9000000000001", "42"]
    uc = events_to_frame([dataclasses.replace(EXAMPLES[UCMessage], topic_id=big)])
    assert uc["topic_id"].tolist() == [str(big)]
    assert str(uc["topic_id"].cat.categories.dtype) == "str"


def test_server_ack_frame() -> None:
    acks = [
        ServerAck(packet_id=PacketId("a"), sequence=10, timestamp=T0_MS),
        ServerAck(packet_id=PacketId("b"), sequence=0, timestamp=T0_MS + 5, err_msg="denied"),
    ]
    frame = events_to_frame(acks, [T0_US + 100, T0_US + 200])
    expected = pd.DataFrame(
        {
            "received_at": utc([T0_US + 100, T0_US + 200]),
            "timestamp": utc([T0_US, T0_US + 5000]),
            "sequence": np.array([10, 0], dtype="int64"),
            "packet_id": pd.Series(["a", "b"], dtype="str"),
            "ok": np.array([True, False]),
            "err_msg": pd.Series(["", "denied"], dtype="str"),
        }
    )
    assert_frame_equal(frame, expected)


@pytest.mark.parametrize("event_type", list(SCHEMAS), ids=lambda t: t.__name__)
def test_dtypes_are_stable_for_empty_and_filled_frames(event_type: type) -> None:
    declared = schema_dtypes(event_type)
    filled = events_to_frame([EXAMPLES[event_type]] * 3, [T0_US, T0_US + 1, T0_US + 2])
    empty = empty_frame(event_type)
    assert {c: str(t) for c, t in filled.dtypes.items()} == declared
    assert {c: str(t) for c, t in empty.dtypes.items()} == declared
    assert len(empty) == 0
    assert empty_frame(event_type).columns.equals(
        events_to_frame([], event_type=event_type).columns
    )
    assert list(describe_schema(event_type).index) == list(declared)


@pytest.mark.parametrize("event_type", list(SCHEMAS), ids=lambda t: t.__name__)
def test_every_column_holds_the_event_value(event_type: type) -> None:
    event = EXAMPLES[event_type]
    row = events_to_frame([event], [T0_US]).iloc[0]
    for column in SCHEMAS[event_type]:
        value = row[column.name]
        if column.kind == "time_ms":
            assert value == pd.Timestamp(getattr(event, column.attr), unit="ms", tz="UTC")
        elif column.kind == "id":
            assert value == str(getattr(event, column.attr))
        elif column.kind == "text":
            assert value == event.text
        elif column.kind == "size":
            assert value == len(event.payload)
        elif column.name == "ok":
            assert value == event.ok
        elif getattr(event, column.attr) is None:
            assert pd.isna(value)
        elif column.kind == "category":
            assert value == str(getattr(event, column.attr))
        else:
            assert value == getattr(event, column.attr)


def test_receive_times_accept_arrays_and_default_to_missing() -> None:
    events = [EXAMPLES[ServerAck]] * 2
    from_array = events_to_frame(events, array("q", [T0_US, T0_US + 7]))
    from_numpy = events_to_frame(events, np.array([T0_US, T0_US + 7]))
    assert_frame_equal(from_array, from_numpy)
    assert from_array["received_at"].iloc[1] == pd.Timestamp(T0_US + 7, unit="us", tz="UTC")
    missing = events_to_frame(events)
    assert missing["received_at"].isna().all()
    assert str(missing["received_at"].dtype) == "datetime64[us, UTC]"
    with pytest.raises(ValueError, match="3 receive times for 2 events"):
        events_to_frame(events, [1, 2, 3])


def test_source_and_payload_columns() -> None:
    events = [p2p(1, "alice", b"\x00\x01"), p2p(2, "alice", "x")]
    frame = events_to_frame(events, source="bob", payload=True)
    assert list(frame.columns[:2]) == ["received_at", "source"]
    assert frame["source"].tolist() == ["bob", "bob"]
    assert str(frame["source"].dtype) == "category"
    assert frame["payload"].tolist() == [b"\x00\x01", b"x"]
    assert "payload" not in events_to_frame(events).columns


def test_a_mixed_stream_keeps_order_and_uses_nullable_dtypes() -> None:
    events = [
        StatusChange(online=True),
        p2p(1, "alice", "hi"),
        EXAMPLES[ServerAck],
        p2p(2, "carol", "yo"),
    ]
    frame = events_to_frame(events, [1, 2, 3, 4])
    assert frame["event"].tolist() == ["StatusChange", "P2PMessage", "ServerAck", "P2PMessage"]
    assert frame["received_at"].tolist() == [
        pd.Timestamp(i, unit="us", tz="UTC") for i in (1, 2, 3, 4)
    ]
    assert str(frame["sequence"].dtype) == "Int64"
    assert frame["sequence"].tolist()[1:] == [1, 3, 2]
    assert pd.isna(frame["sequence"].iloc[0])
    assert str(frame["online"].dtype) == "boolean"
    assert str(frame["from_account"].dtype) == "category"
    assert frame["from_account"].tolist()[1::2] == ["alice", "carol"]
    assert str(frame["text"].dtype) == "str"


def test_other_dataclasses_and_plain_values() -> None:
    @dataclasses.dataclass(frozen=True)
    class Disconnected:
        reason: str
        attempt: int
        raw: bytes

    frame = events_to_frame([Disconnected("eof", 1, b"ab"), Disconnected("kick", 2, b"")])
    assert list(frame.columns) == ["received_at", "reason", "attempt", "raw_size"]
    assert str(frame["reason"].dtype) == "str"
    assert str(frame["attempt"].dtype) == "int64"
    assert frame["raw_size"].tolist() == [2, 0]
    values = events_to_frame([1, 2, 3], [5, 6, 7])
    assert values["value"].tolist() == [1, 2, 3]
    assert str(values["value"].dtype) == "int64"
    lists = events_to_frame([[1, 2], []])
    assert lists["value"].tolist() == [[1, 2], []]
    assert events_to_frame([]).columns.tolist() == ["received_at"]


def test_disconnects_have_a_nullable_close_code_and_reasons_as_text() -> None:
    events = [
        Disconnected(reason=DisconnectReason.CONNECTION_LOST, code=1006, will_reconnect=True),
        Disconnected(reason=DisconnectReason.LOGOUT),
    ]
    frame = events_to_frame(events, [1, 2])
    assert frame["reason"].tolist() == ["connection-lost", "logout"]
    assert str(frame["reason"].cat.categories.dtype) == "str"
    assert frame["code"].tolist()[0] == 1006
    assert pd.isna(frame["code"].iloc[1])
    assert frame["will_reconnect"].tolist() == [True, False]
