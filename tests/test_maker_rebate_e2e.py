"""Maker rebates end to end: a real daemon (in process, on its real control socket and SQLite
file) trading LIVE against the simulator over real HTTP and WebSocket, the simulator paying
makerReward on maker fills (switched on through its admin route, ``POST /sim/faults``).

A resting LIMIT BUY filled as maker earns 2 bps of its value: the fill is stored with a
negative fee, the LIVE ledger's fees go negative and ``GET /api/pnl`` and
``GET /api/positions`` explain the equity change; a restart rebuilds the same figures from
the stored fill. A NEW_ACCOUNT_TRADE whose makerReward is garbled is skipped with a warning
(no crash) and the fill arrives through the catch-up reconciliation with the right fee.
"""

from __future__ import annotations

import logging
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from heliosd.core.types import Mode, Side
from heliosd.testing import (
    RunningDaemon,
    SimHandle,
    eventually,
    go_live,
    start_daemon,
    wait_for,
    write_config,
)

NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants one; never delivered to
D = Decimal
MID = D(1000000)


async def set_faults(sim: SimHandle, **faults: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.sim.rest_url}/sim/faults", json=faults) as resp,
    ):
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def live_daemon(config: Path, sim: SimHandle, *, switch: bool) -> RunningDaemon:
    running = await start_daemon(config)
    sim.sim.set_price("BTCZAR", MID)
    await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
    await wait_for(lambda: running.service.ledgers[Mode.LIVE].ready)
    if switch:
        await go_live(running.request, reason="maker rebates")
    return running


async def rest_and_fill(running: RunningDaemon, sim: SimHandle, qty: str, price: str) -> str:
    """A LIMIT BUY resting below the market, then the market falls through it (maker)."""
    sim.sim.set_price("BTCZAR", MID)  # a fresh quote for the LIVE risk check
    body = {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": qty, "price": price,
            "reason": "rebate test"}  # fmt: skip
    status, answer = await running.request("POST", "/api/orders", body)
    assert status == 201, answer
    order_id = answer["order"]["exchange_order_id"]
    await wait_for(lambda: any(o["orderId"] == order_id for o in sim.sim.open_orders("0")))
    sim.sim.set_price("BTCZAR", D(price) - 10000)
    return str(order_id)


def stored_fees(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT price, fee, fee_currency FROM fills WHERE mode = 'LIVE' ORDER BY id"
        ).fetchall()
    return [(str(p), str(f), str(c)) for p, f, c in rows]


async def live_pnl(running: RunningDaemon) -> dict[str, Any]:
    status, body = await running.request("GET", "/api/pnl")
    assert status == 200, body
    pnl: dict[str, Any] = body["live"]
    return pnl


@pytest.mark.timeout(120)
async def test_a_maker_rebate_is_stored_as_a_negative_fee_and_raises_the_pnl(
    sim: SimHandle, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = await set_faults(sim, maker_rebate_bps=2)
    assert (state["maker_rebate_bps"], state["maker_reward_shape"]) == (2, "reward")
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    running = await live_daemon(config, sim, switch=True)
    try:
        await rest_and_fill(running, sim, "0.01", "990000")
        # VALR's row: makerReward 1.98 ZAR (2 bps of 9,900), no fee field at all.
        [row] = sim.sim.trades("0")
        assert (row.get("fee"), row["makerReward"], row["makerRewardCurrency"]) == (
            None, "1.98", "ZAR",
        )  # fmt: skip
        await wait_for(lambda: len(stored_fees(db)) == 1)
        assert stored_fees(db) == [("990000", "-1.98", "ZAR")]

        async def settled() -> dict[str, Any] | None:
            pnl = await live_pnl(running)
            # The venue's balances show the fill: 100,000 - 9,900 + 1.98 ZAR and 0.01 BTC.
            ledger = running.service.ledgers[Mode.LIVE]
            return pnl if ledger.unsettled() == {} and ledger.position("BTCZAR") else None

        pnl = await eventually(settled)
        assert (pnl["fees"], pnl["realized"]) == ("-1.98", "0")
        balances = running.service.ledgers[Mode.LIVE].balances()
        assert balances["ZAR"].total == D("90101.98")
        assert balances["BTC"].total == D("0.01")
        # At unchanged marks the P&L explains the equity change, the rebate included.
        equity_change = D(pnl["equity"]) - D(100000)
        assert equity_change == D(pnl["realized"]) + D(pnl["unrealized"]) - D(pnl["fees"])
        status, positions = await running.request("GET", "/api/positions")
        [btc] = [r for r in positions["live"] if r["pair"] == "BTCZAR"]
        assert (btc["quantity"], btc["average_cost"], btc["fees"]) == ("0.01", "990000", "-1.98")

        # A garbled makerReward on the stream: skipped loudly, recovered through REST.
        state = await set_faults(sim, garble_maker_rewards=1)
        with caplog.at_level(logging.WARNING, logger="heliosd.builtin.valr.streams"):
            await rest_and_fill(running, sim, "0.005", "970000")
            await wait_for(lambda: len(stored_fees(db)) == 2)
        assert (await set_faults(sim))["garbled_maker_rewards"] == 1
        assert stored_fees(db)[1] == ("970000", "-0.97", "ZAR")  # the REST row's, not a guess
        skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert skipped == [
            "VALR account stream: skipped a NEW_ACCOUNT_TRADE message "
            "(makerReward is not a decimal number)"
        ]

        async def both_booked() -> bool:
            return bool((await live_pnl(running))["fees"] == "-2.95")

        await eventually(both_booked)
        status, health = await running.request("GET", "/api/health")
        assert (status, health["ledger_errors"]) == (200, {}), health
        # The fills explain the balance moves, rebates included: nothing read as a deposit.
        await wait_for(lambda: running.service.runner.flows.unexplained == {})
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM flows").fetchone() == (0,)
    finally:
        await running.stop()

    # Restart: the ledger is rebuilt from the stored fills, negative fees and all.
    again = await live_daemon(config, sim, switch=False)
    try:
        assert (await live_pnl(again))["fees"] == "-2.95"
        ledger = again.service.ledgers[Mode.LIVE]
        assert ledger.fees_paid() == D("-2.95") and ledger.errors == []
    finally:
        await again.stop()
