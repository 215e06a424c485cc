"""VALR read-only (maintenance) through a real daemon, its Unix socket and the simulator over
HTTP and WebSocket: the first 503 on a write makes the client read VALR's status at once, the
LIVE account goes REDUCING under ``venue_read_only`` with one notification, new LIVE orders
(reducing ones too) are refused at once with that reason, health and the status line say
it, and it all ends by itself, with one more notification, once VALR is online again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from heliosd.core.types import Mode
from heliosd.testing import SimHandle, go_live, start_daemon, wait_for, write_config

NOTIFY = "json://127.0.0.1:9/unused"


def order(side: str, qty: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": qty, "reason": "t"}


async def test_read_only_venue_reduces_refuses_at_once_and_ends_by_itself(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    service, req = running.service, running.request
    live: Any = service.clients[Mode.LIVE]
    try:
        await wait_for(lambda: service.market.mark("BTCZAR") is not None)
        await go_live(running.request)
        status, body = await req("POST", "/api/orders", order("BUY", "0.002"))
        assert status == 201, body
        await wait_for(lambda: service.ledgers[Mode.LIVE].position("BTCZAR") > 0)
        _, health = await req("GET", "/api/health")
        assert health["venue_status"] == "online"
        assert isinstance(health["clock_skew_ms"], int) and abs(health["clock_skew_ms"]) < 1000

        sim.sim.set_read_only(True)
        # The client's poll has not seen it yet: the write's 503 makes it look at once.
        status, body = await req("POST", "/api/orders", order("BUY", "0.001"))
        assert status == 422, body
        assert "venue_read_only" in body["message"] and "refused it with 503" in body["message"]

        def state() -> Any:
            return service.store.mode_state()

        await wait_for(lambda: str(state().trading_state) == "REDUCING")
        assert "venue_read_only" in state().state_reason, state().state_reason
        _, health = await req("GET", "/api/health")
        assert health["venue_status"] == "read-only"
        assert "VALR READ-ONLY" in service.status_text()
        # A reducing order passes the latch but is refused by the client, never sent.
        before = len(sim.sim.order_log())
        status, body = await req("POST", "/api/orders", order("SELL", "0.001"))
        assert status == 422, body
        assert "venue_read_only" in body["message"] and "not sent" in body["message"], body
        assert len(sim.sim.order_log()) == before

        sim.sim.set_read_only(False)
        assert await live.check_status() == "online"  # what the poll does every 10 s
        await wait_for(lambda: str(state().trading_state) == "ACTIVE")
        status, body = await req("POST", "/api/orders", order("SELL", "0.001"))
        assert status == 201, body

        conn = sqlite3.connect(service.settings.daemon.db_path)
        try:
            rows = conn.execute("SELECT kind, data FROM outbox ORDER BY id").fetchall()
            audit = conn.execute(
                "SELECT outcome FROM audit WHERE action = 'venue_read_only' ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        told = [
            (kind, json.loads(data)["started"])
            for kind, data in rows
            if json.loads(data or "{}").get("breaker") == "venue_read_only"
        ]
        assert told == [("halt", True), ("resume", False)]
        assert audit == [("tripped",), ("cleared",)]
    finally:
        await running.stop()
