"""Fixtures of the network-lab tests: an in-process server and a lab in front of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from mimc_rx import MIMCUser
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


async def back_online_with_a_new_token(user: MIMCUser, old: str) -> None:
    """Wait until ``user`` is logged in again with a token other than ``old`` (or fail)."""
    for _ in range(int(100 * SCALE)):
        await asyncio.sleep(0.05)
        if user.is_logged_in and user.token != old:
            return
    raise AssertionError(f"{user.app_account} is not back online with a new token")
