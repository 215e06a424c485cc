"""The engine's on/off survives restarts (heliosd.runtime.runstate, E1).

In process: which starts and stops the engine hands to ``on_choice``, in order. Through real
``heliosd run`` processes: a person's stop survives SIGTERM and a restart with
``engine.autostart = true``; a person's start survives ``kill -9`` (PAPER: no halt); an
emergency stop's engine-off is remembered as off after the resume and a restart.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import EngineSettings, Settings
from heliosd.core.types import Mode
from heliosd.testing import SimHandle, wait_for, write_config
from heliosd.trading.engine import Engine, EngineChoice
from heliosd.trading.marketdata import MarketData

ENGINE = '[engine]\nstrategy = "demo"\nautostart = true\ninterval_s = 1\n'


class Hold:
    name = "hold"

    def on_market(self, snapshot: Any, ctx: Any) -> list[Any]:
        return []


class Breaks:
    name = "breaks"

    def on_market(self, snapshot: Any, ctx: Any) -> list[Any]:
        raise RuntimeError("bug")


class Never:
    async def submit(self, intent: Any, *, actor: str) -> dict[str, Any]:
        raise AssertionError("no order expected")


def engine(halted: list[str]) -> tuple[Engine, list[EngineChoice]]:
    seen: list[EngineChoice] = []

    async def record(choice: EngineChoice) -> None:
        seen.append(choice)

    settings = Settings().replace(engine=EngineSettings(strategy="hold", interval_s=1))  # type: ignore[arg-type]
    e = Engine(
        Never(), {"hold": Hold(), "breaks": Breaks()}, settings, MarketData(),
        {Mode.PAPER: None}, mode_provider=lambda: Mode.PAPER,  # type: ignore[dict-item]
        halted=lambda: halted[0] if halted else None,
    )  # fmt: skip
    e.on_choice = record
    return e, seen


async def test_remembered_starts_and_stops_reach_on_choice_in_order() -> None:
    halted: list[str] = []
    e, seen = engine(halted)
    await e.start("hold", actor="autostart", remember=False)
    assert seen == []  # the daemon's own start is not a choice
    await e.stop(actor="alice (uid 1000)")
    await e.stop(actor="alice (uid 1000)")  # stopping a stopped engine is still "stopped"
    await e.start("hold", actor="bob (uid 1001)")
    assert [(c.running, c.strategy, c.by) for c in seen] == [
        (False, "hold", "alice (uid 1000)"), (False, "hold", "alice (uid 1000)"),
        (True, "hold", "bob (uid 1001)"),
    ]  # fmt: skip
    # A halt makes the engine stop itself: remembered as off, with the reason.
    halted.append("emergency: test")
    e._wake.set()
    await asyncio.wait_for(_until(lambda: not e.running), 5)
    await asyncio.wait_for(_until(lambda: len(seen) == 4), 5)
    assert (seen[3].running, seen[3].by) == (False, "heliosd")
    assert "trading is halted (emergency: test)" in seen[3].reason
    # A strategy that fails is off until a person starts it again.
    halted.clear()
    await e.start("breaks", actor="carol", remember=False)
    await asyncio.wait_for(_until(lambda: len(seen) == 5), 5)
    assert (seen[4].running, seen[4].strategy, seen[4].by) == (False, "breaks", "heliosd")
    assert "RuntimeError" in seen[4].reason
    # The daemon's shutdown stops without a record.
    await e.start("hold", actor="autostart", remember=False)
    await e.stop(actor="shutdown", remember=False)
    assert len(seen) == 5


_until = wait_for


# ---------------------------------------------------------------------- real processes


def engine_row(db: Path) -> dict[str, Any] | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM daemon_state WHERE key = 'engine'").fetchone()
    finally:
        conn.close()
    return None if row is None else dict(json.loads(row[0]))


async def running(proc: Any) -> bool:
    status, body = await proc.arequest("GET", "/api/autonomous-engine/status")
    assert status == 200, body
    return bool(body["running"])


@pytest.mark.slow
async def test_a_persons_stop_survives_restarts_with_autostart_on(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, extra=ENGINE)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    assert await running(proc)  # nothing recorded: autostart decides
    assert engine_row(db) is None

    status, body = await proc.arequest("POST", "/api/autonomous-engine/stop", {})
    assert status == 200, body
    row = engine_row(db)
    assert row is not None and row["running"] is False and "uid" in row["by"], row
    assert await proc.aterminate() == 0
    await proc.astart()
    assert not await running(proc)  # stopped stays stopped, autostart or not
    assert "engine stays stopped" in proc.logs()

    status, body = await proc.arequest("POST", "/api/autonomous-engine/start", {})
    assert status == 200 and body["running"], body
    await proc.akill9()  # PAPER: an unclean exit warns, it does not halt
    await proc.astart()
    assert await running(proc)
    status, mode = await proc.arequest("GET", "/api/trading/mode")
    assert mode["halted"] is False, mode
    assert await proc.aterminate() == 0
    row = engine_row(db)
    assert row is not None and row["running"] is True and row["strategy"] == "demo", row


@pytest.mark.slow
async def test_a_stops_engine_off_is_remembered_after_resume_and_restart(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, extra=ENGINE)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    status, body = await proc.arequest("POST", "/api/autonomous-engine/start", {})
    assert status == 200 and body["running"], body
    status, body = await proc.arequest("POST", "/api/trading/emergency-stop", {"reason": "test"})
    assert status == 200, body
    assert not await running(proc)
    row = engine_row(db)
    assert row is not None and row["running"] is False and row["by"] == "heliosd", row
    status, body = await proc.arequest("POST", "/api/trading/resume", {"reason": "checked"})
    assert status == 200, body
    assert await proc.aterminate() == 0
    await proc.astart()
    assert not await running(proc)
    assert await proc.aterminate() == 0
