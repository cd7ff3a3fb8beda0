"""The frames' dtypes do not depend on the data, and the summary and comparison add up."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from mimc_rx.lab import LoadRun, LoadSpec, NetworkLab, RunFault, build_schedule
from mimc_rx.lab.frames import FAULT_COLUMNS, MESSAGE_COLUMNS
from mimc_rx.lab.schedule import Ledger, encode_payload


def _run(deliver: bool) -> LoadRun:
    spec = LoadSpec(users=4, rate=20, seconds=1, seed=1, label="t")
    records, groups = build_schedule(
        users=4, rate=20, seconds=1, mix=spec.mix, payload_bytes=spec.payload_bytes,
        rng=random.Random(1),
    )  # fmt: skip
    ledger = Ledger(b"abcdefgh", records)
    if deliver:
        for r in records:
            r.attempts, r.sent, r.acked = 1, r.scheduled + 0.001, r.scheduled + 0.002
            members = (
                [r.target] if r.kind == "p2p" else [m for m in groups[r.target] if m != r.sender]
            )
            for m in members:
                ledger.deliver(m, encode_payload(b"abcdefgh", r.seq, 0.0, 40), r.scheduled + 0.003)
    return LoadRun(
        spec=spec,
        run_id="abcdefgh",
        accounts=tuple(spec.accounts()),
        records=records,
        groups=groups,
        start_wall=0.0,
        schedule_end=1.0,
        end=1.1,
        faults=[RunFault(kind="pause", route="vu001", start=0.2, end=0.5, detail="0.3 s")],
        out_of_order=ledger.out_of_order,
    )


@pytest.mark.parametrize("deliver", [True, False], ids=["delivered", "nothing-happened"])
def test_message_frame_dtypes_are_fixed(deliver: bool) -> None:
    frame = _run(deliver).frame()
    assert list(frame.columns) == list(MESSAGE_COLUMNS)
    for col, dtype in MESSAGE_COLUMNS.items():
        assert str(frame[col].dtype) == dtype, col
    assert list(frame.kind.cat.categories) == ["p2p", "group"]
    assert list(frame.user.cat.categories) == ["vu000", "vu001", "vu002", "vu003"]
    if deliver:
        assert frame.latency_ms.to_numpy() == pytest.approx(3.0, abs=1e-6)
        assert (frame.outcome == "delivered").all()
    else:
        assert frame.latency_ms.isna().all()
        assert (frame.outcome == "unsent").all()


def test_empty_frames_keep_their_dtypes() -> None:
    run = _run(False)
    run.records = []
    run.fault_spans = []
    assert dict(run.frame().dtypes.astype(str)) == MESSAGE_COLUMNS
    assert dict(run.faults().dtypes.astype(str)) == FAULT_COLUMNS


def test_faults_frame_and_summary() -> None:
    run = _run(True)
    faults = run.faults()
    assert faults.to_dict("records") == [
        {"kind": "pause", "route": "vu001", "start": 0.2, "end": 0.5,
         "duration": pytest.approx(0.3), "detail": "0.3 s"}
    ]  # fmt: skip
    summary = run.summary()
    assert summary.loc[("all", "all"), "messages"] == 20
    assert summary.loc[("all", "all"), "delivered"] == 20
    by_kind = summary.xs("kind", level="by")["messages"].sum()
    by_user = summary.xs("user", level="by")["messages"].sum()
    assert by_kind == by_user == 20
    assert summary.loc[("all", "all"), "p50_ms"] == pytest.approx(3.0, rel=1e-3)
    assert "p99_9_ms" in summary.columns


def test_compare_puts_conditions_side_by_side() -> None:
    table = NetworkLab.compare({"a": _run(True), "b": _run(False)})
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "delivered"] == 20
    assert table.loc["b", "delivered"] == 0
    assert isinstance(table, pd.DataFrame)


def test_plots_draw_with_labels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    run = _run(True)
    ax = run.plot_latency()
    assert ax.get_xlabel()
    assert ax.get_ylabel()
    legend = ax.get_legend()
    assert legend is not None
    assert any("pause" in t.get_text() for t in legend.get_texts())
    assert run.plot_throughput().get_ylabel() == "messages per second"
    assert run.plot_cdf().get_xlabel().startswith("delivery latency")
