"""Issue 13's observations 1, 2, 6 and 7 through real parts: a real daemon (in process, and as
a process for restarts), the simulator over real HTTP and WebSocket, fills injected at the
simulator (``heliosd.sim.inject``) as a hand trade on VALR's website would arrive.

The simulator's market maker quotes 5 bps either side of the mid, rounded away from it to the
1 ZAR tick: a mid of 1,200,000 gives a best ask of 1,200,600.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from heliosd.core.types import Fill, Mode, Side, utcnow
from heliosd.risk.exposure import MARKET_BUY_MARGIN
from heliosd.testing import (
    SIM_ACCOUNT,
    RunningDaemon,
    SimHandle,
    eventually,
    go_live,
    start_daemon,
    wait_for,
    write_config,
)

NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants one; never delivered to
MID = Decimal(1200000)
ASK = Decimal(1200600)
D = Decimal


def order(side: str, quantity: str, kind: str = "MARKET", **extra: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": side, "type": kind, "quantity": quantity,
            "reason": "issue 13", **extra}  # fmt: skip


async def live_daemon(sim: SimHandle, short_dir: Path) -> RunningDaemon:
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    sim.sim.set_price("BTCZAR", MID)
    await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) == ASK)
    await wait_for(lambda: running.service.ledgers[Mode.LIVE].equity() == D(100000))
    await go_live(running.request, reason="issue 13")
    return running


def verdict(order_json: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [v for v in order_json["verdicts"] if v["rule"] == rule]
    return found


async def test_five_resting_buys_of_15_percent_are_not_all_accepted_uncapped(
    sim: SimHandle, short_dir: Path
) -> None:
    """Observation 1: each of five LIMIT BUYs resting below the market is ~16% of equity
    (valued at the ask it would pay at most). Before, all five were accepted uncapped (82%
    pending); now the open ones count: 16% + a cap to the 20% left, then no room."""
    running = await live_daemon(sim, short_dir)
    try:
        answers = []
        for _ in range(5):
            body = order("BUY", "0.0136", "LIMIT", price="1100000")  # 0.0136 x ask = 16,328
            answers.append(await running.request("POST", "/api/orders", body))
        statuses = [status for status, _ in answers]
        assert statuses == [201, 201, 422, 422, 422], answers
        first, second = (answers[0][1]["order"], answers[1][1]["order"])
        assert first["quantity"] == "0.0136"
        assert verdict(second, "position_limit")["action"] == "cap"
        # 20,000 - 16,328.16 = 3,671.84 ZAR left at the ask: 0.00305833 BTC (rounded down).
        assert D(second["quantity"]) == D("0.00305833")
        reason = verdict(second, "position_limit")["reason"]
        assert "held 0.00 + pending buys 16328.16 + this order 16328.16" in reason, reason
        refused = answers[2][1]
        assert refused["error"] == "risk_rejected"
        assert "no room left" in refused["message"], refused
        # What VALR holds is what the limit allowed, and no more than 20% of equity.
        resting = sim.sim.open_orders(sim.account)
        assert len(resting) == 2
        reserved = sum(D(o["originalQuantity"]) for o in resting) * ASK
        assert reserved <= D(20000)
        status, risk = await running.request("GET", "/api/risk")
        assert status == 200
        assert risk["pending"]["BTC"]["orders"] == 2
        assert D("19.99") <= D(risk["limits"]["max_position_pct"]["use"]) <= D("20.00")
    finally:
        await running.stop()


async def test_market_buys_sent_before_the_balance_update_count(
    sim: SimHandle, short_dir: Path
) -> None:
    """Observation 1, second half: with VALR's account stream silent (no fill, no balance
    update yet), a filled 15% market BUY still counts; a second one is capped to the 5%
    left. Once the stream is back, the fill and the balance take the reservation's place."""
    running = await live_daemon(sim, short_dir)
    try:
        sim.sim.faults.pause_account_stream = True
        status, body = await running.request("POST", "/api/orders", order("BUY", "0.0125"))
        assert status == 201, body
        assert body["order"]["state"] == "filled"  # VALR's status lookup says so
        assert "BTC" not in running.service.ledgers[Mode.LIVE].balances()  # no word yet

        status, body = await running.request("POST", "/api/orders", order("BUY", "0.0125"))
        assert status == 201, body
        capped = body["order"]
        cap = verdict(capped, "position_limit")
        assert cap["action"] == "cap", cap
        # Reserved at the ask plus the margin: 0.0125 x 1,200,600 x 1.02 = 15,307.65 ZAR.
        pending_value = D("0.0125") * ASK * (1 + MARKET_BUY_MARGIN)
        assert cap["details"]["pending_buys"] == f"{pending_value:.2f}"
        assert D(capped["quantity"]) == ((D(20000) - pending_value) / ASK).quantize(
            D("1e-8"), "ROUND_DOWN"
        )
        live = running.service.accounts[Mode.LIVE].snapshot()
        assert live.holdings.get("BTC") is None  # the venue still has not said a word
        assert live.pending["BTC"].buy_quantity == D("0.0125") + D(capped["quantity"])

        sim.sim.faults.pause_account_stream = False
        sim.sim.drop_ws_connections()  # reconnect: balances and missed fills come back

        def settled() -> bool:
            snap = running.service.accounts[Mode.LIVE].snapshot()
            held = snap.holdings.get("BTC")
            return not snap.pending and held is not None and held.total > D("0.015")

        await wait_for(settled, timeout=20)
        # Held now, not pending: the cap still counts it (room only for the fee's worth
        # the two buys left under 20%).
        status, body = await running.request("POST", "/api/orders", order("BUY", "0.0125"))
        assert status == 201, body
        cap = verdict(body["order"], "position_limit")
        assert cap["action"] == "cap" and cap["details"]["pending_buys"] == "0.00", cap
        assert D(body["order"]["quantity"]) < D("0.0005")
    finally:
        sim.sim.faults.pause_account_stream = False
        await running.stop()


