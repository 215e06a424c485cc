"""Fill completeness (heliosd.trading.fillcheck): an order VALR reports filled whose fill
notice was lost is completed from VALR's trade history, once, with the ledger right.

Through real parts: the simulator over HTTP and WebSocket (its ``drop_account_messages``
fault loses the next NEW_ACCOUNT_TRADE; ``redeliver_dropped`` sends it late), the real VALR
client, a real SQLite store and VenueSink; and a real daemon (in process) answering
``GET /api/health`` with ``fill_gaps_closed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from heliosd import store as st
from heliosd.builtin.valr.client import ValrClient
from heliosd.core.types import (
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PairInfo,
    PlaceRequest,
    Side,
)
from heliosd.notify import enqueue_many
from heliosd.risk.ledger import Ledger
from heliosd.store import Store
from heliosd.testing import SimHandle, eventually, go_live, start_daemon, wait_for, write_config
from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    fast_valr_tuning,
    funded_sim,
    valr_settings,
)
from heliosd.trading import orders as od
from heliosd.trading.fillcheck import FillCheck
from heliosd.trading.marketdata import MarketData
from heliosd.trading.sink import VenueSink

D = Decimal
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(10), D(10), D(10_000_000), D(1), 8)
MID = D(1_000_000)
HISTORY = "GET /v1/account/tradehistory"
NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants one; never delivered to


class Live:
    """A LIVE VenueSink over a real store and ledger, fed by a real ValrClient's streams,
    with a FillCheck on it (attached only when asked: then the periodic pass is the one
    path that can close a gap)."""

    def __init__(self, store: Store, client: ValrClient, *, attach: bool) -> None:
        market = MarketData({"BTCZAR": BTCZAR})
        self.store, self.client = store, client
        self.counters = od.OrderCounters()
        self.ledger = Ledger(Mode.LIVE, "ZAR", ZoneInfo("UTC"), {"BTCZAR": BTCZAR}, market)
        self.sink = VenueSink(
            mode=Mode.LIVE, store=store, ledger=self.ledger, market=market,
            counters=self.counters, client=lambda: client, enqueue=enqueue_many,
            notify_trades=False, publish=lambda e: None, on_ledger_change=lambda m: None,
            on_connection_change=lambda *a: None,
        )  # fmt: skip
        self.check = FillCheck(sink=self.sink, store=store, client=lambda: client, settle_s=0.2)
        if attach:
            self.check.attach()

    async def buy(self, cid: str, qty: str = "0.001") -> dict[str, Any]:
        """Store a MARKET BUY as heliosd would (``sent``), then place it at VALR."""
        intent = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, D(qty))
        new = od.NewOrder(Mode.LIVE, intent, D(qty), (), "test", OrderState.SENT, cid)
        row = await self.store.write(lambda c: od.insert_order(c, new))
        await self.client.place(PlaceRequest(cid, "BTCZAR", Side.BUY, OrderType.MARKET, D(qty)))
        return row

    async def row(self, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda c: od.get_order_row(c, order_id))

    async def fills(self) -> list[Any]:
        return await self.store.read(lambda c: st.load_fills(c, Mode.LIVE))


@asynccontextmanager
async def live_on_sim(tmp_path: Path, *, page: int, attach: bool) -> AsyncIterator[Any]:
    async with funded_sim(D(100_000)) as sim:
        sim.set_price("BTCZAR", MID)
        store = await Store.open(tmp_path / "h.db")
        client = ValrClient(
            valr_settings(sim.rest_url, sim.ws_url, SIM_KEY, SIM_SECRET),
            tuning=fast_valr_tuning(history_page_size=page),
        )
        live = Live(store, client, attach=attach)
        try:
            await client.start(live.sink)
            await wait_for(lambda: live.sink.streams.get("account", (False,))[0] is True)
            yield sim, live
        finally:
            await live.check.close()
            await client.close()
            await store.close()


def sim_btc(sim: Any) -> Decimal:
    available, reserved = sim.balances("0")["BTC"]
    return D(available) + D(reserved)


def trade_fees_in_zar(sim: Any) -> Decimal:
    """The taker fees of every trade (in BTC) at their trade's price: the ledger's fees."""
    return sum((D(t["fee"]) * D(t["price"]) for t in sim.trades("0")), D(0))


async def test_a_gap_deeper_than_one_history_page_is_closed_by_the_periodic_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first of six buys loses its NEW_ACCOUNT_TRADE; its status says filled. With two
    trades a history page, its trade is on the third page back: the pass pages on until it
    has it, stores it once, and the ledger's fees and holding are VALR's. Delivered late by
    the stream afterwards, the same trade changes nothing."""
    caplog.set_level(logging.WARNING, logger="heliosd.trading.fillcheck")
    async with live_on_sim(tmp_path, page=2, attach=False) as (sim, live):
        sim.drop_account_messages("NEW_ACCOUNT_TRADE")
        first = await live.buy("hd-gap-0")
        rows = [first] + [await live.buy(f"hd-gap-{i}") for i in range(1, 6)]

        async def settled() -> bool:
            done = [await live.row(r["id"]) for r in rows]
            return all(r["state"] == "filled" for r in done) and len(await live.fills()) == 5

        await eventually(settled)
        gapped = await live.row(first["id"])
        # A market BUY's quantity is what is credited after the fee: VALR trades a bit more.
        (lost,) = [t for t in sim.trades("0") if t["orderId"] == gapped["exchange_order_id"]]
        gross = D(lost["quantity"])
        assert D(gapped["filled_quantity"]) == gross  # from VALR's status alone
        assert sim.fault_state()["dropped_account_messages"] == {"NEW_ACCOUNT_TRADE": 1}
        assert live.check.gaps_closed == 0

        pages_before = sim.request_counts().get(HISTORY, 0)
        runner = asyncio.get_running_loop().create_task(live.check.run(0.3))
        try:
            await wait_for(lambda: live.check.gaps_closed == 1)
            # Page 3 holds the trade; it was full, so a 4th (empty) one ended the fetch.
            assert sim.request_counts().get(HISTORY, 0) - pages_before >= 3
            fills = await live.fills()
            assert sorted(f.trade_id for f in fills) == sorted(t["id"] for t in sim.trades("0"))
            (recovered,) = [f for f in fills if f.exchange_order_id == gapped["exchange_order_id"]]
            assert recovered.trade_id == lost["id"]
            assert recovered.quantity == gross
            closed = await live.row(first["id"])
            assert closed["state"] == "filled"
            assert D(closed["filled_quantity"]) == gross
            assert D(closed["average_price"]) == recovered.price
            # The ledger: VALR's holding, every trade's fee, nothing counted twice.
            assert live.ledger.fees_paid() == trade_fees_in_zar(sim)
            assert live.ledger.unsettled() == {}
            assert live.ledger.position("BTCZAR") == sim_btc(sim)
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(
                m.startswith(f"fill gap closed: order {first['id']} (hd-gap-0, BTCZAR")
                and f"filled {gross} at VALR but its stored fills summed to 0;" in m
                for m in warned
            ), warned

            # The stream's own message, late: exactly once by trade id.
            applied, fees = live.sink.fills_applied, live.ledger.fees_paid()
            assert sim.redeliver_dropped() == 1
            await live.buy("hd-after")  # its fill comes behind the late one on the socket
            await eventually(lambda: _count(live, 7))
            await live.sink.drain()
            assert live.sink.fills_applied == applied + 1  # only hd-after's fill
            assert live.sink._fill_marks == {}  # the replay's report mark was not kept
            assert live.ledger.fees_paid() == trade_fees_in_zar(sim) > fees
            assert live.ledger.position("BTCZAR") == sim_btc(sim)
            assert await live.check.check() == 0  # another pass now: nothing more to close
            assert live.check.gaps_closed == 1
        finally:
            runner.cancel()


