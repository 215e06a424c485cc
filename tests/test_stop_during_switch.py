"""A stop that lands while a confirmed LIVE switch runs its gates wins: a real daemon, its
real Unix socket, the simulator, and a drop-in gate that holds the switch until told.

The switch captured the epoch before its gates ran; its transaction requires ACTIVE at that
epoch before it writes LIVE. So: the stop answers, the switch is refused with
``state_changed``, the mode stays PAPER, and a token issued before the stop is refused after
the resume (a new one is needed).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from heliosd.plugins import DROPIN_PREFIX
from heliosd.testing import SimHandle, go_live, start_daemon, write_config

NOTIFY = "json://127.0.0.1:9/unused"

GATE = """
import asyncio

from heliosd import GateResult, hookimpl

hold = None  # an asyncio.Event set by the test: the next check waits on it
entered = asyncio.Event()


class SlowGate:
    name = "slow_gate"

    async def check(self, ctx):
        if hold is not None:
            entered.set()
            await hold.wait()
        return GateResult(self.name, True, "")


@hookimpl
def heliosd_register_gates(register, config):
    register(SlowGate())
"""


async def test_a_stop_during_the_gates_refuses_the_switch_and_mode_stays_paper(
    sim: SimHandle, short_dir: Path, plugin_dir: Path
) -> None:
    (plugin_dir / "slow_gate.py").write_text(GATE)
    config = write_config(
        short_dir, sim, notify_url=NOTIFY, daemon_extra=f'plugin_dirs = ["{plugin_dir}"]'
    )
    running = await start_daemon(config)
    req = running.request
    try:
        gate: Any = sys.modules[f"{DROPIN_PREFIX}slow_gate"]
        status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert (status, body["error"]) == (409, "confirmation_required"), body
        token = body["details"]["confirm_token"]
        status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE"})
        spare = body["details"]["confirm_token"]  # issued before the stop, used after it
        before = (await req("GET", "/api/trading/mode"))[1]
        assert (before["trading_state"], before["halted"]) == ("ACTIVE", False)

        gate.hold = asyncio.Event()
        confirm = {"mode": "LIVE", "confirm_token": token, "reason": "go"}
        switching = asyncio.ensure_future(req("POST", "/api/trading/mode", confirm))
        await gate.entered.wait()  # the confirmed switch is inside its gates now

        status, stop = await req("POST", "/api/trading/emergency-stop", {"reason": "drill"})
        assert status == 200, stop
        assert stop["mode"] == "PAPER" and stop["trading_state"] == "REDUCING"
        assert stop["remaining_open_orders"] == 0 and stop["remaining"] == []
        assert stop["unresolved_placements"] == []
        assert stop["epoch"] > before["epoch"]

        gate.hold.set()
        status, body = await switching
        assert (status, body["error"]) == (409, "state_changed"), body
        assert "mode stays PAPER" in body["message"]
        now = (await req("GET", "/api/trading/mode"))[1]
        assert now["mode"] == "PAPER" and now["trading_state"] == "REDUCING" and now["halted"]
        history = (await req("GET", "/api/trading/mode/history"))[1]["history"]
        assert all(row["new_mode"] != "LIVE" for row in history)
        gate.hold = None

        # While the stop is latched, a LIVE switch is refused outright.
        status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert (status, body["error"]) == (409, "halted"), body

        status, body = await req("POST", "/api/trading/resume", {"reason": "drill over"})
        assert status == 200, body
        assert body["trading_state"] == "ACTIVE" and body["epoch"] > stop["epoch"]
        status, body = await req(
            "POST", "/api/trading/mode", {"mode": "LIVE", "confirm_token": spare, "reason": "x"}
        )
        assert (status, body["error"]) == (409, "invalid_confirm_token"), body
        assert "epoch" in body["message"]
        assert (await req("GET", "/api/trading/mode"))[1]["mode"] == "PAPER"
        live = await go_live(req)  # a fresh token works
        assert live["trading_state"] == "ACTIVE"
    finally:
        await running.stop()