async def test_a_sell_of_btc_with_none_held_is_rejected_not_sent_as_a_short(
    sim: SimHandle, short_dir: Path
) -> None:
    """Observation 2: before, the SELL was capped to a 20% short and sent (VALR refused it:
    Insufficient Balance). Now it is refused here and never reaches VALR."""
    running = await live_daemon(sim, short_dir)
    try:
        status, body = await running.request("POST", "/api/orders", order("SELL", "0.01"))
        assert status == 422, body
        assert body["error"] == "risk_rejected"
        assert "no spot shorts" in body["message"]
        assert "exceeds the free 0 BTC" in body["message"]
        assert sim.sim.orders_received(sim.account) == []
        # Holding some: a bigger SELL is capped to what is held, not below zero.
        status, body = await running.request("POST", "/api/orders", order("BUY", "0.005"))
        assert status == 201, body
        held = D(0)

        def bought() -> bool:
            nonlocal held
            h = running.service.accounts[Mode.LIVE].snapshot().holdings.get("BTC")
            held = h.total if h is not None else D(0)
            return held > 0 and not h.unsettled  # type: ignore[union-attr]

        await wait_for(bought)
        status, body = await running.request("POST", "/api/orders", order("SELL", "1"))
        assert status == 201, body
        assert D(body["order"]["quantity"]) == held
        await wait_for(lambda: sim.sim.balances(sim.account)["BTC"] == (D(0), D(0)))
    finally:
        await running.stop()


