"""Equity comes from the venue's reported balances only, through real parts: a real daemon,
the simulator over real HTTP and WebSocket. A fill is never added to equity on top of a
balance update that already shows it, so a large market buy leaves the peak (persisted, the
drawdown stop's baseline) where it was and no stop trips."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from heliosd.core.types import Mode, Side
from heliosd.testing import SimHandle, go_live, start_daemon, wait_for, write_config

NOTIFY = "json://127.0.0.1:9/unused"
MID = Decimal(1200000)
ASK = Decimal(1200600)
D = Decimal


async def test_a_large_live_market_buy_does_not_move_the_peak_or_trip_a_stop(
    sim: SimHandle, short_dir: Path
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY, risk_extra="max_position_pct = 90")
    running = await start_daemon(config)
    try:
        sim.sim.set_price("BTCZAR", MID)
        await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) == ASK)
        ledger = running.service.ledgers[Mode.LIVE]
        await wait_for(lambda: ledger.equity() == D(100000))
        await go_live(running.request, reason="large buy")
        body = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.068",
                "reason": "82% of equity"}  # fmt: skip
        status, answer = await running.request("POST", "/api/orders", body)
        assert status == 201, answer
        # The fill and the venue's balance update both arrive and are applied.
        await wait_for(lambda: "BTC" in ledger.balances() and ledger.balances()["BTC"].total > 0)
        await wait_for(lambda: ledger.fees_paid() > 0 or bool(ledger.book_rows()))
        status, body = await running.request("GET", "/api/pnl")
        assert status == 200, body
        pnl = body["live"]
        # The buy costs the spread and fees, never adds equity: the peak stays 100,000.
        assert D(pnl["peak_equity"]) <= D(100000), pnl
        assert D(pnl["equity"]) <= D(100000), pnl
        # The next order is not stopped by a drawdown measured from a doubled peak.
        small = {"pair": "BTCZAR", "side": "SELL", "type": "MARKET", "quantity": "0.001",
                 "reason": "after the large buy"}  # fmt: skip
        status, answer = await running.request("POST", "/api/orders", small)
        assert status == 201, answer
        status, health = await running.request("GET", "/api/health")
        assert status == 200
        assert "drawdown" not in str(health), health
        assert running.service.store.mode_state().trading_state.value == "ACTIVE", health
    finally:
        await running.stop()
