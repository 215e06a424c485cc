"""Notifications through the whole daemon: a real heliosd process, a real Apprise json://
delivery to a local receiver, and delivery after a restart when the receiver was down."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from heliosd.testing import SimHandle, write_config


class Receiver:
    """An HTTP endpoint Apprise's json:// posts to; can be started late (receiver down)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_mode_change_notification_survives_receiver_outage_and_restart(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    port = free_port()
    receiver = Receiver(port)
    config = write_config(short_dir, sim, notify_url=f"json://127.0.0.1:{port}/hook")
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

        await receiver.start()
        await proc.astart()  # pending rows are due at once after a restart
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline and len(receiver.received) < 4:
            await asyncio.sleep(0.1)
        titles = [r.get("title", "") for r in receiver.received]
        assert any("PAPER -> LIVE" in t for t in titles), titles
        assert any(t.startswith("heliosd LIVE order") for t in titles), titles  # every LIVE order
        assert any(t.startswith("LIVE fill: BUY") for t in titles), titles  # and its fill
        urgent = [r for r in receiver.received if "EMERGENCY STOP" in r.get("title", "")]
        assert len(urgent) == 1, titles
        assert urgent[0]["type"] == "failure"  # urgent events are sent as failures
        assert "drill" in urgent[0]["message"]
        await asyncio.sleep(0.5)
        assert len([t for t in titles if "EMERGENCY STOP" in t]) == 1  # exactly once
    finally:
        await proc.aterminate()
        await receiver.stop()