async def _count(live: Live, n: int) -> bool:
    return len(await live.fills()) == n


async def test_a_terminal_status_triggers_the_check_without_the_periodic_pass(
    tmp_path: Path,
) -> None:
    """Attached to the sink, the check runs ``settle_s`` after an order ends: no periodic
    pass runs here at all. Two orders lose their fill notice, the second ending while the
    first one's check waits or runs: both are closed."""
    async with live_on_sim(tmp_path, page=100, attach=True) as (sim, live):
        sim.drop_account_messages("NEW_ACCOUNT_TRADE", 2)
        row = await live.buy("hd-terminal")
        await asyncio.sleep(0.15)
        other = await live.buy("hd-terminal-2")
        await wait_for(lambda: live.check.gaps_closed == 2)
        fills = await live.fills()
        assert sorted(f.trade_id for f in fills) == sorted(t["id"] for t in sim.trades("0"))
        for order in (row, other):
            now = await live.row(order["id"])
            (fill,) = [f for f in fills if f.exchange_order_id == now["exchange_order_id"]]
            assert D(now["filled_quantity"]) == fill.quantity > 0
        assert live.ledger.unsettled() == {}
        assert live.ledger.position("BTCZAR") == sim_btc(sim)


async def test_no_gap_no_history_read(tmp_path: Path) -> None:
    """Fills that all arrived: a pass reads the store only, never VALR's history."""
    async with live_on_sim(tmp_path, page=100, attach=True) as (sim, live):
        for i in range(3):
            await live.buy(f"hd-whole-{i}")
        await eventually(lambda: _count(live, 3))
        before = sim.request_counts().get(HISTORY, 0)
        assert await live.check.check() == 0
        await asyncio.sleep(0.4)  # the terminal-state checks have run too
        assert sim.request_counts().get(HISTORY, 0) == before
        assert live.check.gaps_closed == 0


