"""Fixtures of the network-lab tests: an in-process server and a lab in front of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from mimc_rx.lab import NetworkLab
from mimc_rx.server import LocalServer

SCALE = float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Scales every real-time bound in these tests on slow machines."""


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer(db=":memory:") as srv:
        yield srv


@pytest.fixture
async def lab(server: LocalServer) -> AsyncIterator[NetworkLab]:
    lab = await NetworkLab.start(server, seed=7)
    try:
        yield lab
    finally:
        await lab.close()
