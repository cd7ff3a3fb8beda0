"""Timing: the send ledger, latency joins, percentiles, throughput, loss and sequence reports."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import matplotlib
import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from mimc_rx.frames import events_to_frame
from mimc_rx.frames.timing import (
    SendLedger,
    Sent,
    end_to_end_latency,
    latency_summary,
    loss_report,
    omb_metrics,
    plot_latency_cdf,
    plot_latency_histogram,
    plot_latency_over_time,
    plot_throughput,
    publish_latency,
    sequence_report,
    throughput,
)
from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck

matplotlib.use("Agg")

T0 = 1_780_000_000_000_000  # microseconds since the epoch


def at(us: int) -> pd.Timestamp:
    return pd.Timestamp(T0 + us, unit="us", tz="UTC")


def cat(values: list[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=pd.Index(values, dtype="str"))


class FakeUser:
    """The two send methods of MIMCUser, with predictable packet ids."""

    def __init__(self, account: str, ids: Iterator[int]) -> None:
        self.app_account = account
        self._ids = ids
        self.calls: list[tuple[object, ...]] = []

    def send_message(
        self, to_account: str, payload: str | bytes, *, is_store: bool = True, biz_type: str = ""
    ) -> PacketId:
        if to_account == "nobody":
            raise ValueError("refused")
        self.calls.append(("p2p", to_account, payload, is_store, biz_type))
        return PacketId(f"web{next(self._ids)}")

    def send_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        self.calls.append(("p2t", topic_id, payload, is_store, biz_type))
        return PacketId(f"web{next(self._ids)}")


@pytest.fixture
def ticking() -> Iterator[int]:
    return (T0 + 1000 * i for i in count())  # 0 ms, 1 ms, 2 ms ... on each read


def test_the_ledger_records_sends_through_the_client(ticking: Iterator[int]) -> None:
    ledger = SendLedger(clock=lambda: next(ticking))
    published: list[Sent] = []
    ledger.sent.subscribe(published.append)
    alice = FakeUser("alice", count(1))
    carol = FakeUser("carol", count(1))  # same ids as alice's: joins must use the sender too
    assert ledger.send_message(alice, "bob", "héllo", biz_type="x") == "web1"
    assert ledger.send_group_message(carol, 42, b"\x00\x01\x02", is_store=False) == "web1"
    with pytest.raises(ValueError, match="refused"):
        ledger.send_message(alice, "nobody", "lost")
    assert alice.calls == [("p2p", "bob", "héllo", True, "x")]
    assert carol.calls == [("p2t", 42, b"\x00\x01\x02", False, "")]
    assert len(ledger) == 2
    assert published == ledger.records
    expected = pd.DataFrame(
        {
            "packet_id": pd.Series(["web1", "web1"], dtype="str"),
            "kind": pd.Categorical(
                ["p2p", "p2t"], categories=pd.Index(["p2p", "p2t"], dtype="str")
            ),
            "sender": pd.Categorical(
                ["alice", "carol"], categories=pd.Index(["alice", "carol"], dtype="str")
            ),
            "target": pd.Categorical(
                ["bob", "42"], categories=pd.Index(["bob", "42"], dtype="str")
            ),
            "size": np.array([6, 3], dtype="int64"),
            "sent_at": pd.Series([at(0), at(1000)]).astype("datetime64[us, UTC]"),
        }
    )
    assert_frame_equal(ledger.frame(), expected)
    copy = SendLedger.from_records(ledger.records)
    assert_frame_equal(copy.frame(), expected)
    assert len(SendLedger().frame()) == 0
    assert str(SendLedger().frame()["sent_at"].dtype) == "datetime64[us, UTC]"


def make_sent() -> pd.DataFrame:
    ledger = SendLedger()
    ledger.record("web1", kind="p2p", sender="alice", target="bob", size=5, sent_at=T0)
    ledger.record("web2", kind="p2p", sender="alice", target="bob", size=5, sent_at=T0 + 10_000)
    ledger.record("web1", kind="p2t", sender="carol", target=42, size=9, sent_at=T0 + 20_000)
    return ledger.frame()


def ack(pid: str, seq: int) -> ServerAck:
    return ServerAck(packet_id=PacketId(pid), sequence=seq, timestamp=T0 // 1000)


def test_publish_latency_joins_on_sender_and_packet_id() -> None:
    alice_acks = events_to_frame(
        [ack("web1", 11), ack("web1", 11)], [T0 + 1_500, T0 + 9_000], source="alice"
    )
    carol_acks = events_to_frame([ack("web1", 77)], [T0 + 20_250], source="carol")
    table = publish_latency(make_sent(), pd.concat([alice_acks, carol_acks]))
    assert table["packet_id"].tolist() == ["web1", "web2", "web1"]
    assert table["sender"].tolist() == ["alice", "alice", "carol"]
    assert_series_equal(
        table["publish_latency_ms"],
        pd.Series([1.5, np.nan, 0.25], name="publish_latency_ms"),
    )
    assert table["sequence"].tolist()[0::2] == [11, 77]
    assert pd.isna(table["sequence"].iloc[1])
    assert str(table["sequence"].dtype) == "Int64"
    assert str(table["acked_at"].dtype) == "datetime64[us, UTC]"
    # Without a source column the join falls back to the packet id alone.
    only_ids = publish_latency(make_sent(), events_to_frame([ack("web2", 3)], [T0 + 12_000]))
    assert only_ids["publish_latency_ms"].tolist()[1] == 2.0


def deliveries() -> pd.DataFrame:
    def p2p(pid: str, seq: int) -> P2PMessage:
        return P2PMessage(
            packet_id=PacketId(pid),
            sequence=seq,
            timestamp=T0 // 1000,
            from_account="alice",
            from_resource="r",
            to_account="bob",
            to_resource="",
            payload=b"hello",
        )

    def p2t(pid: str, seq: int) -> P2TMessage:
        return P2TMessage(
            packet_id=PacketId(pid),
            sequence=seq,
            timestamp=T0 // 1000,
            from_account="carol",
            from_resource="r",
            topic_id=42,
            payload=b"group msg",
        )

    bob = events_to_frame([p2p("web1", 1), p2p("web2", 2)], [T0 + 2_000, T0 + 13_000], source="bob")
    bob_group = events_to_frame([p2t("web1", 3)], [T0 + 21_000], source="bob")
    dave_group = events_to_frame([p2t("web1", 1)], [T0 + 23_500], source="dave")
    return pd.concat([bob, bob_group, dave_group], ignore_index=True)


def test_end_to_end_latency_gives_one_row_per_delivery() -> None:
    table = end_to_end_latency(make_sent(), deliveries())
    table = table.sort_values(["sender", "receiver"]).reset_index(drop=True)
    assert table[["sender", "packet_id", "receiver"]].astype(str).values.tolist() == [
        ["alice", "web1", "bob"],
        ["alice", "web2", "bob"],
        ["carol", "web1", "bob"],
        ["carol", "web1", "dave"],
    ]
    assert table["end_to_end_latency_ms"].tolist() == [2.0, 3.0, 1.0, 3.5]
    assert str(table["receiver"].dtype) == "category"
    # Without source, the receiver of a P2P message is its to_account.
    plain = deliveries().drop(columns="source").iloc[:2]
    assert end_to_end_latency(make_sent(), plain)["receiver"].tolist() == ["bob", "bob"]


def test_latency_summary_percentiles_are_exact_on_known_values() -> None:
    publish = pd.DataFrame({"publish_latency_ms": np.arange(1, 1001, dtype="float64")})
    e2e = pd.Series([2.0, np.nan, 4.0], name="end_to_end_latency_ms")
    summary = latency_summary(publish, e2e)
    expected = pd.DataFrame(
        {
            "count": [1000, 2],
            "avg": [500.5, 3.0],
            "p50": [500.5, 3.0],
            "p90": [900.1, 3.8],
            "p99": [990.01, 3.98],
            "p99.9": [999.001, 3.998],
            "max": [1000.0, 4.0],
        },
        index=pd.Index(["publish latency", "end-to-end latency"], name="latency (ms)"),
    )
    assert_frame_equal(summary, expected)
    metrics = omb_metrics(summary)
    assert metrics["aggregatedPublishLatency50pct"] == 500.5
    assert metrics["aggregatedPublishLatency999pct"] == pytest.approx(999.001)
    assert metrics["aggregatedEndToEndLatencyMax"] == 4.0
    assert len(metrics) == 12
    assert list(latency_summary(end_to_end=e2e).index) == ["end-to-end latency"]
    with pytest.raises(ValueError, match="one \\*_latency_ms column"):
        latency_summary(pd.DataFrame({"x": [1.0]}))


def test_throughput_counts_every_period_including_empty_ones() -> None:
    ledger = SendLedger()
    for us, size in ((0, 10), (200_000, 20), (2_100_000, 5)):
        ledger.record(f"p{us}", kind="p2p", sender="a", target="b", size=size, sent_at=T0 + us)
    rates = throughput(ledger.frame())
    assert rates["messages"].tolist() == [2, 0, 1]
    assert rates["bytes"].tolist() == [30, 0, 5]
    assert rates["messages_per_s"].tolist() == [2.0, 0.0, 1.0]
    assert rates["mb_per_s"].tolist() == [30e-6, 0.0, 5e-6]
    assert rates.index[0] == at(0)
    halves = throughput(ledger.frame(), freq="500ms", size_column=None)
    assert halves["messages_per_s"].tolist()[:2] == [4.0, 0.0]
    assert "bytes" not in halves.columns
    assert len(throughput(SendLedger().frame())) == 0
    with pytest.raises(ValueError, match="no sent_at"):
        throughput(pd.DataFrame({"x": [1]}))


def test_loss_report_finds_lost_duplicated_and_unexpected_messages() -> None:
    sent = make_sent()
    bob_should_get = sent[(sent["kind"] == "p2p") & (sent["target"] == "bob")]
    received = deliveries()
    bob = received[(received["source"] == "bob") & received["to_account"].notna()]
    assert len(loss_report(bob_should_get, bob)) == 0  # all is well
    first_only = bob.iloc[:1]
    twice = pd.concat([bob, bob.iloc[:1]])
    stranger = received[received["source"] == "dave"]
    report = loss_report(bob_should_get, pd.concat([first_only, first_only, stranger]))
    assert report.astype({"problem": "str"}).values.tolist() == [
        ["alice", "web2", "lost", 0],
        ["alice", "web1", "duplicate", 2],
        ["carol", "web1", "unexpected", 1],
    ]
    assert loss_report(bob_should_get, twice)["problem"].tolist() == ["duplicate"]


def test_sequence_report_lists_duplicates_reorderings_and_gaps() -> None:
    frame = pd.DataFrame(
        {
            "source": ["bob"] * 6 + ["dave"] * 3,
            "sequence": [1, 2, 2, 5, 3, 6, 10, 11, 12],
        }
    )
    report = sequence_report(frame, by="source", contiguous=True)
    assert report.astype({"problem": "str"}).values.tolist() == [
        ["bob", "duplicate", 2, 2, 2],
        ["bob", "out_of_order", 3, 3, 1],
        ["bob", "gap", 4, 4, 1],
    ]
    assert sequence_report(frame, by="source").shape[0] == 2  # no gaps unless contiguous
    # Rows are taken in arrival order when receive times are there (frames concatenated
    # per stream are not).
    by_stream = pd.DataFrame({"sequence": [1, 3, 2], "received_at": [at(1), at(3), at(2)]})
    assert len(sequence_report(by_stream)) == 0
    clean = sequence_report(pd.DataFrame({"sequence": [5, 90, 1000]}))
    assert len(clean) == 0
    assert list(clean.columns) == ["problem", "first", "last", "count"]


def test_plots_draw_every_kind_given() -> None:
    pub = publish_latency(
        make_sent(), events_to_frame([ack("web1", 1)], [T0 + 1_500], source="alice")
    )
    e2e = end_to_end_latency(make_sent(), deliveries())
    ax = plot_latency_histogram(pub, e2e, bins=5, clip=None)
    assert ax.get_xlabel() == "latency (ms)"
    assert max(p.get_x() + p.get_width() for p in ax.patches) == pytest.approx(3.5)
    ax = plot_latency_histogram(end_to_end=e2e, bins=4, clip=50)
    assert ax.get_xlabel() == "latency (ms) (up to p50: 2.5 ms)"
    ax = plot_latency_histogram(pub, e2e, bins=5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "publish latency",
        "end-to-end latency",
    ]
    ax = plot_latency_cdf(end_to_end=e2e)
    assert ax.get_xscale() == "log"
    assert ax.get_lines()[0].get_ydata()[-1] == 100.0
    ax = plot_latency_over_time(pub, e2e)
    assert len(ax.get_lines()) == 4  # dots and rolling median per kind
    ax = plot_throughput(make_sent(), e2e, freq="2ms")
    sent_line, delivered_line = ax.get_lines()
    # Sends count at their send time (from T0), deliveries when they arrived (from T0 + 2 ms).
    assert sent_line.get_xdata()[0] == np.datetime64(T0, "us")
    assert delivered_line.get_xdata()[0] == np.datetime64(T0 + 2_000, "us")
    with pytest.raises(ValueError, match="give publish="):
        plot_latency_histogram()
    with pytest.raises(ValueError, match="needs a publish_latency_ms column"):
        plot_latency_cdf(publish=e2e)
    import matplotlib.pyplot as plt

    plt.close("all")
