"""Waiting in tests: :func:`wait_for`, the one polling helper of the suite, and
:func:`eventually`; both keep the event loop running, so the daemon and simulator progress.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """Poll ``predicate`` (plain, or returning an awaitable) on the event loop until it is
    truthy, and return that value; AssertionError naming ``what`` and the last value after
    ``timeout``. The loop keeps running meanwhile, so the daemon and simulator progress.
    The one polling helper of the suite (no test file keeps its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """:func:`wait_for` with an async ``fn`` (kept for its callers)."""
    return await wait_for(fn, timeout, interval=0.05)
