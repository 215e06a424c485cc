"""The resume after an unclean exit in LIVE waits for the reconciliation with VALR.

A real ``kill -9`` of a LIVE daemon; the restart finds VALR answering nothing but 5xx, so
the account stream cannot connect and reconcile. The receiver is told it has not completed,
and why; a resume is refused, saying why and what to do; once VALR answers again the
daemon reconciles by itself, says so, and the same resume then works.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import NotifyReceiver, SimHandle, go_live, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

NOT_YET = "HALTED (LIVE): unclean exit, VALR not reconciled yet"
RECONCILED = "HALTED (LIVE): unclean exit, reconciled with VALR"


def titled(suffix: str) -> Any:
    return lambda posts: any(p.json.get("title", "").endswith(suffix) for p in posts)


async def test_resume_is_refused_until_reconciliation_completes(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    config = write_config(short_dir, sim, notify_url=notify_receiver.url())
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    await proc.akill9()

    sim.sim.faults.http_5xx_rate = 1.0  # VALR's REST answers only errors
    await proc.astart()
    posts = await notify_receiver.wait_for(titled(NOT_YET), timeout=30)
    [note] = [p.json for p in posts if p.json["title"].endswith(NOT_YET)]
    assert "VALR does not answer: VALR server error" in note["message"], (note, proc.logs())
    status, body = await proc.arequest("POST", "/api/trading/resume", {"reason": "too soon"})
    assert status == 409, body
    assert "reconciliation with VALR after the unclean exit has not completed" in body["message"]
    assert "heliosctl health" in body["message"], body
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        [(state,)] = conn.execute("SELECT trading_state FROM trading_mode_state").fetchall()
        outcomes = conn.execute(
            "SELECT outcome FROM audit WHERE action = 'reconcile' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert state == "HALTED"
    assert outcomes == [("incomplete",)]

    sim.sim.faults.http_5xx_rate = 0.0  # VALR is back: the daemon reconciles by itself
    await notify_receiver.wait_for(titled(RECONCILED), timeout=45)
    status, body = await proc.arequest("POST", "/api/trading/resume", {"reason": "reconciled"})
    assert status == 200, body
    status, mode = await proc.arequest("GET", "/api/trading/mode")
    assert mode["halted"] is False and mode["mode"] == "LIVE", mode
    assert await proc.aterminate() == 0
