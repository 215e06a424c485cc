"""The run marker and the engine record (heliosd.runtime.runstate) on a real SQLite file.

Every combination of the previous marker (none, clean, running, unreadable) and the stored
mode (PAPER, LIVE) is tried: only an unclean exit found in LIVE trips ``unclean_exit``, in
the transaction that writes the new marker, and the trading state it derives is HALTED
with a new epoch. An in-process daemon shows the two ends of a run: an orderly stop writes
"clean", a shutdown that overruns its budget does not.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from heliosd import store as st
from heliosd.core.types import Mode, TradingState
from heliosd.risk.state import UNCLEAN_EXIT
from heliosd.risk.state import read as read_state
from heliosd.runtime import runstate as rs
from heliosd.store import Store
from heliosd.testing import SimHandle, start_daemon, write_config
from heliosd.trading.engine import EngineChoice

MARKERS: dict[str, str | None] = {
    "none": None,
    "clean": json.dumps({"state": "clean", "pid": 1, "mode": "LIVE", "at": "t"}),
    "running": json.dumps({"state": "running", "pid": 1, "mode": "PAPER", "at": "t"}),
    "unreadable": "{not json",
}


@pytest.mark.parametrize(("marker", "mode"), list(itertools.product(MARKERS, ["PAPER", "LIVE"])))
async def test_begin_run_trips_unclean_exit_exactly_for_an_unclean_live_exit(
    tmp_path: Path, marker: str, mode: str
) -> None:
    store = await Store.open(tmp_path / "heliosd.db")
    try:

        def setup(conn: sqlite3.Connection) -> int:
            if mode == "LIVE":
                st.set_mode(store, conn, Mode.LIVE, actor="t", reason="t", confirmed=True)
            if MARKERS[marker] is not None:
                conn.execute(
                    "INSERT INTO daemon_state(key, value, at) VALUES ('run', ?, 't')",
                    (MARKERS[marker],),
                )
            return read_state(conn).epoch

        epoch = await store.write(setup)
        prev = await store.write(partial(rs.begin_run, pid=4242))
        row = await store.read(read_state)
        marker_now = await store.read(lambda c: rs.get(c, rs.RUN))
        audits = await store.read(
            lambda c: c.execute(
                "SELECT outcome FROM audit WHERE action = 'unclean_exit'"
            ).fetchall()
        )
    finally:
        await store.close()
    # No marker in LIVE: nothing proves the previous run ended cleanly (a store from a
    # release before the marker), so it is unclean; a fresh PAPER store is clean.
    unclean = marker in ("running", "unreadable") or (marker == "none" and mode == "LIVE")
    assert prev.unclean is unclean
    assert prev.tripped is prev.halted is (unclean and mode == "LIVE")
    assert marker_now is not None and (marker_now["state"], marker_now["pid"]) == ("running", 4242)
    if prev.tripped:
        assert row.state is TradingState.HALTED and row.reason.startswith(f"{UNCLEAN_EXIT}: ")
        assert row.epoch == epoch + 1
        assert audits == [("halted",)]
    else:
        assert row.state is TradingState.ACTIVE and row.epoch == epoch
        assert audits == ([("warned",)] if unclean else [])


async def test_engine_choice_round_trips_and_an_unreadable_one_reads_as_stopped(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "heliosd.db")
    try:
        assert await store.read(rs.load_engine_choice) is None
        choice = EngineChoice(True, "demo", "alice (uid 1000)", "2026-01-01T00:00:00+00:00")
        await store.write(partial(rs.save_engine_choice, choice=choice))
        assert await store.read(rs.load_engine_choice) == choice
        await store.write(lambda c: rs.put(c, rs.ENGINE, {"running": "yes"}))
        odd = await store.read(rs.load_engine_choice)
        assert odd is not None and odd.running is False  # only a real true means running
        await store.write(
            lambda c: c.execute("UPDATE daemon_state SET value = '[1' WHERE key = 'engine'")
        )
        broken = await store.read(rs.load_engine_choice)
        assert broken is not None and broken.running is False
    finally:
        await store.close()


def run_marker(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        [(value,)] = conn.execute("SELECT value FROM daemon_state WHERE key = 'run'").fetchall()
    finally:
        conn.close()
    return dict(json.loads(value))


class Hang:
    """A strategy whose tick never answers: stopping the engine waits out its stop timeout."""

    name = "hang"

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def on_market(self, snapshot: Any, ctx: Any) -> list[Any]:
        self.entered.set()
        await asyncio.Event().wait()
        return []


async def test_an_orderly_stop_is_clean_and_an_overrun_one_is_not(
    sim: SimHandle, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(short_dir, sim)
    db = config.parent / "state" / "heliosd.db"
    running = await start_daemon(config)
    assert run_marker(db)["state"] == "running"
    assert await running.stop() == 0
    assert run_marker(db)["state"] == "clean"

    running = await start_daemon(config)
    assert run_marker(db)["state"] == "running"
    # The engine's stop (an early step of the shutdown) outlasts the shutdown budget: the
    # budget cancels the shutdown, whose later steps still close things, but the run must
    # not be recorded clean.
    daemon, engine = running.daemon, running.service.engine
    hang = Hang()
    engine.set_strategies({**engine._strategies, "hang": hang})
    await engine.start("hang", actor="test", remember=False)
    await asyncio.wait_for(hang.entered.wait(), 10)
    daemon.settings = daemon.settings.replace(
        daemon=daemon.settings.daemon.replace(shutdown_timeout_s=Decimal(1))
    )
    try:
        assert await running.stop() == 1
        assert run_marker(db)["state"] == "running"  # the next start treats it as unclean
        assert "shutdown was not orderly" in caplog.text
    finally:
        if engine._task is not None:
            engine._task.cancel()
