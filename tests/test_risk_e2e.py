"""The seed's Phase 4 checks through POST /api/orders on a real daemon, socket and simulator.

Prices are set at the simulator; the daemon (and the paper venue, which prices from the same
feed) sees them over the real trade stream. The simulator's market maker quotes 5 bps either
side of the mid, rounded away from it to the 1 ZAR tick, so a mid of 1,200,000 gives a best
ask of 1,200,600 and a best bid of 1,199,400: every expected number below is worked out by
hand from those and the equity.
"""

from __future__ import annotations

import asyncio
import io
import logging
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.control import ctl
from heliosd.core.types import Mode, Side
from heliosd.testing import RunningDaemon, SimHandle, go_live, start_daemon, wait_for, write_config

NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants one; never delivered to
MID = Decimal(1200000)
ASK = Decimal(1200600)  # ceil(1,200,000 x 1.0005)

# 25% of 100,000 ZAR at the ask: 25,000 / 1,200,600 = 0.020822922 -> 0.02082292 BTC.
QTY_25_PCT = "0.02082292"
# 20% of 100,000 ZAR at the ask: 20,000 / 1,200,600 = 0.016658337... rounded down to the
# pair's 8 base decimals.
QTY_20_PCT = "0.01665833"
# About 4x equity: 0.3332 x 1,200,600 = 400,039.92 ZAR gross on 100,000 ZAR equity.
QTY_4X = "0.3332"
LEVERAGE_MESSAGE = (
    "Order refused by risk rules: leverage_limit: leverage 4.00x would exceed the 3x limit "
    "(gross 400039.92 ZAR, equity 100000.00 ZAR: held 0.00 + pending buys 0.00 + this order "
    "400039.92 + the rest of the account 0.00)"
)


def order(side: str, quantity: str, **extra: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": quantity,
            "reason": "phase 4 check", **extra}  # fmt: skip


async def set_price(running: RunningDaemon, sim: SimHandle, mid: Decimal) -> None:
    """Move the simulator's mid and wait until the daemon's feed shows the new ask."""
    sim.sim.set_price("BTCZAR", mid)
    ask = mid + mid * Decimal("0.0005")
    ask = ask.to_integral_value(rounding="ROUND_CEILING")
    await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) == ask)


