"""Delivery under faults, end to end (issue 10): 2,000 stored numbered messages from a sender
``MIMCUser`` to a receiver ``MIMCUser`` through a fault proxy (10 cuts, RST and half-open) and a
server killed with SIGKILL and restarted once. Nothing lost, nothing duplicated at the receiver's
``p2p_messages``, every send acked exactly once on ``server_acks``; the application never sends
a message twice (the outbox does). The scenario is ``mimc_rx.testing.durability``;
``bench/durability.py`` runs it at full size.
"""

from __future__ import annotations

import os
from pathlib import Path

from mimc_rx.testing.durability import DurabilityPlan, main_summary, run_durability

SCALE = float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))


async def test_2000_messages_10_cuts_1_kill_arrive_once_and_are_acked_once(
    tmp_path: Path,
) -> None:
    plan = DurabilityPlan(messages=2000, cuts=10, kills=1, rate=200.0, settle_timeout=20 * SCALE)
    result = await run_durability(tmp_path / "chat.db", plan)
    summary = main_summary(result)
    assert result.sent == 2000, summary
    assert (result.lost, result.duplicated) == (0, 0), summary
    assert (result.unacked, result.acked_twice) == (0, 0), summary
    assert result.tracebacks == [], summary
    # The faults happened: both users lost their connection at every cut and at the kill.
    assert result.sender_disconnects >= 11, summary
    assert result.receiver_disconnects >= 11, summary
