"""Flows made while heliosd was down are caught up at start (FlowWatcher.catch_up).

A real ``heliosd run`` process in LIVE against the simulator; SIGTERM; while it is down the
account withdraws 20% of its ZAR (more than the 15% drawdown stop and the 5% daily loss);
restart. The restart reads VALR's transaction history since the last run ended, records the
withdrawal as a flow, and moves the peak and the day's baseline by it: no stop trips, the
day's P&L does not show the withdrawal as a loss, and ``GET /api/risk`` shows it in
``flows_today``.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import NotifyReceiver, SimHandle, go_live, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def flows(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kind, currency, amount FROM flows WHERE mode = 'LIVE'")
        return [tuple(r) for r in rows.fetchall()]
    finally:
        conn.close()


eventually = wait_for


async def test_a_withdrawal_while_down_is_a_flow_after_the_restart(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    config = write_config(short_dir, sim, notify_url=notify_receiver.url())
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)

    async def risk() -> dict[str, Any]:
        status, body = await proc.arequest("GET", "/api/risk")
        assert status == 200, body
        return body

    before = await eventually(lambda: _ready(risk), 20, "LIVE equity known")
    equity = Decimal(before["equity"])
    await proc.aterminate()

    zar = sum(sim.sim.balances(sim.account)["ZAR"], Decimal(0))
    out = (zar * Decimal("0.2")).quantize(Decimal(1))
    sim.sim.withdraw(sim.account, "ZAR", out)

    await proc.astart()
    assert await eventually(
        lambda: _async(any(k == "withdrawal" and Decimal(a) == -out for k, _, a in flows(db))),
        20, "the withdrawal recorded as a flow",
    )  # fmt: skip
    after = await eventually(lambda: _flowed(risk), 20, "flows_today shows the withdrawal")
    assert Decimal(after["equity"]) < equity - out + 1
    assert Decimal(after["flows_today"]) == -out
    assert Decimal(after["limits"]["max_drawdown_pct"]["use"]) < 1, after
    assert Decimal(after["limits"]["daily_loss_pct"]["use"]) < 1, after
    _, mode = await proc.arequest("GET", "/api/trading/mode")
    assert mode["trading_state"] == "ACTIVE" and mode["mode"] == "LIVE", mode


async def _async(value: Any) -> Any:
    return value


async def _ready(risk: Any) -> dict[str, Any] | None:
    body: dict[str, Any] = await risk()
    return body if body["mode"] == "LIVE" and Decimal(body["equity"]) > 0 else None


async def _flowed(risk: Any) -> dict[str, Any] | None:
    body: dict[str, Any] = await risk()
    return body if Decimal(body.get("flows_today", "0")) != 0 else None