def verdict(order_json: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [v for v in order_json["verdicts"] if v["rule"] == rule]
    return found


def assert_capped_to_20_pct(placed: dict[str, Any], mode: str) -> None:
    assert placed["mode"] == mode
    assert placed["requested_quantity"] == QTY_25_PCT
    assert Decimal(placed["quantity"]) == Decimal(QTY_20_PCT)
    cap = verdict(placed, "position_limit")
    assert cap["action"] == "cap"
    assert Decimal(cap["quantity"]) == Decimal(QTY_20_PCT)
    assert cap["details"]["requested"] == QTY_25_PCT
    assert Decimal(cap["details"]["allowed"]) == Decimal(QTY_20_PCT)
    assert Decimal(cap["details"]["equity"]) == Decimal(100000)
    assert Decimal(cap["details"]["price"]) == ASK
    assert cap["details"]["requested_pct"] == "25.00"
    assert "25.00% of equity (limit 20%)" in cap["reason"]
    # The other essential limits looked at it too and let it through.
    for rule in ("leverage_limit", "daily_loss_limit", "drawdown_limit"):
        assert verdict(placed, rule)["action"] == "accept"


def assert_4x_refused(status: int, body: dict[str, Any]) -> dict[str, Any]:
    assert status == 422, body
    assert body["error"] == "risk_rejected"
    assert body["message"] == LEVERAGE_MESSAGE
    refused = body["details"]["order"]
    assert refused["state"] == "rejected"
    rejected = verdict(refused, "leverage_limit")
    assert rejected["action"] == "reject"
    assert rejected["details"] == {"leverage": "4.00", "limit": "3", "gross": "400039.92",
                                   "equity": "100000", "held": "0.00", "pending_buys": "0.00",
                                   "order": "400039.92", "rest": "0.00"}  # fmt: skip
    return refused


async def test_paper_caps_rejects_and_lets_reducing_orders_through(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    try:
        paper = running.service.ledgers[Mode.PAPER]
        await set_price(running, sim, MID)
        assert paper.equity() == Decimal(100000)  # the default paper balance, nothing held

        status, body = await running.request("POST", "/api/orders", order("BUY", QTY_4X))
        assert_4x_refused(status, body)
        assert paper.position("BTCZAR") == 0

        status, body = await running.request("POST", "/api/orders", order("BUY", QTY_25_PCT))
        assert status == 201, body
        assert_capped_to_20_pct(body["order"], "PAPER")
        await wait_for(lambda: paper.position("BTCZAR") > 0)
        held = paper.position("BTCZAR")
        assert held <= Decimal(QTY_20_PCT)  # the fee comes off the base bought
        assert sim.sim.orders_received(sim.account) == []  # paper never reaches the venue

        # Explicit manual orders cannot add to a position already at the limit, at market
        # or as a LIMIT priced below the ask (valued at the ask all the same).
        for extra in ({}, {"type": "LIMIT", "price": "1100000"}):
            status, body = await running.request("POST", "/api/orders",
                                                 order("BUY", "0.005", **extra))  # fmt: skip
            assert status == 422, body
            assert body["error"] == "risk_rejected"
            assert "position_limit: position BTCZAR would be" in body["message"]
            assert "(limit 20%)" in body["message"]
            assert verdict(body["details"]["order"], "position_limit")["action"] == "reject"
        assert paper.position("BTCZAR") == held

        # The price doubles: the position is now far above 20% of equity.
        await set_price(running, sim, MID * 2)
        status, risk = await running.request("GET", "/api/risk")
        assert status == 200, risk
        assert risk["mode"] == "PAPER"
        assert Decimal(risk["limits"]["max_position_pct"]["use"]) > 30
        assert risk["limits"]["max_position_pct"]["limit"] == "20"
        assert risk["limits"]["max_leverage"]["limit"] == "3"
        assert risk["limits"]["daily_loss_pct"]["limit"] == "5"
        assert risk["limits"]["max_drawdown_pct"]["limit"] == "15"
        assert {name: b["tripped"] for name, b in risk["breakers"].items()} == {
            "emergency": False, "daily_loss": False, "drawdown": False,
        }  # fmt: skip
        assert risk["rules"][:4] == ["position_limit", "leverage_limit", "daily_loss_limit",
                                     "drawdown_limit"]  # fmt: skip

        # heliosctl risk prints the same figures for people.
        out = io.StringIO()
        code = await asyncio.to_thread(
            ctl.main, ["--socket", str(running.socket), "risk"], stdout=out, stderr=out
        )
        text = out.getvalue()
        assert code == 0, text
        assert "limits.max_position_pct.limit" in text
        assert risk["limits"]["max_position_pct"]["use"] in text
        assert "limits.max_drawdown_pct.use" in text
        assert "breakers.emergency.tripped" in text
        assert "breakers.daily_loss.tripped" in text

        # A reducing SELL of the whole position passes, whatever its size.
        status, body = await running.request("POST", "/api/orders", order("SELL", str(held)))
        assert status == 201, body
        sold = body["order"]
        assert Decimal(sold["quantity"]) == held
        assert verdict(sold, "position_limit") == {
            "rule": "position_limit", "action": "accept", "reason": "reduces the position",
        }  # fmt: skip
        await wait_for(lambda: paper.position("BTCZAR") == 0)
    finally:
        await running.stop()


async def test_live_caps_and_rejects_against_the_simulator_account(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    try:
        live = running.service.ledgers[Mode.LIVE]
        await set_price(running, sim, MID)
        await wait_for(lambda: live.equity() == Decimal(100000))  # the simulator's ZAR
        await go_live(running.request, reason="phase 4")

        status, body = await running.request("POST", "/api/orders", order("BUY", QTY_4X))
        refused = assert_4x_refused(status, body)
        assert refused["mode"] == "LIVE"
        assert sim.sim.orders_received(sim.account) == []  # refused before the venue

        status, body = await running.request("POST", "/api/orders", order("BUY", QTY_25_PCT))
        assert status == 201, body
        placed = body["order"]
        assert_capped_to_20_pct(placed, "LIVE")
        [received] = sim.sim.orders_received(sim.account)
        assert received["customerOrderId"] == placed["customer_order_id"]
        assert received["accepted"] is True
        assert Decimal(received["body"]["baseAmount"]) == Decimal(QTY_20_PCT)  # what VALR got
        await wait_for(lambda: live.position("BTCZAR") > 0)

        status, risk = await running.request("GET", "/api/risk")
        assert status == 200 and risk["mode"] == "LIVE"
        assert Decimal(risk["limits"]["max_position_pct"]["use"]) > 19
    finally:
        await running.stop()


EXPLODING_RULE = '''
from heliosd import hookimpl


class Exploding:
    """A rule with a bug: it raises on every order."""

    name = "exploding"

    def check(self, intent, ctx):
        raise RuntimeError("price table not loaded")


@hookimpl
def heliosd_register_risk_rules(register, config):
    register(Exploding())
'''


async def test_a_dropin_rule_that_raises_rejects_the_order(
    sim: SimHandle, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin_dir = short_dir / "plugins"
    plugin_dir.mkdir(mode=0o755)
    rule = plugin_dir / "exploding.py"
    rule.write_text(textwrap.dedent(EXPLODING_RULE))
    rule.chmod(0o644)
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    config.write_text(config.read_text().replace(
        "[daemon]\n", f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n', 1))  # fmt: skip
    caplog.set_level(logging.WARNING, logger="heliosd.trading.router")
    running = await start_daemon(config)
    try:
        await set_price(running, sim, MID)
        status, body = await running.request("POST", "/api/orders", order("BUY", "0.001"))
        assert status == 422, body
        assert body["error"] == "risk_rejected"
        assert body["message"] == (
            "Order refused by risk rules: exploding: rule exploding failed: price table not loaded"
        )
        refused = body["details"]["order"]
        assert refused["state"] == "rejected"
        assert verdict(refused, "exploding") == {
            "rule": "exploding", "action": "reject",
            "reason": "rule exploding failed: price table not loaded",
        }  # fmt: skip
        assert verdict(refused, "position_limit")["action"] == "accept"  # only the bug refused
        # The refusal is stored and listed like any order.
        status, listed = await running.request("GET", f"/api/orders/{refused['id']}")
        assert status == 200 and listed["order"]["state"] == "rejected"
        assert running.service.ledgers[Mode.PAPER].position("BTCZAR") == 0
    finally:
        await running.stop()
    # The operator sees the bug in the log, not only in the refused order.
    [record] = [r for r in caplog.records if r.name == "heliosd.trading.router"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "risk rule exploding raised RuntimeError: price table not loaded"
