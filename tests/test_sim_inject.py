"""Bulk fill injection: real trades, exact balances, byte-identical events, and speed."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from heliosd.sim import SimConfig, Simulator, wire
from heliosd.sim.probe import drain, probed_simulator, recv_json


async def test_counts_balances_and_history() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("3000000"))
        n = 20_000
        ids = await sim.inject_fills("0", "BTCZAR", n)
        assert len(ids) == len(set(ids)) == n
        trades = sim.trades("0")
        assert len(trades) == n
        assert [t["id"] for t in trades[:3]] == ids[::-1][:3]
        ask = Decimal("1000500")
        fee = Decimal("0.0000001")  # 0.1 % of 0.0001 BTC, taken in BTC
        zar, btc = sim.balances("0")["ZAR"], sim.balances("0")["BTC"]
        assert zar == (Decimal("3000000") - n * Decimal("0.0001") * ask, 0)
        assert btc == (n * (Decimal("0.0001") - fee), 0)
        order = (await probe.get(f"/v1/orders/BTCZAR/orderid/{trades[0]['orderId']}")).json()
        assert (order["orderStatusType"], order["orderType"]) == ("Filled", "market")
        tape = (await probe.public("/v1/public/BTCZAR/trades?limit=1")).json()
        assert tape[0]["quantity"] == "2"  # the burst, summarised on the public tape


async def test_insufficient_funds_changes_nothing() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, _):
        sim.fund("0", "ZAR", Decimal("250"))
        with pytest.raises(ValueError, match="needs"):
            await sim.inject_fills("0", "BTCZAR", 3)
        assert sim.trades("0") == []
        assert sim.balances("0")["ZAR"] == (Decimal("250"), 0)
        assert len(await sim.inject_fills("0", "BTCZAR", 2)) == 2


async def test_stream_messages_match_the_general_path_byte_for_byte() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("1000"))
        sim.fund("0", "BTC", Decimal("0.5"))
        ws = await probe.connect("account")
        await drain(ws, 0.1)
        [trade_id] = await sim.inject_fills("0", "BTCZAR", 1)
        texts = [await asyncio.wait_for(ws.recv(), 2) for _ in range(3)]
        acct = sim.exchange.account("0")
        trade = acct.trades[-1]
        assert trade.trade_id == trade_id
        assert texts[0] == wire.dumps(wire.new_account_trade(trade))
        for text, currency in zip(texts[1:], ("BTC", "ZAR"), strict=True):
            expected = wire.balance_update(
                currency, acct.balance(currency), sim.exchange.reference_price(currency)
            )
            assert text == wire.dumps(expected)
        assert json.loads(texts[1])["data"]["available"] == "0.5000999"
        await ws.close()


async def test_delivered_in_order_to_a_connected_client() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("1000000"))
        ws = await probe.connect("account")
        await drain(ws, 0.1)
        ids = await sim.inject_fills("0", "BTCZAR", 2000)
        received = []
        while len(received) < 2000:
            message = await recv_json(ws)
            if message["type"] == "NEW_ACCOUNT_TRADE":
                received.append(message["data"]["id"])
        assert received == ids
        await ws.close()


async def test_throughput_sanity() -> None:
    """Sim-side generation of 20k fills with a listener attached. The bound is loose (CI
    boxes are shared); the rate is printed for the benchmark log."""
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("10000000"))
        ws = await probe.connect("account")
        await drain(ws, 0.1)
        started = time.perf_counter()
        await sim.inject_fills("0", "BTCZAR", 20_000)
        elapsed = time.perf_counter() - started
        print(f"inject_fills: 20000 fills in {elapsed:.3f}s ({20_000 / elapsed:,.0f}/s)")
        assert elapsed < 5.0
        await ws.close()


def test_without_listeners_nothing_is_serialised() -> None:
    sim = Simulator(SimConfig(price_interval_s=None))
    sim.fund("0", "ZAR", Decimal("10000000"))
    started = time.perf_counter()
    asyncio.run(sim.inject_fills("0", "BTCZAR", 20_000))
    elapsed = time.perf_counter() - started
    print(f"inject_fills without listeners: {20_000 / elapsed:,.0f}/s")
    assert elapsed < 3.0