@pytest_asyncio.fixture
async def usdc_sim() -> AsyncIterator[SimHandle]:
    """A simulator that also lists BTCUSDC (a pair heliosd's config does not trade), with
    ZAR and USDC in the account."""
    from heliosd.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=1, price_interval_s=None,
                              pairs=("BTCZAR", "ETHZAR", "BTCUSDC")))  # fmt: skip
    await sim.start(host="127.0.0.1", port=0)
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sim.add_account(SIM_ACCOUNT)
    sim.add_api_key(key, secret, permissions=("View access", "Trade"), account_id=SIM_ACCOUNT)
    sim.fund(SIM_ACCOUNT, "ZAR", D(100000))
    sim.fund(SIM_ACCOUNT, "USDC", D(1000))
    try:
        yield SimHandle(sim, key, secret)
    finally:
        await sim.stop()


@pytest.mark.timeout(120)
async def test_a_hand_trade_in_an_untraded_pair_is_applied_and_survives_a_restart(
    usdc_sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    """Observation 6: a BTCUSDC trade made on VALR's website was stored but not applied, and
    the restarted daemon failed to start (``ValueError: unknown pair BTCUSDC``). Now it is
    applied at once (its currencies from the venue's full pair list), shown as external, and
    a real restart comes up ACTIVE with the same positions."""
    sim = usdc_sim
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    try:

        async def usdc_listed() -> bool:
            status, risk = await proc.arequest("GET", "/api/health")
            return status == 200 and all(s["up"] for s in risk["streams"].values())

        await eventually(usdc_listed)
        [trade_id] = await sim.sim.inject_fills(sim.account, "BTCUSDC", 1, D("0.001"))

        async def booked() -> dict[str, Any] | None:
            _, body = await proc.arequest("GET", "/api/positions")
            rows = [r for r in body["live"] if r["pair"] == "BTCUSDC"]
            return rows[0] if rows else None

        row = await eventually(booked)
        assert row["external"] is True
        assert D(row["average_cost"]) > 0
        status, health = await proc.arequest("GET", "/api/health")
        assert health["ledger_errors"] == {}
        db = config.parent / "state" / "heliosd.db"
        with sqlite3.connect(db) as conn:
            assert conn.execute(
                "SELECT pair FROM fills WHERE trade_id = ?", (trade_id,)
            ).fetchone() == ("BTCUSDC",)

        assert await proc.aterminate() == 0
        await proc.astart()  # before: ValueError: unknown pair BTCUSDC, a crash loop
        row_again = await eventually(booked)
        assert row_again["average_cost"] == row["average_cost"]
        status, health = await proc.arequest("GET", "/api/health")
        assert status == 200 and health["ledger_errors"] == {}
        with sqlite3.connect(db) as conn:
            state = conn.execute("SELECT trading_state FROM trading_mode_state").fetchone()
        assert state == ("ACTIVE",)
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            await proc.aterminate()


@pytest.mark.timeout(120)
async def test_a_stored_fill_the_ledger_cannot_read_brings_the_daemon_up_reducing(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    """Observation 6, the general case: a stored row the ledger cannot apply is reported
    (log, an urgent notification, GET /api/health) and the daemon comes up REDUCING under
    ``ledger_error`` instead of crash-looping; risk-increasing orders are refused."""
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    assert await proc.aterminate() == 0
    db = config.parent / "state" / "heliosd.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO fills(mode, trade_id, pair, side, price, quantity, fee, fee_currency,"
            " traded_at, recorded_at) VALUES ('PAPER', 'odd-1', 'X-Y', 'BUY', '1', '1', '0',"
            " 'ZAR', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
        )
    await proc.astart()
    try:
        status, health = await proc.arequest("GET", "/api/health")
        assert status == 200, health
        [error] = health["ledger_errors"]["PAPER"]
        assert error["trade_id"] == "odd-1" and error["pair"] == "X-Y"
        assert "unknown pair X-Y" in error["reason"]
        with sqlite3.connect(db) as conn:
            state = conn.execute(
                "SELECT trading_state, state_reason FROM trading_mode_state"
            ).fetchone()
            kinds = [r[0] for r in conn.execute("SELECT kind, urgent FROM outbox")]
            urgent = conn.execute(
                "SELECT urgent, body FROM outbox WHERE kind = 'integrity'"
            ).fetchone()
        assert state[0] == "REDUCING" and "ledger_error" in state[1], state
        assert "integrity" in kinds and urgent[0] == 1 and "odd-1" in urgent[1]
        status, risk = await proc.arequest("GET", "/api/risk")
        assert risk["breakers"]["ledger_error"]["tripped"] is True
        sim.sim.set_price("BTCZAR", MID)
        status, body = await proc.arequest("POST", "/api/orders", order("BUY", "0.001"))
        assert status == 422, body
        assert "breaker ledger_error is tripped" in body["message"]
        assert "not applied" in proc.logs()
    finally:
        await proc.aterminate()


async def test_positions_follow_holdings_changed_outside_heliosd(
    sim: SimHandle, short_dir: Path
) -> None:
    """Observation 7: after the coins left the account outside heliosd, the LIVE position
    showed quantity 0 with unrealized P&L tracking the mark. Now a holding of zero has none,
    and a holding cut in half counts half the book at its average cost."""
    running = await live_daemon(sim, short_dir)
    try:
        status, body = await running.request("POST", "/api/orders", order("BUY", "0.01"))
        assert status == 201, body
        ledger = running.service.ledgers[Mode.LIVE]

        def btc() -> Decimal:
            b = ledger.balances().get("BTC")
            return b.total if b is not None else D(0)

        def venue_btc() -> Decimal:
            return sum(sim.sim.balances(sim.account).get("BTC", (D(0), D(0))), D(0))

        await wait_for(lambda: btc() > 0 and btc() == venue_btc())

        async def row() -> dict[str, Any]:
            _, body = await running.request("GET", "/api/positions")
            [found] = [r for r in body["live"] if r["pair"] == "BTCZAR"]
            return found

        before = await row()
        held = D(before["quantity"])
        sim.sim.exchange.fund(sim.account, "BTC", D("-0.005"))  # withdrawn on the website
        left = held - D("0.005")
        await wait_for(lambda: btc() == left)
        sim.sim.set_price("BTCZAR", MID * 2)
        await wait_for(lambda: running.service.market.mark("BTCZAR") == MID * 2)
        half = await row()
        cost = D(before["average_cost"])
        assert D(half["quantity"]) == left
        assert D(half["average_cost"]) == cost  # the book shrank at its average cost
        assert half["realized_pnl"] == before["realized_pnl"]  # and realized nothing
        expected = left * (MID * 2 - cost)
        assert abs(D(half["unrealized_pnl"]) - expected) < D("0.0001"), (half, expected)

        sim.sim.exchange.fund(sim.account, "BTC", -left)  # the rest gone too
        await wait_for(lambda: btc() == 0)
        sim.sim.set_price("BTCZAR", MID * 3)
        await wait_for(lambda: running.service.market.mark("BTCZAR") == MID * 3)
        gone = await row()
        assert gone["quantity"] == "0" and gone["unrealized_pnl"] == "0"
        status, pnl = await running.request("GET", "/api/pnl")
        assert pnl["live"]["unrealized"] == "0"
    finally:
        await running.stop()


async def test_other_assets_held_show_as_external_holdings(sim: SimHandle, short_dir: Path) -> None:
    sim.sim.fund(sim.account, "USDC", D(250))
    running = await live_daemon(sim, short_dir)
    try:
        await wait_for(lambda: "USDC" in running.service.accounts[Mode.LIVE].snapshot().holdings)
        _, body = await running.request("GET", "/api/positions")
        [usdc] = [r for r in body["live"] if r["asset"] == "USDC"]
        assert usdc["external"] is True and usdc["quantity"] == "250"
        assert usdc["pair"] is None
    finally:
        await running.stop()


async def test_a_fill_the_ledger_cannot_read_at_runtime_trips_ledger_error(
    sim: SimHandle, short_dir: Path
) -> None:
    """At runtime too: the fill is stored (the venue's fact), reported and trips
    ``ledger_error``; the other fills keep being applied. (The simulator trades only real
    pairs, so the fill enters where the account stream delivers it: the venue sink.)"""
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    try:
        sink = running.service.sinks[Mode.LIVE]
        await sink.on_fill(Fill("odd-2", "X-Y", Side.BUY, D(1), D(1), D(0), "ZAR", utcnow()))
        await sink.drain()
        await wait_for(lambda: running.service.breakers.is_tripped("ledger_error"))
        status, health = await running.request("GET", "/api/health")
        assert status == 200, health
        [error] = health["ledger_errors"]["LIVE"]
        assert error["trade_id"] == "odd-2"
        # A second one is listed and logged; the breaker and its notification stand once.
        await sink.on_fill(Fill("odd-3", "X-Y", Side.BUY, D(1), D(1), D(0), "ZAR", utcnow()))
        await sink.drain()
        _, health = await running.request("GET", "/api/health")
        assert [e["trade_id"] for e in health["ledger_errors"]["LIVE"]] == ["odd-2", "odd-3"]
        db = running.service.settings.daemon.db_path
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT pair FROM fills WHERE trade_id = 'odd-2'").fetchone()
            state = conn.execute("SELECT trading_state FROM trading_mode_state").fetchone()
            alerts = conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'integrity'")
            assert alerts.fetchone() == (1,)
        assert state == ("REDUCING",)
    finally:
        await running.stop()


async def test_buys_submitted_together_are_not_all_accepted_uncapped(
    sim: SimHandle, short_dir: Path
) -> None:
    """Observation 1 with the five BUYs sent at once (a strategy's batch, two operators)."""
    running = await live_daemon(sim, short_dir)
    try:
        body = order("BUY", "0.0136", "LIMIT", price="1100000")  # ~16% of equity each
        answers = await asyncio.gather(
            *(running.request("POST", "/api/orders", body) for _ in range(5))
        )
        placed = [D(a["order"]["quantity"]) for status, a in answers if status == 201]
        assert sum(placed) * ASK <= D(20000), answers
    finally:
        await running.stop()


async def test_a_sell_is_capped_to_what_orders_heliosd_does_not_know_left_free(
    sim: SimHandle, short_dir: Path
) -> None:
    """0.01 BTC held; a SELL of 0.004 rests at VALR, placed with another key of the account
    (as on VALR's site), so VALR reserves 0.004 that heliosd has no order for. A SELL of all
    0.01 through heliosd is capped to the 0.006 VALR leaves free, not sent whole to fail at
    VALR; the reason names the venue's reservation."""
    from heliosd.builtin.valr.rest import ValrRest
    from heliosd.core.config import Secret

    running = await live_daemon(sim, short_dir)
    try:
        sim.sim.fund(sim.account, "BTC", D("0.01"))  # arrives after the switch (its gates)
        key, secret = sim.add_key("operator", ("View access", "Trade"))
        rest = ValrRest(sim.sim.rest_url, api_key=Secret(key), api_secret=Secret(secret))
        try:
            await rest.request("POST", "/v1/orders/limit", body={
                "side": "SELL", "quantity": "0.004", "price": "2000000", "pair": "BTCZAR",
            })  # fmt: skip
        finally:
            await rest.close()

        def reserved_shown() -> bool:
            h = running.service.accounts[Mode.LIVE].snapshot().holdings.get("BTC")
            return h is not None and h.total == D("0.01") and h.available == D("0.006")

        await wait_for(reserved_shown)
        status, body = await running.request("POST", "/api/orders", order("SELL", "0.01"))
        assert status == 201, body
        assert D(body["order"]["quantity"]) == D("0.006"), body
        cap = verdict(body["order"], "position_limit")
        assert "reserved at the venue 0.004" in cap["reason"], cap
    finally:
        await running.stop()
