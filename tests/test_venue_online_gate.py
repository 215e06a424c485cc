"""The ``venue_online`` pre-LIVE gate end to end: ``heliosd sim --read-only`` as a real
process (VALR in maintenance), a real daemon on its real control socket, and real switches to
LIVE: refused while VALR is read-only, allowed once it is online, refused again (naming why)
when VALR cannot be asked at all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from heliosd.sim.cli import demo_credentials
from heliosd.testing import SimHandle, go_live, start_daemon, write_config

ROOT = Path(__file__).resolve().parents[1]
NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants one; never delivered to
SEED = 5


async def sim_process(*flags: str) -> tuple[asyncio.subprocess.Process, str]:
    """``heliosd sim`` on an ephemeral port; (process, REST base URL)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.runtime.cli", "sim", "--port", "0",
        "--price-interval", "0", "--seed", str(SEED), "--fund", "ZAR=100000", *flags,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    banner = ""
    while "api secret" not in banner:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert line, banner
        banner += line.decode()
    url = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
    assert url is not None, banner
    return proc, url.group(1)


async def admin(base: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


def gate(body: dict[str, Any], name: str) -> tuple[bool, str]:
    [found] = [g for g in body["details"]["gates"] if g["name"] == name]
    return found["ok"], found["reason"]


@pytest.mark.timeout(120)
async def test_live_is_refused_while_valr_is_read_only_and_when_it_cannot_be_asked(
    short_dir: Path,
) -> None:
    proc, base = await sim_process("--read-only")
    key, secret = demo_credentials(SEED)
    # write_config needs only the simulator's URLs and the key pair the process printed.
    handle = SimHandle(SimpleNamespace(rest_url=base, ws_url=base.replace("http", "ws")),
                       key, secret)  # fmt: skip
    running = None
    try:
        assert (await admin(base, "GET", "/v1/public/status"))["status"] == "read-only"
        running = await start_daemon(write_config(short_dir, handle, notify_url=NOTIFY))
        status, body = await running.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409, body
        assert (body["error"], body["message"]) == (
            "gate_rejected", "Cannot switch to LIVE: VALR is read-only, not online",
        )  # fmt: skip
        assert gate(body, "venue_online") == (False, "VALR is read-only, not online")
        assert all(g["ok"] for g in body["details"]["gates"] if g["name"] != "venue_online")
        status, mode = await running.request("GET", "/api/trading/mode")
        assert mode["mode"] == "PAPER", mode

        # Maintenance over: the same switch passes every gate and goes LIVE.
        await admin(base, "POST", "/sim/faults", {"read_only": False})
        assert (await go_live(running.request, reason="VALR online"))["mode"] == "LIVE"
        status, _ = await running.request(
            "POST", "/api/trading/mode", {"mode": "PAPER", "reason": "back"}
        )
        assert status == 200

        # VALR gone (the process stopped): not knowing is a refusal that says why.
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        status, body = await running.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409 and body["error"] == "gate_rejected", body
        ok, reason = gate(body, "venue_online")
        assert not ok and reason.startswith("cannot check VALR status ("), reason
        status, mode = await running.request("GET", "/api/trading/mode")
        assert mode["mode"] == "PAPER", mode
    finally:
        if running is not None and not running.task.done():
            await running.stop()
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 20)