async def test_the_daemon_closes_a_dropped_fill_and_counts_it_in_health(
    sim: SimHandle, short_dir: Path
) -> None:
    """The real daemon, LIVE on the simulator: a MARKET BUY whose NEW_ACCOUNT_TRADE is lost
    reaches ``filled`` by VALR's status; the fill check fetches its fill (once), and
    ``GET /api/health`` says ``fill_gaps_closed: 1``. The late stream message adds nothing."""
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    try:
        sim.sim.set_price("BTCZAR", D(1_200_000))
        ledger = running.service.ledgers[Mode.LIVE]
        await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
        await wait_for(lambda: ledger.equity() == D(100000))
        await go_live(running.request, reason="fill check")
        status, health = await running.request("GET", "/api/health")
        assert status == 200 and health["fill_gaps_closed"] == 0, health

        sim.sim.drop_account_messages("NEW_ACCOUNT_TRADE")
        body = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                "reason": "fill check"}  # fmt: skip
        status, answer = await running.request("POST", "/api/orders", body)
        assert status == 201, answer
        order_id = answer["order"]["id"]

        async def closed() -> Any:
            _, health = await running.request("GET", "/api/health")
            return health["fill_gaps_closed"] == 1

        await eventually(closed)
        (trade,) = sim.sim.trades(sim.account)
        status, fills = await running.request("GET", f"/api/orders/{order_id}/fills")
        assert status == 200
        assert [(f["trade_id"], f["quantity"], f["fee"]) for f in fills["fills"]] == [
            (trade["id"], trade["quantity"], trade["fee"])
        ]
        assert fills["fills"][0]["in_venue_history"] is True
        assert ledger.fees_paid() == D(trade["fee"]) * D(trade["price"])
        assert ledger.unsettled() == {}
        assert ledger.position("BTCZAR") == sim_btc(sim.sim)

        sink = running.service.sinks[Mode.LIVE]
        applied = sink.fills_applied
        assert sim.sim.redeliver_dropped() == 1
        status, answer = await running.request("POST", "/api/orders", body)
        assert status == 201, answer
        await wait_for(lambda: sink.fills_applied == applied + 1)
        await sink.drain()
        await asyncio.sleep(0.3)
        assert sink.fills_applied == applied + 1  # the late message was a no-op
        _, fills = await running.request("GET", f"/api/orders/{order_id}/fills")
        assert len(fills["fills"]) == 1
        assert ledger.fees_paid() == trade_fees_in_zar(sim.sim)
        assert ledger.position("BTCZAR") == sim_btc(sim.sim)
        _, health = await running.request("GET", "/api/health")
        assert health["fill_gaps_closed"] == 1
    finally:
        await running.stop()
