"""The network lab: shape each user's network, generate open-loop load, time it honestly.

* ``NetworkLab`` (:mod:`.lab`): a fault proxy in front of a server; users behind it; faults
  (delay, bandwidth, partition, cut, half-open, server restart, expired tokens) with their times.
* ``run_load``, ``Endpoint`` (:mod:`.load`), ``LoadSpec`` (:mod:`.spec`): the open-loop load
  generator with lightweight virtual users (:mod:`.vuser`) and a tqdm progress bar; also
  ``python -m mimc_rx load``.
* ``LoadRun`` (:mod:`.run`): what happened to each message; ``stats()``, ``summary()``,
  ``frame()``, ``faults()`` and plots (:mod:`.frames`, :mod:`.plots`, which read any
  ``RunResult``); ``RunFault``, ``RunStats`` (:mod:`.results`).
* ``LatencyHistogram``, ``exact_percentiles``, ``ClockOffset`` (:mod:`.timing`).

pandas, matplotlib, hdrhistogram and tqdm are imported when first used (the ``lab`` extra).
"""

from __future__ import annotations

from mimc_rx.lab.lab import LabError, NetworkLab
from mimc_rx.lab.load import Endpoint, HttpTokens, run_load
from mimc_rx.lab.results import RunFault, RunStats
from mimc_rx.lab.run import LoadRun
from mimc_rx.lab.schedule import MessageRecord, Outcome, build_schedule
from mimc_rx.lab.spec import LoadSpec
from mimc_rx.lab.timing import ClockOffset, LatencyHistogram, OffsetEstimate, exact_percentiles

__all__ = [
    "ClockOffset",
    "Endpoint",
    "HttpTokens",
    "LabError",
    "LatencyHistogram",
    "LoadRun",
    "LoadSpec",
    "MessageRecord",
    "NetworkLab",
    "OffsetEstimate",
    "Outcome",
    "RunFault",
    "RunStats",
    "build_schedule",
    "exact_percentiles",
    "run_load",
]
