"""Shared fixtures for the adapter tests (frames, timing, replay)."""

from __future__ import annotations

import os

import pytest

#: Every real-time wait in the adapter tests derives from this, scaled for slow machines.
BASE_TIMEOUT = 5.0


@pytest.fixture
def wait_timeout() -> float:
    """Seconds a test may wait for something that should happen at once."""
    return BASE_TIMEOUT * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
