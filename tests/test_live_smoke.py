"""heliosctl live-smoke (the operator plan's Phase 5) against a real daemon and the simulator.

The daemon runs in-process (its simulator shares the test's event loop), heliosctl runs in a
worker thread exactly as the console script would, over the real Unix socket. Notifications
go to a real HTTP receiver on loopback, so "sent" means received.
"""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.control import ctl
from heliosd.control.smoke_quantity import minimum_quantity
from heliosd.core.types import Side
from heliosd.testing import (
    NotifyReceiver,
    ReceivedPost,
    RunningDaemon,
    SimHandle,
    start_daemon,
    start_sim,
    write_config,
)
from heliosd.testing import go_live as switch_live


async def heliosctl(running: RunningDaemon, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--socket", str(running.socket), *args]
    # stdin is not a terminal here, as under a script: confirmation needs --yes.
    code = await asyncio.to_thread(ctl.main, argv, stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def go_live(running: RunningDaemon) -> None:
    market = running.service.market
    for _ in range(200):
        if market.price_for("BTCZAR", Side.BUY) is not None:
            break
        await asyncio.sleep(0.05)
    await switch_live(running.request)


def lines_with(text: str, status: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(status)]


async def test_funded_account_passes_every_check(
    sim: SimHandle, short_dir: Path, notify_receiver: NotifyReceiver
) -> None:
    running = await start_daemon(
        write_config(short_dir, sim, notify_url=notify_receiver.url("/notify"))
    )
    try:
        await go_live(running)
        code, out, err = await heliosctl(
            running, "live-smoke", "btczar", "--yes", "--timeout", "10"
        )  # no --quantity: the pair's minimum comes from the daemon's /api/risk
        assert code == 0, out + err
        assert "VALR's trade history lists trade" in out
        passed = lines_with(out, "PASSED")
        names = [line.split(":", 1)[0].split(None, 1)[1] for line in passed]
        assert names == [
            "order placed",
            "risk limits",
            "filled on VALR",
            "database",
            "ledger",
            "P&L",
            "notification",
        ], out
        assert "FAILED" not in out
        assert "all 7 checks PASSED" in out

        # Exactly one real order reached the venue, the minimum asked for, as a market buy.
        received = sim.sim.orders_received(sim.account)
        assert len(received) == 1
        assert received[0]["accepted"] is True
        assert received[0]["route"].endswith("/orders/market")
        assert Decimal(received[0]["body"]["baseAmount"]) == Decimal("0.0001")
        assert received[0]["body"]["side"] == "BUY"

        status, body = await running.request("GET", "/api/orders")
        assert status == 200
        (order,) = body["orders"]
        assert order["mode"] == "LIVE" and order["state"] == "filled"
        # And it is in VALR's own trade history, under the order the daemon recorded.
        trades = [
            t for t in sim.sim.trades(sim.account) if t["orderId"] == order["exchange_order_id"]
        ]
        assert trades, sim.sim.trades(sim.account)
        assert sum(Decimal(t["quantity"]) for t in trades) == Decimal(order["filled_quantity"])
        assert order["reason"].startswith("live-smoke")

        # "Sent" means received by the notification endpoint, not only queued.
        def names_the_order(posts: list[ReceivedPost]) -> bool:
            return any(str(order["id"]) in json.dumps(p.json) for p in posts)

        posts = await notify_receiver.wait_for(names_the_order, timeout=5)
        assert names_the_order(posts), posts
    finally:
        await running.stop()


async def test_json_output_for_scripts(
    sim: SimHandle, short_dir: Path, notify_receiver: NotifyReceiver
) -> None:
    running = await start_daemon(
        write_config(short_dir, sim, notify_url=notify_receiver.url("/notify"))
    )
    try:
        await go_live(running)
        code, out, err = await heliosctl(
            running, "live-smoke", "BTCZAR", "--yes", "--quantity", "0.0002", "--json"
        )
        assert code == 0, out + err
        result = json.loads(out)
        assert result["ok"] is True
        assert result["quantity"] == "0.0002"
        assert [c["status"] for c in result["checks"]] == ["PASSED"] * 7
        assert result["order"]["state"] == "filled"
    finally:
        await running.stop()


async def test_zero_balance_fails_with_valr_insufficient_balance(
    short_dir: Path, notify_receiver: NotifyReceiver
) -> None:
    handle = await start_sim(funded=None)  # credentials work, no money on the account
    try:
        running = await start_daemon(
            write_config(short_dir, handle, notify_url=notify_receiver.url("/notify"))
        )
        try:
            await go_live(running)
            code, out, err = await heliosctl(
                running, "live-smoke", "BTCZAR", "--yes", "--quantity", "0.0001", "--timeout", "5"
            )
            assert code == 1, out + err
            (failed,) = lines_with(out, "FAILED")
            assert failed.startswith("FAILED   order placed:")
            assert "Insufficient Balance" in failed
            assert len(lines_with(out, "SKIPPED")) == 5  # all but the risk verdicts
            assert lines_with(out, "PASSED")[0].startswith("PASSED   risk limits")
            assert "1 FAILED, 5 SKIPPED of 7 checks" in out
            # The refused order is on record, with VALR's reason.
            status, body = await running.request("GET", "/api/orders")
            assert status == 200
            (order,) = body["orders"]
            assert order["state"] == "failed"
            assert "Insufficient Balance" in order["failed_reason"]
        finally:
            await running.stop()
    finally:
        await handle.sim.stop()


async def test_refusals_place_nothing(
    sim: SimHandle, short_dir: Path, notify_receiver: NotifyReceiver
) -> None:
    running = await start_daemon(
        write_config(short_dir, sim, notify_url=notify_receiver.url("/notify"))
    )
    try:
        code, _, err = await heliosctl(running, "live-smoke", "BTCZAR", "--yes", "--quantity", "1")
        assert code == 1
        assert "in PAPER mode" in err and "heliosctl mode live" in err

        await go_live(running)
        # No terminal and no --yes: a real-money order is never placed by accident.
        code, _, err = await heliosctl(running, "live-smoke", "BTCZAR", "--quantity", "0.0001")
        assert code == 1
        assert "pass --yes" in err

        code, _, err = await heliosctl(running, "live-smoke", "BTCZAR", "--quantity", "abc")
        assert code == 2

        status, risk = await running.request("GET", "/api/risk")
        code, out, err = await heliosctl(running, "live-smoke", "BTCZAR")
        if "pairs" not in risk:
            # The daemon does not publish pair limits (yet): the operator must say the size.
            assert code == 1
            assert "pass --quantity" in err
        else:  # pragma: no cover - once the daemon publishes them, the minimum is used
            assert "the pair's minimum" in out

        status, body = await running.request("POST", "/api/trading/emergency-stop", {})
        assert status == 200
        status, _ = await running.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        assert status == 409  # a latched stop refuses LIVE too
        code, _, err = await heliosctl(running, "live-smoke", "BTCZAR", "--yes", "--quantity", "1")
        assert code == 1
        assert "PAPER" in err  # the stop switched to PAPER and latched

        assert sim.sim.orders_received(sim.account) == []
        status, body = await running.request("GET", "/api/orders")
        assert body["orders"] == []
    finally:
        await running.stop()


async def test_daemon_not_running(short_dir: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = ctl.main(
        ["--socket", str(short_dir / "none.sock"), "live-smoke", "BTCZAR", "--yes"],
        stdout=out,
        stderr=err,
    )
    assert code == ctl.EXIT_NOT_RUNNING
    assert "not running" in err.getvalue()


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # min_base binds: 0.0001 BTC at R1,000,000 is R100, well over R10.
        ({"min_base": "0.0001", "min_quote": "10", "base_decimals": 8, "ask": "1000000"},
         Decimal("0.0001")),
        # min_quote binds: R10 x 1.02 / R50,000 = 0.000204, rounded up to 4 decimals.
        ({"min_base": "0.0001", "min_quote": "10", "base_decimals": 4, "ask": "50000"},
         Decimal("0.0003")),
        # No ask: the mark prices it.
        ({"min_base": "0.001", "min_quote": "10", "base_decimals": 8, "mark": "5000"},
         Decimal("0.00204")),
        # No price at all: only min_base is known.
        ({"min_base": "0.0002", "min_quote": "10", "base_decimals": 8}, Decimal("0.0002")),
    ],
)  # fmt: skip
def test_minimum_quantity(limits: dict[str, Any], expected: Decimal) -> None:
    assert minimum_quantity(limits) == expected


def test_minimum_quantity_needs_min_base() -> None:
    with pytest.raises(ValueError, match="min_base"):
        minimum_quantity({"min_quote": "10"})
