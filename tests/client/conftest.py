"""Shared fixtures and the one timeout constant of the client tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from .fakes import FakeNet

TIMEOUT = 5.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Seconds any single wait in these tests may take; scale with MIMC_TEST_TIMEOUT_SCALE."""


@pytest.fixture
def net() -> FakeNet:
    return FakeNet()


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Let the loop run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.001)
