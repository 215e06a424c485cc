"""``python -m heliosd.sim`` / ``run_sim``: a real process serving the simulator."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from heliosd.sim import run_sim, serve_forever
from heliosd.sim.cli import demo_credentials
from heliosd.sim.probe import Probe

ROOT = Path(__file__).resolve().parents[1]


async def test_module_entry_point_serves_until_interrupted() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "heliosd.sim",
        "--port",
        "0",
        "--price-interval",
        "0",
        "--fund",
        "ZAR=250",
        "--seed",
        "3",
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    try:
        banner = ""
        while "api secret" not in banner:
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, banner
            banner += line.decode()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert url is not None, banner
        key, secret = demo_credentials(3)
        assert key in banner and secret in banner
        async with aiohttp.ClientSession() as session:
            probe = Probe(session, url.group(1), url.group(1).replace("http", "ws"), key, secret)
            rows = (await probe.get("/v1/account/balances?excludeZeroBalances=true")).json()
            assert [(r["currency"], Decimal(r["available"])) for r in rows] == [("ZAR", 250)]
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_bad_fund_argument_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        run_sim(["--fund", "ZAR=lots"])
    assert info.value.code == 2


async def test_serve_forever_signals_ready_and_stops_on_cancel() -> None:
    ready = asyncio.Event()
    task = asyncio.create_task(serve_forever(0, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
