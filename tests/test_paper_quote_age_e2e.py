"""[paper] max_quote_age_s through a real daemon, its control socket and the simulator.

The simulator fixture moves prices only when told, so after the daemon's subscription
snapshot its feed is silent: exactly what heliosd sees when the VALR feed dies. The quote
ages past a one-second limit in real time; a PAPER market order is then refused through
POST /api/orders, stored as failed with the reason, and fills nothing.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from heliosd.core.types import Mode, Quote
from heliosd.testing import SimHandle, start_daemon, wait_for, write_config

ORDER = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001",
         "reason": "stale quote test"}  # fmt: skip


async def test_a_stale_quote_refuses_the_paper_order_and_stores_no_fill(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(
        write_config(short_dir, sim, extra="[paper]\nmax_quote_age_s = 1\n")
    )
    try:
        market = running.service.market
        await wait_for(lambda: market.quote("BTCZAR") is not None)
        first: Quote = market.quote("BTCZAR")
        await wait_for(lambda: datetime.now(UTC) - first.at > timedelta(seconds=1.2), timeout=5)
        assert market.quote("BTCZAR") is first  # nothing newer arrived: the feed is silent

        status, body = await running.request("POST", "/api/orders", ORDER)
        assert status == 422, body
        assert body["error"] == "exchange_rejected"
        message = body["message"]
        assert message.startswith("Stale market price for BTCZAR: the last quote is "), message
        assert message.endswith(" s old, more than paper.max_quote_age_s (1 s)"), message
        age = Decimal(message.split("the last quote is ")[1].split(" s old")[0])
        assert Decimal("1.2") <= age < 10
        stored = body["details"]["order"]
        assert (stored["mode"], stored["state"], stored["failed_reason"]) == (
            "PAPER",
            "failed",
            message,
        )

        # The stored order says the same, with no fill: through the API and in the file.
        status, row = await running.request("GET", f"/api/orders/{stored['id']}")
        assert status == 200, row
        assert (row["order"]["state"], row["order"]["failed_reason"]) == ("failed", message)
        status, fills = await running.request("GET", f"/api/orders/{stored['id']}/fills")
        assert status == 200, fills
        assert fills["fills"] == []
        db = sqlite3.connect(running.service.settings.daemon.db_path)
        try:
            assert db.execute("SELECT COUNT(*) FROM fills").fetchone() == (0,)
            assert db.execute("SELECT state FROM orders").fetchall() == [("failed",)]
        finally:
            db.close()
        paper = running.service.ledgers[Mode.PAPER]
        assert paper.position("BTCZAR") == 0

        # The feed speaks again: the daemon kept running and the next order fills.
        sim.sim.set_price("BTCZAR", Decimal(1000000))
        await wait_for(lambda: market.quote("BTCZAR") is not first)
        status, body = await running.request("POST", "/api/orders", ORDER)
        assert status == 201, body
        assert body["order"]["mode"] == "PAPER"
        await wait_for(lambda: paper.position("BTCZAR") > 0)
    finally:
        await running.stop()
