"""Review findings on the unclean-exit halt (issue 12): real ``heliosd run`` processes, the
simulator, real SQLite and a real ``kill -9``. Each an xfail(strict) that flips when fixed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import SimHandle, go_live, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

NOTIFY = "json://127.0.0.1:9/unused"


async def test_a_live_store_without_a_run_marker_comes_up_halted(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    await proc.akill9()
    # What the previous release leaves: the same store, no daemon_state 'run' row (it never
    # wrote one). Nothing proves that run ended cleanly.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM daemon_state WHERE key = 'run'")
    await proc.astart()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            mode, state = conn.execute(
                "SELECT current_mode, trading_state FROM trading_mode_state"
            ).fetchone()
        assert mode == "LIVE"
        assert state == "HALTED", "LIVE, killed, no proof of a clean exit: must come up halted"
    finally:
        await proc.aterminate()


async def test_resume_before_reconciliation_is_refused(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    await proc.akill9()
    sim.sim.faults.http_5xx_rate = 1.0  # VALR answers only errors: no reconciliation
    await proc.astart()
    try:
        status, body = await proc.arequest("POST", "/api/trading/resume", {"reason": "too soon"})
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            [(state,)] = conn.execute("SELECT trading_state FROM trading_mode_state").fetchall()
        assert status == 409 and state == "HALTED", (status, body, state)
    finally:
        sim.sim.faults.http_5xx_rate = 0.0
        await proc.aterminate()
