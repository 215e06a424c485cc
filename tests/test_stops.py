"""Stops against the real simulator: what the emergency stop costs after its answer.

The stop answers once the venue says nothing is open; the daemon's own rows of the
cancelled orders then follow from the account stream's ORDER_STATUS_UPDATEs. These tests
pin that the rows do follow, and that they do so without a REST status lookup per order
(500 orders would be 500 signed requests against VALR's rate limits right after a stop).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from heliosd.testing import NotifyReceiver, SimHandle, eventually, start_daemon, write_config
from heliosd.trading.sink import RECENT_S

NOTIFY = "json://127.0.0.1:9/unused"
LOOKUPS = (
    "GET /v1/orders/{pair}/orderid/{orderId}",
    "GET /v1/orders/{pair}/customerorderid/{customerOrderId}",
)


def lookups(sim: SimHandle) -> int:
    counts = sim.sim.request_counts()
    return sum(counts.get(route, 0) for route in LOOKUPS)


async def test_emergency_stop_settles_stored_orders_from_the_stream_without_lookups(
    sim: SimHandle, short_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    req = running.request
    try:
        await eventually(lambda: _has_price(running))
        status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE"})
        token = body["details"]["confirm_token"]
        live = {"mode": "LIVE", "confirm_token": token, "reason": "t"}
        assert (await req("POST", "/api/trading/mode", live))[0] == 200
        n = 60
        for i in range(n):
            bid = {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
                   "price": str(500000 + i)}  # fmt: skip
            status, body = await req("POST", "/api/orders", bid)
            assert status == 201, body
        assert len(sim.sim.open_orders(sim.account)) == n
        # Old enough that reconciliation judges them instead of waiting for them.
        await asyncio.sleep(RECENT_S + 0.2)
        before = lookups(sim)

        status, body = await req("POST", "/api/trading/emergency-stop", {"reason": "drill"})
        assert status == 200, body
        assert (body["cancelled_orders"], body["remaining_open_orders"]) == (n, 0)

        async def settled() -> bool:
            rows = (await req("GET", "/api/orders?state=open"))[1]["orders"]
            return rows == []

        await eventually(settled)
        rows = (await req("GET", "/api/orders?state=all&limit=1000"))[1]["orders"]
        assert sorted({r["state"] for r in rows}) == ["cancelled"]
        assert len(rows) == n
        # A reconciliation pass that was going to look orders up would have by now.
        await asyncio.sleep(RECENT_S + 0.5)
        assert lookups(sim) - before == 0
    finally:
        await running.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _has_price(running: Any) -> bool:
    return running.service.market.mark("BTCZAR") is not None


async def test_an_emergency_stop_that_cannot_check_valr_says_check_valr_now(
    sim: SimHandle, short_dir: Any, notify_receiver: NotifyReceiver
) -> None:
    """The stop's first notification goes out when it latches; when the exchange cannot be
    asked afterwards (every REST call fails), a second, urgent one tells the operator that
    orders may still be open there."""
    config = write_config(short_dir, sim, notify_url=notify_receiver.url("/hook"))
    running = await start_daemon(config)
    try:
        sim.sim.faults.http_5xx_rate = 1.0  # VALR answers nothing but 5xx from now on
        status, body = await running.request(
            "POST", "/api/trading/emergency-stop", {"reason": "drill"}
        )
        assert status == 200, body
        assert body["remaining_open_orders"] is None  # could not be checked
        posts = await notify_receiver.wait_for(2, timeout=30)
        titles = [p.json["title"] for p in posts]
        assert titles == ["URGENT: EMERGENCY STOP: trading halted",
                          "URGENT: EMERGENCY STOP: CHECK VALR NOW"]  # fmt: skip
        assert "Cancelling every open order" in posts[0].json["message"]
        assert "Could not list the exchange's open orders: CHECK VALR NOW." in (
            posts[1].json["message"])  # fmt: skip
    finally:
        sim.sim.faults.http_5xx_rate = 0.0
        await running.stop()
