"""Fixtures of the interleaving search: its seed, its world, and the seed on every failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from heliosd.testing import SimHandle, search_seed, start_sim

from .world import World

DEFAULT_SEED = 20261202  # CI runs this one sequence; --seed / HELIOSD_SEED explore others


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    value = search_seed(request.config, DEFAULT_SEED)
    request.node.user_properties.append(("seed", value))
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    seeds = [v for k, v in item.user_properties if k == "seed"]
    if report.failed and seeds:
        report.sections.append(
            ("interleaving seed", f"seed {seeds[-1]}: rerun with HELIOSD_SEED={seeds[-1]}")
        )


@pytest.fixture
def world_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hd-il-", dir="/tmp"))  # short: AF_UNIX paths
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture
async def world(world_dir: Path, seed: int) -> AsyncIterator[World]:
    handle: SimHandle = await start_sim(seed=seed)
    built: World | None = None
    try:
        built = await World.create(handle, world_dir, seed)
        yield built
    finally:
        if built is not None:
            await built.close()
        await handle.sim.stop()
