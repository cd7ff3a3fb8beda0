"""How the frame adapters behave for a notebook user: schemas before data, progress,
missing extras, the view's width, and histogram bins that suit the data."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from reactivex.subject import Subject

from mimc_rx._extras import MissingExtra
from mimc_rx.client.streams import UserStreams
from mimc_rx.frames import LiveFrame, schema_dtypes, to_frame
from mimc_rx.frames.collect import Progress
from mimc_rx.frames.plots import plot_latency_histogram
from mimc_rx.protocol.events import P2PMessage, PacketId, ServerAck


def message(seq: int) -> P2PMessage:
    return P2PMessage(
        packet_id=PacketId(f"p{seq}"),
        sequence=seq,
        timestamp=seq,
        from_account="alice",
        from_resource="r",
        to_account="bob",
        to_resource="",
        payload=b"hi",
    )


def test_an_empty_live_frame_of_a_user_stream_has_its_full_schema() -> None:
    streams = UserStreams()
    live = LiveFrame(streams.p2p_messages.observable)
    assert dict(live.frame.dtypes.astype(str)) == schema_dtypes(P2PMessage)
    acks = LiveFrame(streams.server_acks.observable)
    assert list(acks.frame.columns) == list(schema_dtypes(ServerAck))


def test_the_view_shows_a_few_columns_in_a_scrolling_box() -> None:
    subject: Subject[P2PMessage] = Subject()
    live = LiveFrame(subject, name="bob")
    subject.on_next(message(1))
    page = live._repr_html_()
    assert "overflow:auto" in page
    assert "from_resource" not in page  # not one of the compact columns
    assert "7 more columns in .frame" in page
    everything = LiveFrame(subject, columns="all")
    subject.on_next(message(2))
    assert "from_resource" in everything._repr_html_()
    assert "from_resource" in live.frame.columns  # the frame keeps every column


async def test_to_frame_of_a_user_stream_is_typed_even_when_empty() -> None:
    streams = UserStreams()
    frame = await to_frame(streams.p2p_messages.observable, timeout=0.01)
    assert list(frame.columns) == list(schema_dtypes(P2PMessage))


async def test_to_frame_without_a_bound_on_a_user_stream_warns() -> None:
    streams = UserStreams()
    with pytest.warns(RuntimeWarning, match="count= or timeout="):
        pending = to_frame(streams.p2p_messages.observable, progress=False)
    pending.cancel()


async def test_a_long_wait_shows_progress_and_an_interruption_says_how_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules["mimc_rx.frames.collect"], "PROGRESS_AFTER", 0.01)
    lines: list[str] = []
    subject: Subject[P2PMessage] = Subject()
    pending = to_frame(subject, count=10, progress=Progress(lines.append))
    subject.on_next(message(1))
    await asyncio.sleep(0.05)
    assert lines
    assert lines[-1].startswith("to_frame: 1 / 10 events after")
    assert "(no timeout)" in lines[-1]
    pending.cancel()
    await asyncio.sleep(0)
    assert lines[-1].endswith(", interrupted")


async def test_a_short_wait_shows_no_progress() -> None:
    lines: list[str] = []
    subject: Subject[P2PMessage] = Subject()
    pending = to_frame(subject, count=1, timeout=5, progress=Progress(lines.append))
    subject.on_next(message(1))
    assert len(await pending) == 1
    assert lines == []


@pytest.mark.parametrize("module", ["numpy", "pandas", "pyarrow"])
async def test_to_frame_without_the_frames_extra_fails_at_once(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra, match=r'pip install "mimc-rx\[frames\]"'):
        to_frame(Subject(), count=1, timeout=1)
    with pytest.raises(ImportError, match=module):  # MissingExtra is an ImportError too
        LiveFrame(Subject())


def latencies(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"publish_latency_ms": values})


def test_the_histogram_picks_log_bins_for_an_outage() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(1)
    bulk = list(rng.normal(2.0, 0.3, 500).clip(0.5))
    ax = plot_latency_histogram(latencies([*bulk, 4000.0, 4200.0]))
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel().endswith("(log bins)")
    assert ax.get_ylabel() == "messages"
    filled = [p for p in ax.patches if p.get_height() > 0]
    assert len(filled) >= 5  # the bulk spreads over several bars, not one
    calm = plot_latency_histogram(latencies(bulk))
    assert calm.get_xscale() == "linear"
    assert "up to p99" in calm.get_xlabel()


def test_forced_scales(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    data: Any = latencies([1.0, 2.0, 3.0])
    assert plot_latency_histogram(data, scale="log").get_xscale() == "log"
    assert plot_latency_histogram(data, scale="linear", clip=None).get_xlabel() == "latency (ms)"
