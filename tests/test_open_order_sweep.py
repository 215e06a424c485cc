"""Reconciling open orders against VALR's lagging views (VenueSink.reconcile_open_orders, the
periodic pass heliosd.trading.sweep runs): an order VALR does not show yet is not failed before the
grace window (ValrTuning.not_found_grace_s) has passed, and an order failed by that inference
is revived by a later fill (a partial one too) and counts as open again, its fill counted
once. Through a real SQLite file, the real VALR client and the simulator over loopback, whose
``view_lag_s`` fault hides young orders from its read views."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from heliosd.testing import wait_for
from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    fast_valr_tuning,
    funded_sim,
    valr_on_sim,
    valr_settings,
)
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData
from heliosd.trading.sink import VenueSink

D = Decimal
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(10), D(10), D(10_000_000), D(1), 8)
MID = D(1_000_000)  # the simulator's bids sit 5 bps below: a bid at MID is the best one
SELLER_KEY, SELLER_SECRET = "c3" * 32, "d4" * 32


class Live:
    """A real VenueSink (LIVE) over a real store, whose client is a real ValrClient on the
    simulator. The client is not started until :meth:`listen`: without its account stream
    the sink learns of an order only by reconciling (as after a lost placement answer)."""

    def __init__(self, store: Store, client: ValrClient) -> None:
        market = MarketData({"BTCZAR": BTCZAR})
        self.store, self.client = store, client
        self.counters = od.OrderCounters()
        ledger = Ledger(Mode.LIVE, "ZAR", ZoneInfo("UTC"), {"BTCZAR": BTCZAR}, market,
                        starting_balances={"ZAR": D(100_000)})  # fmt: skip
        self.published: list[dict[str, Any]] = []
        self.sink = VenueSink(
            mode=Mode.LIVE, store=store, ledger=ledger, market=market, counters=self.counters,
            client=lambda: client, enqueue=enqueue_many, notify_trades=False,
            publish=self.published.append, on_ledger_change=lambda m: None,
            on_connection_change=lambda *a: None,
        )  # fmt: skip

    async def sent_order(self, cid: str, qty: str) -> dict[str, Any]:
        """The row of an order whose placement answer was lost: stored, 'sent'."""
        intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D(qty), MID)
        new = od.NewOrder(Mode.LIVE, intent, D(qty), (), "test", OrderState.SENT, cid)
        row = await self.store.write(lambda c: od.insert_order(c, new))
        self.counters.track(row)
        return row

    async def row(self, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda c: od.get_order_row(c, order_id))

    async def reconciled(self) -> None:
        """One reconciliation, waited for to its end (its retries included)."""
        await self.sink.reconcile_open_orders()
        task = self.sink._reconcile_task
        if task is not None:
            await asyncio.wait_for(task, 30)
        await self.sink.drain()

    async def listen(self) -> None:
        await self.client.start(self.sink)
        await until(lambda: self.sink.streams.get("account", (False,))[0] is True)


until = wait_for


@asynccontextmanager
async def live_on_sim(tmp_path: Path, *, lag_s: float, grace_s: float) -> AsyncIterator[Any]:
    """(sim, Live, placer): the placer is a second, started client on the same account; it
    places the orders the sink is to find (its own answers are not given to the sink)."""
    async with funded_sim() as sim:
        sim.add_account("1")
        sim.add_api_key(SELLER_KEY, SELLER_SECRET, account_id="1")
        sim.fund("1", "BTC", D("0.01"))
        sim.set_price("BTCZAR", MID)
        store = await Store.open(tmp_path / "h.db")
        tuning = fast_valr_tuning(not_found_grace_s=grace_s)
        client = ValrClient(valr_settings(sim.rest_url, sim.ws_url, SIM_KEY, SIM_SECRET),
                            tuning=tuning)  # fmt: skip
        try:
            async with valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as placer:
                sim.apply_faults({"view_lag_s": lag_s})
                yield sim, Live(store, client), placer
        finally:
            await client.close()
            await store.close()


async def test_an_order_valr_does_not_show_yet_is_not_failed_within_the_grace(
    tmp_path: Path,
) -> None:
    """VALR's views hide the order for 5 s; the grace is 8 s. The first lookups find nothing
    (the old rule failed it there); the order stays open here until VALR lists it."""
    async with live_on_sim(tmp_path, lag_s=5, grace_s=8) as (_, live, placer):
        row = await live.sent_order("hd-lagged", "0.0002")
        await placer.place(PlaceRequest("hd-lagged", "BTCZAR", Side.BUY, OrderType.LIMIT,
                                        D("0.0002"), MID))  # fmt: skip
        assert await live.client.order_status("BTCZAR", customer_order_id="hd-lagged") is None
        await live.reconciled()
        # Never failed: reconciliation kept looking until VALR listed it, then adopted it.
        listed = {o.customer_order_id: o for o in await live.client.open_orders()}
        assert set(listed) == {"hd-lagged"}
        seen = await live.row(row["id"])
        assert seen["state"] == "placed", seen
        assert seen["exchange_order_id"] == listed["hd-lagged"].exchange_order_id
        assert live.counters.open_orders(mode=Mode.LIVE) == 1


async def test_a_failed_order_is_revived_by_a_later_partial_fill(tmp_path: Path) -> None:
    """VALR's views hide the order for 6 s; the grace is 1 s: the lookup's "not found" fails
    it (an inference). VALR then fills half of it: the fill revives the order, which counts
    as open again; the same fill delivered again counts once."""
    async with live_on_sim(tmp_path, lag_s=6, grace_s=1) as (sim, live, placer):
        row = await live.sent_order("hd-revived", "0.0002")
        await placer.place(PlaceRequest("hd-revived", "BTCZAR", Side.BUY, OrderType.LIMIT,
                                        D("0.0002"), MID))  # fmt: skip
        await live.reconciled()
        failed = await live.row(row["id"])
        assert failed["state"] == "failed", failed
        assert failed["failed_reason"] == "not known to the venue 1 s after it was created"
        assert live.counters.open_orders(mode=Mode.LIVE) == 0

        await live.listen()  # the account stream now tells the sink what VALR does
        async with valr_on_sim(sim, SELLER_KEY, SELLER_SECRET, tuning=fast_valr_tuning()) as s:
            await s.place(PlaceRequest("seller-1", "BTCZAR", Side.SELL, OrderType.LIMIT,
                                       D("0.0001"), MID))  # fmt: skip

        async def filled_half() -> bool:
            r = await live.row(row["id"])
            return r["state"] == "partially_filled" and D(r["filled_quantity"]) == D("0.0001")

        async def wait_half() -> None:
            while not await filled_half():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(wait_half(), 15)
        assert live.counters.open_orders(mode=Mode.LIVE) == 1
        fills = await live.store.read(lambda c: st.load_fills(c, Mode.LIVE))
        assert [(f.customer_order_id, f.quantity) for f in fills] == [("hd-revived", D("0.0001"))]
        # The same trade again (a replay after reconnect): stored and counted once.
        await live.sink.on_fill(fills[0])
        await live.sink.drain()
        assert len(await live.store.read(lambda c: st.load_fills(c, Mode.LIVE))) == 1
        assert D((await live.row(row["id"]))["filled_quantity"]) == D("0.0001")

        # Once VALR lists it, a reconciliation leaves it open: both sides agree.
        async def listed() -> None:
            while "hd-revived" not in {
                o.customer_order_id for o in await live.client.open_orders()
            }:
                await asyncio.sleep(0.2)

        await asyncio.wait_for(listed(), 15)
        await live.reconciled()
        assert (await live.row(row["id"]))["state"] == "partially_filled"


async def test_a_listed_order_whose_answer_was_lost_is_adopted(tmp_path: Path) -> None:
    """Found by the interleaving search (seed 1559080030, I4, a kill -9 with placements in
    flight): the order is stored 'sent' with no exchange id, VALR lists it as open by its
    customer id. Reconciliation used to skip it as "known" and leave the row without the
    venue's id, so each side named an order the other did not. Now the listing is applied:
    the row takes VALR's id and state, and both sides name the same order."""
    async with live_on_sim(tmp_path, lag_s=0, grace_s=1) as (_, live, placer):
        row = await live.sent_order("hd-adopted", "0.0002")
        await placer.place(PlaceRequest("hd-adopted", "BTCZAR", Side.BUY, OrderType.LIMIT,
                                        D("0.0002"), MID))  # fmt: skip
        venue = {o.customer_order_id: o for o in await live.client.open_orders()}
        assert set(venue) == {"hd-adopted"}
        await live.reconciled()
        adopted = await live.row(row["id"])
        assert adopted["state"] == "placed", adopted
        assert adopted["exchange_order_id"] == venue["hd-adopted"].exchange_order_id
        assert live.counters.open_orders(mode=Mode.LIVE) == 1
