"""The seed's Phase 2 checks through the real daemon, the real socket and the simulator.

PAPER -> LIVE -> PAPER: each next order reaches the client of the mode at that moment; a
LIVE order on a zero-balance account ends as a failed order with VALR's reason and the daemon
keeps serving; a restart rebuilds the same ledger from stored fills.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import (
    RunningDaemon,
    SimHandle,
    start_daemon,
    start_sim,
    wait_for,
    write_config,
)

NOTIFY = "json://127.0.0.1:9/unused"
BUY = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001", "reason": "t"}


async def wait_for_prices(running: RunningDaemon) -> None:
    market = running.service.market
    await wait_for(lambda: market.price_for("BTCZAR", _side("BUY")) is not None)


def _side(text: str) -> Any:
    from heliosd.core.types import Side

    return Side(text)


async def switch(running: RunningDaemon, mode: str) -> dict[str, Any]:
    status, body = await running.request("POST", "/api/trading/mode", {"mode": mode})
    if mode == "LIVE":
        assert status == 409, body
        assert body["error"] == "confirmation_required", body
        status, body = await running.request(
            "POST", "/api/trading/mode",
            {"mode": "LIVE", "confirm_token": body["details"]["confirm_token"]},
        )  # fmt: skip
    assert status == 200, body
    assert body["mode"] == mode
    return body


async def test_next_order_follows_the_mode_without_restart(sim: SimHandle, short_dir: Path) -> None:
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    try:
        await wait_for_prices(running)
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201, body
        assert body["order"]["mode"] == "PAPER"
        assert sim.sim.orders_received(sim.account) == []  # paper never touches the venue
        await wait_for(lambda: running.service.ledgers[_mode("PAPER")].position("BTCZAR") > 0)

        # The paper position must be closed before LIVE is allowed (the gates say so).
        status, body = await running.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409
        assert body["error"] == "gate_rejected"
        assert "open positions exist (BTCZAR" in body["message"]
        qty = str(running.service.ledgers[_mode("PAPER")].position("BTCZAR"))
        sell = {**BUY, "side": "SELL", "quantity": qty}
        status, body = await running.request("POST", "/api/orders", sell)
        assert status == 201, body
        await wait_for(lambda: running.service.ledgers[_mode("PAPER")].position("BTCZAR") == 0)

        await switch(running, "LIVE")
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201, body
        assert body["order"]["mode"] == "LIVE"
        received = sim.sim.orders_received(sim.account)
        assert len(received) == 1
        assert received[0]["customerOrderId"] == body["order"]["customer_order_id"]
        await wait_for(lambda: running.service.ledgers[_mode("LIVE")].position("BTCZAR") > 0)
        status, fills = await running.request("GET", f"/api/orders/{body['order']['id']}/fills")
        assert status == 200, fills
        assert fills["venue_checked"] is True
        assert [f["in_venue_history"] for f in fills["fills"]] == [True]
        sim_ids = {t["id"] for t in sim.sim.trades(sim.account)}
        assert {f["trade_id"] for f in fills["fills"]} <= sim_ids
        status, risk = await running.request("GET", "/api/risk")
        assert risk["pairs"]["BTCZAR"]["min_base"] == "0.0001"
        assert risk["pairs"]["BTCZAR"]["ask"] is not None

        await switch(running, "PAPER")
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201, body
        assert body["order"]["mode"] == "PAPER"
        assert len(sim.sim.orders_received(sim.account)) == 1  # nothing new at the venue
    finally:
        await running.stop()


def _mode(text: str) -> Any:
    from heliosd.core.types import Mode

    return Mode(text)


async def test_zero_balance_live_order_fails_cleanly(short_dir: Path) -> None:
    handle = await start_sim(funded=None)  # the normal state while testing: no money
    try:
        running = await start_daemon(write_config(short_dir, handle, notify_url=NOTIFY))
        try:
            await wait_for_prices(running)
            await switch(running, "LIVE")
            status, body = await running.request("POST", "/api/orders", BUY)
            assert status == 422, body
            assert body["error"] == "exchange_rejected"
            assert "Insufficient Balance" in body["message"]
            order = body["details"]["order"]
            assert order["state"] == "failed"
            assert "Insufficient Balance" in order["failed_reason"]
            status, listed = await running.request("GET", f"/api/orders/{order['id']}")
            assert status == 200
            assert listed["order"]["state"] == "failed"
            status, health = await running.request("GET", "/api/health")
            assert status == 200, health  # the daemon keeps running
        finally:
            await running.stop()
    finally:
        await handle.sim.stop()


@pytest.mark.slow
async def test_restart_rebuilds_the_same_ledger(sim: SimHandle, short_dir: Path) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    running = await start_daemon(config)
    try:
        await wait_for_prices(running)
        ids = []
        for order in ({**BUY, "quantity": "0.002"}, {**BUY, "quantity": "0.001"},
                      {**BUY, "side": "SELL", "quantity": "0.0015"}):  # fmt: skip
            status, body = await running.request("POST", "/api/orders", order)
            assert status == 201, body
            ids.append(body["order"]["id"])
        ledger = running.service.ledgers[_mode("PAPER")]
        store = running.service.store
        await wait_for(lambda: _filled(store, ids))
        await running.service.sinks[_mode("PAPER")].drain()
        assert ledger.position("BTCZAR") > 0
        assert ledger.realized_pnl() != 0
        before = (ledger.position("BTCZAR"), ledger.realized_pnl(), ledger.fees_paid(),
                  dict(ledger.balances()))  # fmt: skip
    finally:
        await running.stop()
    running = await start_daemon(config)
    try:
        ledger = running.service.ledgers[_mode("PAPER")]
        after = (ledger.position("BTCZAR"), ledger.realized_pnl(), ledger.fees_paid(),
                 dict(ledger.balances()))  # fmt: skip
        assert after == before
    finally:
        await running.stop()


def _filled(store: Any, ids: list[int]) -> bool:
    marks = ",".join("?" * len(ids))
    rows = store._reader.execute(  # read-only connection; a test-only peek
        f"SELECT state FROM orders WHERE id IN ({marks})", ids
    ).fetchall()
    return len(rows) == len(ids) and all(r[0] == "filled" for r in rows)
