"""Notifications through the whole daemon: a real heliosd process, a real Apprise json://
delivery to a local receiver, and delivery after a restart when the receiver was down."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from heliosd.testing import NotifyReceiver, SimHandle, wait_for, write_config


def outbox(db: Path, where: str) -> int:
    """How many outbox rows match ``where`` (read through a connection of its own)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute(f"SELECT count(*) FROM outbox WHERE {where}").fetchone()[0])


async def test_mode_change_notification_survives_receiver_outage_and_restart(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    receiver = NotifyReceiver()
    await receiver.start()
    await receiver.stop()  # down until after the restart below; its port is now known
    config = write_config(short_dir, sim, notify_url=receiver.url("/hook"))
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    try:
        status, body = await proc.arequest("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409, body
        token = body["details"]["confirm_token"]
        status, body = await proc.arequest(
            "POST", "/api/trading/mode",
            {"mode": "LIVE", "confirm_token": token, "reason": "first live day"},
        )  # fmt: skip
        assert status == 200, body
        buy = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
        status, body = await proc.arequest("POST", "/api/orders", buy)
        assert status == 201, body

        async def filled() -> bool:  # the fill arrived on the account stream
            status, fills = await proc.arequest("GET", "/api/fills?mode=LIVE")
            return status == 200 and len(fills["fills"]) == 1

        await wait_for(filled, 15, "the order's fill")
        status, body = await proc.arequest(
            "POST", "/api/trading/emergency-stop", {"reason": "drill"}
        )
        assert status == 200, body
        # The receiver is down: every delivery is tried, fails and is kept for later.
        await wait_for(lambda: outbox(db, "attempts = 0") == 0, 15, "every delivery tried")
        assert outbox(db, "delivered_at IS NOT NULL") == 0
        assert await proc.aterminate() == 0

        await receiver.start()  # back up, on the same port
        await proc.astart()  # pending rows are due at once after a restart
        posts = await receiver.wait_for(4, timeout=20)
        assert {p.path for p in posts} == {"/hook"}, posts  # the URL in the config
        received = [p.json for p in posts]
        titles = [r.get("title", "") for r in received]
        assert any("PAPER -> LIVE" in t for t in titles), titles
        assert any(t.startswith("LIVE order ") for t in titles), titles  # every LIVE order
        assert any(t.startswith("LIVE fill: BUY") for t in titles), titles  # and its fill
        urgent = [r for r in received if "EMERGENCY STOP" in r.get("title", "")]
        assert len(urgent) == 1, titles
        assert urgent[0]["type"] == "failure"  # urgent events are sent as failures
        assert "drill" in urgent[0]["message"]
        # Each row is delivered and recorded so (never picked again); once the daemon has
        # stopped, a duplicate could only be among the posts already received.
        await wait_for(lambda: outbox(db, "delivered_at IS NULL") == 0, 15, "all delivered")
        assert await proc.aterminate() == 0
        later = receiver.titles()
        assert len([t for t in later if "EMERGENCY STOP" in t]) == 1, later  # exactly once
    finally:
        await proc.aterminate()
        await receiver.stop()
