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


async def test_fault_flags_and_runtime_changes_over_http() -> None:
    """A simulator *process* started with fault flags, then steered over its admin route,
    as a test driving a daemon process does."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.sim", "--port", "0", "--price-interval", "0",
        "--read-only", "--retry-after", "4", "--delay", "/v1/orders/open=0.01",
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        banner = ""
        while "api secret" not in banner:
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, banner
            banner += line.decode()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert url is not None, banner
        base = url.group(1)
        async with aiohttp.ClientSession() as session, session.get(base + "/sim/faults") as r:
            state = await r.json()
            assert state["read_only"] is True and state["retry_after_s"] == 4
            assert state["route_delays"] == [
                {"prefix": "/v1/orders/open", "delay_s": 0.01, "method": None, "after": False}
            ]
            async with session.get(base + "/v1/public/status") as resp:
                assert (await resp.json())["status"] == "read-only"
            async with session.post(base + "/sim/faults", json={"read_only": False}) as resp:
                assert resp.status == 200
            async with session.get(base + "/v1/public/status") as resp:
                assert (await resp.json())["status"] == "online"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--delay", "v1=1"],
        ["--delay", "/v1=soon"],
        ["--http-429-rate", "2"],
        ["--maker-rebate-bps", "101"],
        ["--maker-rebate-bps", "-1"],
        ["--maker-rebate-bps", "0.5"],
        ["--maker-reward-shape", "gift"],
    ],
)
def test_bad_fault_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_sim(argv)
    assert exit_.value.code == 2


async def test_heliosd_sim_is_the_same_code_path_key_faults_and_all() -> None:
    """``heliosd sim`` (what ``make sim`` runs) as a real process: it provisions and prints
    the funded key exactly as ``python -m heliosd.sim`` does and takes the same fault flags;
    the real VALR client logs in with the printed key through a drifted, bare-401 clock."""
    from heliosd.builtin.valr.client import ValrClient
    from heliosd.testing.contract import fast_valr_tuning, valr_settings

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.runtime.cli", "sim", "--port", "0", "--price-interval", "0",
        "--seed", "3", "--fund", "ZAR=250", "--clock-offset-ms", "90000",
        "--stale-timestamp-plain", "--view-lag", "2", "--v1-cancel-status", "200",
        "--drop-account-message", "NEW_ACCOUNT_TRADE=1", "--maker-rebate-bps", "4",
        "--maker-reward-shape", "both",
        "--drop-account-message", "NEW_ACCOUNT_TRADE=1", "--no-trade-authenticated",
        "--no-account-authenticated",
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
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
        assert f"api key    {key}" in banner and f"api secret {secret}" in banner
        base = url.group(1)
        async with aiohttp.ClientSession() as session, session.get(base + "/sim/faults") as r:
            state = await r.json()
        assert state["clock_offset_ms"] == 90000 and state["stale_timestamp_plain"] is True
        assert state["view_lag_s"] == 2 and state["v1_cancel_status"] == 200
        assert state["drop_account_messages"] == {"NEW_ACCOUNT_TRADE": 1}
        assert (state["maker_rebate_bps"], state["maker_reward_shape"]) == (4, "both")
        assert state["no_trade_authenticated"] is state["no_account_authenticated"] is True
        settings = valr_settings(base, base.replace("http", "ws"), key, secret)
        client = ValrClient(settings, tuning=fast_valr_tuning())
        try:
            rows = await client.balances()  # measures VALR's (90 s ahead) clock first
        finally:
            await client.close()
        assert [(b.currency, b.available) for b in rows] == [("ZAR", Decimal(250))]
        assert abs((client.clock_skew_ms or 0) - 90_000) < 1_000
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
