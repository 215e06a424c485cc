"""GET /api/fills: the newest stored fills, newest first, from the database alone, through a
real daemon on the simulator (real HTTP and WebSocket), its real SQLite file and socket."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from heliosd.core.types import Mode, Side
from heliosd.testing import SimHandle, start_daemon, wait_for, write_config

PAPER = '[paper]\nstarting_balances = { ZAR = "100000" }\n'


async def test_fills_newest_first_by_mode_and_limit_and_bad_queries_refused(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        sim.sim.set_price("BTCZAR", Decimal(1200000))
        await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
        placed = []
        # The BUY's fee is paid in BTC: the SELL sells less than was bought.
        for side, quantity in (("BUY", "0.001"), ("SELL", "0.0005"), ("BUY", "0.001")):
            if side == "SELL":  # the BUY's fill reaches the ledger through its sink
                ledger = running.service.ledgers[Mode.PAPER]
                await wait_for(lambda: ledger.position("BTCZAR") > 0)  # noqa: B023
            body = {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": quantity}
            status, answer = await running.request("POST", "/api/orders", body)
            assert status == 201 and answer["order"]["state"] == "filled", answer
            placed.append(answer["order"]["id"])

        status, body = await running.request("GET", "/api/fills")
        assert status == 200, body
        fills = body["fills"]
        assert [f["order_id"] for f in fills] == placed[::-1], fills  # newest first
        assert {f["mode"] for f in fills} == {"PAPER"}
        assert [f["side"] for f in fills] == ["BUY", "SELL", "BUY"], fills
        # (A paper MARKET BUY of 0.001 fills a little more: its fee is taken from the base.)
        assert Decimal(fills[1]["quantity"]) == Decimal("0.0005"), fills
        assert all(Decimal("0.001") <= Decimal(f["quantity"]) < Decimal("0.0011")
                   for f in (fills[0], fills[2])), fills  # fmt: skip
        for f in fills:
            assert Decimal(f["price"]) > 0, f
            assert f["trade_id"] and f["traded_at"] and f["fee_currency"], f
        times = [f["traded_at"] for f in fills]
        assert times == sorted(times, reverse=True), times

        status, body = await running.request("GET", "/api/fills?limit=2")
        assert [f["order_id"] for f in body["fills"]] == placed[:0:-1], body
        status, body = await running.request("GET", "/api/fills?mode=LIVE")
        assert (status, body["fills"]) == (200, []), body
        status, body = await running.request("GET", "/api/fills?mode=PAPER&limit=1")
        assert [f["order_id"] for f in body["fills"]] == [placed[-1]], body

        for query, field in (("mode=paper", "mode"), ("mode=BOTH", "mode"), ("limit=0", "limit"),
                             ("limit=1001", "limit"), ("limit=x", "limit"),
                             ("state=open", "state")):  # fmt: skip
            status, body = await running.request("GET", f"/api/fills?{query}")
            assert status == 400, (query, body)
            assert field in body["message"], (query, body)
    finally:
        await running.stop()
