"""heliosd's pytest fixtures, opt-in: ``-p heliosd.testing.plugin`` on the command line or
``pytest_plugins = ["heliosd.testing.plugin"]`` in a project's root conftest.

Nothing is registered merely by installing heliosd (an entry point used to load this into
every pytest run of any project in the same environment, with fixture names that collide
and pytest-asyncio required). Every fixture is prefixed ``heliosd_`` and none is autouse;
heliosd's own suite aliases the short names in tests/conftest.py. Needs pytest and
pytest-asyncio (heliosd's ``dev`` extra); :mod:`heliosd.testing` itself needs neither.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from heliosd.core import clock
from heliosd.core.clock import ManualClock
from heliosd.testing import (
    SEED_ENV,
    DaemonProcess,
    NotifyReceiver,
    RunningDaemon,
    SimHandle,
    start_daemon,
    start_sim,
    write_config,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seed",
        type=int,
        default=None,
        help=f"seed of heliosd's randomized searches (also ${SEED_ENV}); printed on failure",
    )


@pytest_asyncio.fixture
async def heliosd_sim() -> AsyncIterator[SimHandle]:
    """The VALR simulator, prices moved only by tests (``sim.sim.set_price``), ZAR funded."""
    handle = await start_sim()
    try:
        yield handle
    finally:
        await handle.sim.stop()


@pytest.fixture
def heliosd_clock() -> Iterator[ManualClock]:
    """heliosd's wall clock held at the moment the test starts; the test moves it with
    ``advance(seconds)`` or ``set(when)`` and every module of the core sees the same time."""
    held = ManualClock()
    with clock.use(held):
        yield held


@pytest.fixture
def heliosd_short_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def heliosd_plugin_dir(heliosd_short_dir: Path) -> Path:
    """An empty drop-in plugin directory the daemon accepts (0755, owned by this user); put
    it in a config with ``write_config(..., daemon_extra=f'plugin_dirs = ["{plugin_dir}"]')``."""
    path = heliosd_short_dir / "plugins"
    path.mkdir()
    path.chmod(0o755)
    return path


@pytest_asyncio.fixture
async def heliosd_daemon(
    heliosd_sim: SimHandle, heliosd_short_dir: Path
) -> AsyncIterator[RunningDaemon]:
    """An in-process daemon on a real Unix socket, LIVE venue = the simulator."""
    running = await start_daemon(write_config(heliosd_short_dir, heliosd_sim))
    try:
        yield running
    finally:
        if not running.task.done():
            await running.stop()


@pytest.fixture
def heliosd_process(heliosd_short_dir: Path) -> Iterator[Any]:
    """A factory: ``heliosd_process(config_path)`` -> DaemonProcess (not yet started)."""
    made: list[DaemonProcess] = []

    def make(config: Path, socket: Path | None = None) -> DaemonProcess:
        proc = DaemonProcess(config, socket or (config.parent / "state" / "heliosd.sock"),
                             log_path=heliosd_short_dir / f"heliosd-{len(made)}.log")  # fmt: skip
        made.append(proc)
        return proc

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


@pytest_asyncio.fixture
async def heliosd_notify_receiver() -> AsyncIterator[NotifyReceiver]:
    """A started :class:`NotifyReceiver`; put ``notify_receiver.url(...)`` in the config."""
    async with NotifyReceiver() as receiver:
        yield receiver
