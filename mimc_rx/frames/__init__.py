"""pandas adapters: the client's streams as DataFrames.

* :func:`to_frame` (``await``) and :func:`collect` (virtual time) turn a stream into a frame;
* :class:`LiveFrame` keeps a bounded, always-current frame of a running stream and shows itself
  in a notebook;
* :func:`events_to_frame` builds a frame from a list of events, column by column;
* the schemas (columns and dtypes per event type) are documented in :mod:`mimc_rx.frames.schema`.

pandas and pyarrow (the ``frames`` extra) are imported on first use, so importing this package
costs little; ``import mimc_rx`` does not import it at all.
"""

from __future__ import annotations

from mimc_rx.frames.clock import Clock, scheduler_clock, wall_clock
from mimc_rx.frames.collect import FrameCollector, collect, to_frame
from mimc_rx.frames.live import LiveFrame
from mimc_rx.frames.schema import (
    SCHEMAS,
    describe_schema,
    empty_frame,
    events_to_frame,
    schema_dtypes,
    stream_event_type,
)

__all__ = [
    "SCHEMAS",
    "Clock",
    "FrameCollector",
    "LiveFrame",
    "collect",
    "describe_schema",
    "empty_frame",
    "events_to_frame",
    "scheduler_clock",
    "schema_dtypes",
    "stream_event_type",
    "to_frame",
    "wall_clock",
]
