"""Notifications through the whole daemon: a real heliosd process, a real Apprise json://
delivery to a local receiver, and delivery after a restart when the receiver was down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from heliosd.testing import NotifyReceiver, SimHandle, write_config


async def test_mode_change_notification_survives_receiver_outage_and_restart(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    receiver = NotifyReceiver()
    await receiver.start()
    await receiver.stop()  # down until after the restart below; its port is now known
    config = write_config(short_dir, sim, notify_url=receiver.url("/hook"))
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
        await asyncio.sleep(0.5)  # let the fill arrive on the account stream
        status, body = await proc.arequest(
            "POST", "/api/trading/emergency-stop", {"reason": "drill"}
        )
        assert status == 200, body
        await asyncio.sleep(0.5)  # the receiver is down: deliveries fail and are kept
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
        await asyncio.sleep(0.5)  # room for a duplicate to show up
        later = receiver.titles()
        assert len([t for t in later if "EMERGENCY STOP" in t]) == 1, later  # exactly once
    finally:
        await proc.aterminate()
        await receiver.stop()
