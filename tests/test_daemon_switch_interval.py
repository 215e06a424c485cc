"""The daemon shortens the GIL switch interval while it runs (daemon.GIL_SWITCH_INTERVAL_S:
the store's writer thread would otherwise wait up to 5 ms per SQLite call for a busy event
loop) and gives the process its own value back when it stops."""

from __future__ import annotations

import sys
from pathlib import Path

from heliosd.runtime.daemon import GIL_SWITCH_INTERVAL_S
from heliosd.testing import SimHandle, start_daemon, write_config


async def test_switch_interval_while_running_and_restored(sim: SimHandle, short_dir: Path) -> None:
    before = sys.getswitchinterval()
    assert before > GIL_SWITCH_INTERVAL_S  # CPython's default is 5 ms
    running = await start_daemon(write_config(short_dir, sim))
    try:
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_S
    finally:
        await running.stop()
    assert sys.getswitchinterval() == before
