"""Waiting in a test for what has nothing to await: counters, health states, flags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``condition()`` holds, checking every 5 ms; TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - plain counters and flags, no event to wait on
            await asyncio.sleep(0.005)
