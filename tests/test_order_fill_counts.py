"""An order row counts each fill once, whatever order the venue's statuses and fills arrive in.

A status's ``executed_quantity`` is the venue's cumulative figure: it already includes the
order's fills, received or not. The row's ``filled_quantity`` is max(that figure, the sum of
the stored fills), never their sum; its average is the fills' VWAP once they cover it, the
venue's average before. All through a real SQLite file (heliosd.store.Store).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hs

from heliosd.core.types import Fill, Mode, OrderIntent, OrderState, OrderStatus, OrderType, Side
from heliosd.store import Store
from heliosd.trading import orders as od

D = Decimal
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def order(cid: str, qty: str, mode: Mode = Mode.LIVE) -> od.NewOrder:
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D(qty), D(200))
    return od.NewOrder(mode, intent, D(qty), (), "test", OrderState.PLACED, customer_order_id=cid)


def fill(trade: str, qty: str, price: str, cid: str = "hd-a") -> Fill:
    return Fill(trade, "BTCZAR", Side.BUY, D(price), D(qty), D(0), "BTC", T0,
                exchange_order_id="x-" + cid, customer_order_id=cid)  # fmt: skip


def status(
    executed: str, avg: str | None, state: OrderState = OrderState.PARTIALLY_FILLED,
    cid: str = "hd-a",
) -> OrderStatus:  # fmt: skip
    return OrderStatus("BTCZAR", state, "x-" + cid, cid, executed_quantity=D(executed),
                       average_price=None if avg is None else D(avg))  # fmt: skip


class Book:
    """Statuses and fills applied through the store's writer, as VenueSink applies them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, cid: str = "hd-a", qty: str = "1") -> int:
        row = await self.store.write(lambda c: od.insert_order(c, order(cid, qty)))
        return int(row["id"])

    async def status(self, s: OrderStatus) -> dict[str, Any] | None:
        return await self.store.write(lambda c: od.apply_status(c, Mode.LIVE, s))

    async def fills(self, *fills: Fill) -> list[dict[str, Any] | None]:
        return await self.store.write(lambda c: od.apply_fills(c, Mode.LIVE, fills))

    async def row(self, order_id: int = 1) -> tuple[str, str, str | None]:
        r = await self.store.read(lambda c: od.get_order_row(c, order_id))
        return r["state"], r["filled_quantity"], r["average_price"]

    async def count(self, order_id: int = 1) -> tuple[Decimal, Decimal | None]:
        _, filled, avg = await self.row(order_id)
        return D(filled), None if avg is None else D(avg)


async def open_book(path: Path) -> Book:
    return Book(await Store.open(path))


async def test_a_status_then_its_fills_counts_each_fill_once(tmp_path: Path) -> None:
    """The defect: a lookup reporting the whole order before the stream's fills made the row
    count 2 of 1 (the ledger, built from the fills, was right)."""
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        await b.status(status("1", "101", OrderState.FILLED))
        assert await b.row() == ("filled", "1", "101")
        outcomes = await b.fills(fill("t1", "0.5", "100"))
        assert outcomes[0] is not None and outcomes[0]["order"]["filled_quantity"] == "1"
        # Fills cover less than the venue's figure: its average stands.
        assert await b.row() == ("filled", "1", "101")
        await b.fills(fill("t2", "0.5", "102"))
        assert await b.row() == ("filled", "1.0", "101")  # now the fills' VWAP: the same
        await b.fills(fill("t3", "0.25", "104", cid="hd-a"))  # a stray over-fill still counts
        assert await b.count() == (D("1.25"), D("101.6"))
    finally:
        await b.store.close()


async def test_a_fill_then_its_status_counts_it_once(tmp_path: Path) -> None:
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        await b.fills(fill("t1", "0.4", "100"))
        assert await b.row() == ("partially_filled", "0.4", "100")
        row = await b.status(status("0.4", "100"))
        assert row is not None and (row["state"], row["filled_quantity"]) == (
            "partially_filled",
            "0.4",
        )
        # The venue fills the rest before we receive it: its figure and average lead.
        await b.status(status("1", "106", OrderState.FILLED))
        assert await b.row() == ("filled", "1", "106")
        await b.fills(fill("t2", "0.6", "110"))
        assert await b.row() == ("filled", "1.0", "106")  # (40 + 66) / 1, from the fills
    finally:
        await b.store.close()


async def test_a_partial_status_then_two_fills(tmp_path: Path) -> None:
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        await b.status(status("0.6", "104"))  # 0.2 @ 100 and 0.4 @ 106 at the venue
        assert await b.row() == ("partially_filled", "0.6", "104")
        await b.fills(fill("t1", "0.2", "100"))
        # Already in the venue's 0.6: not 0.8; the venue's average, not this fill's 100.
        assert await b.row() == ("partially_filled", "0.6", "104")
        await b.fills(fill("t2", "0.4", "106"))
        assert await b.row() == ("partially_filled", "0.6", "104")
        # A fill past what any status reported adds to the fills' sum.
        await b.fills(fill("t3", "0.4", "110"))
        assert await b.row() == ("filled", "1.0", "106.4")
    finally:
        await b.store.close()


async def test_a_replayed_fill_changes_nothing(tmp_path: Path) -> None:
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        first = fill("t1", "0.3", "100")
        assert (await b.fills(first))[0] is not None
        await b.status(status("0.5", "102"))
        before = await b.store.read(lambda c: od.get_order_row(c, 1))
        # Replayed alone, twice in one batch, and beside a new fill (after a reconnect).
        assert await b.fills(first) == [None]
        assert await b.fills(first, first) == [None, None]
        outcomes = await b.fills(first, fill("t2", "0.2", "105"), fill("t2", "0.2", "105"))
        assert outcomes[0] is None and outcomes[2] is None and outcomes[1] is not None
        assert outcomes[1]["order"]["filled_quantity"] == "0.5"
        assert before["filled_quantity"] == "0.5" and before["average_price"] == "102"
        assert await b.row() == ("partially_filled", "0.5", "102")  # (30 + 21) / 0.5
        assert await b.fills(first, fill("t2", "0.2", "105")) == [None, None]
        assert await b.row() == ("partially_filled", "0.5", "102")
        n = await b.store.read(lambda c: c.execute("SELECT count(*) FROM fills").fetchone()[0])
        assert n == 2
    finally:
        await b.store.close()


async def test_a_status_lower_than_the_fills_does_not_lower_the_row(tmp_path: Path) -> None:
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        await b.fills(fill("t1", "0.3", "100"), fill("t2", "0.2", "110"))
        assert await b.row() == ("partially_filled", "0.5", "104")
        # A lookup answered before the venue's second trade, and an older one still.
        row = await b.status(status("0.3", "100"))
        assert row is not None and row["filled_quantity"] == "0.5"
        await b.status(status("0", None, OrderState.PLACED))
        assert await b.row() == ("partially_filled", "0.5", "104")
        # A later one reporting more raises it; a replay of the stale one leaves it there.
        await b.status(status("0.7", "106"))
        await b.status(status("0.3", "100"))
        assert await b.row() == ("partially_filled", "0.7", "106")
    finally:
        await b.store.close()


async def test_a_cancelled_order_takes_a_higher_executed_figure(tmp_path: Path) -> None:
    """A terminal state stays, but what the venue executed before the cancel is counted once."""
    b = await open_book(tmp_path / "h.db")
    try:
        await b.add()
        await b.status(status("0", None, OrderState.CANCELLED))
        await b.status(status("0.4", "100", OrderState.CANCELLED))
        assert await b.row() == ("cancelled", "0.4", "100")
        await b.status(status("0.4", "100", OrderState.FILLED))  # can_move: terminal is final
        await b.fills(fill("t1", "0.4", "100"))
        assert await b.row() == ("cancelled", "0.4", "100")
    finally:
        await b.store.close()


async def test_a_batch_with_several_fills_of_one_order(tmp_path: Path) -> None:
    """One apply_fills batch: each outcome is the row after that fill, and the rows equal
    those of the same fills applied one by one."""
    batch = [
        fill("t1", "0.25", "100"), fill("b1", "1", "55", cid="hd-b"), fill("t2", "0.25", "102"),
        fill("t1", "0.25", "100"), fill("t3", "0.25", "104"), fill("t4", "0.25", "106"),
        fill("b2", "1", "55", cid="hd-b"),
    ]  # fmt: skip
    rows = []
    for name, size in (("batch", len(batch)), ("single", 1)):
        b = await open_book(tmp_path / name / "h.db")
        try:
            await b.add("hd-a", "1")
            await b.add("hd-b", "2")
            await b.status(status("0.5", "101.5"))
            await b.status(status("1", "55", cid="hd-b"))
            outcomes: list[dict[str, Any] | None] = []
            for i in range(0, len(batch), size):
                outcomes += await b.fills(*batch[i : i + size])
            seen = [None if o is None else o["order"]["filled_quantity"] for o in outcomes]
            averages = [None if o is None else o["order"]["average_price"] for o in outcomes]
            rows.append((seen, averages, await b.row(1), await b.row(2)))
        finally:
            await b.store.close()
    assert rows[0] == rows[1]
    seen, averages, a, b_row = rows[0]
    assert seen == ["0.5", "1", "0.50", None, "0.75", "1.00", "2"]
    assert averages == ["101.5", "55", "101", None, "102", "103", "55"]
    assert a == ("filled", "1.00", "103")
    assert b_row == ("filled", "2", "55")


async def test_status_before_fill_through_the_venue_sink(tmp_path: Path) -> None:
    """The path of the defect: a REST lookup (VenueSink.apply_order_status) committed before
    the stream's fill; GET /api/orders reads this row, the counters track it."""
    from zoneinfo import ZoneInfo

    from heliosd.core.protocols import ExchangeClient
    from heliosd.core.types import PairInfo
    from heliosd.notify import enqueue_many
    from heliosd.risk.ledger import Ledger
    from heliosd.trading.marketdata import MarketData
    from heliosd.trading.sink import VenueSink

    pair = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(10), D(10), D(10_000_000), D(1), 8)
    store = await Store.open(tmp_path / "h.db")
    try:
        market = MarketData({"BTCZAR": pair})
        ledger = Ledger(Mode.LIVE, "ZAR", ZoneInfo("UTC"), {"BTCZAR": pair}, market,
                        starting_balances={"ZAR": D(10**6)})  # fmt: skip
        counters = od.OrderCounters()

        def no_client() -> ExchangeClient:
            raise AssertionError("not called")

        sink = VenueSink(
            mode=Mode.LIVE, store=store, ledger=ledger, market=market, counters=counters,
            client=no_client, enqueue=enqueue_many, notify_trades=False,
            publish=lambda _: None, on_ledger_change=lambda _: None,
            on_connection_change=lambda *a: None,
        )  # fmt: skip
        b = Book(store)
        await b.add("hd-a", "1")
        counters.track(await store.read(lambda c: od.get_order_row(c, 1)))
        assert counters.open_orders(mode=Mode.LIVE) == 1
        row = await sink.apply_order_status(status("1", "100", OrderState.FILLED))
        assert row is not None and row["filled_quantity"] == "1"
        assert counters.open_orders(mode=Mode.LIVE) == 0
        await sink.on_fill(fill("t1", "1", "100"))
        await asyncio.wait_for(sink.drain(), 10)
        assert await b.row() == ("filled", "1", "100")
        assert ledger.position("BTCZAR") == D(1)  # the ledger counts the fill once too
    finally:
        await store.close()


# ---------------------------------------------------------------------- any interleaving


@hs.composite
def scenarios(draw: hs.DrawFn) -> tuple[str, list[Fill], list[Any]]:
    """An order, its fills at the venue, and the events we receive in some order: each fill
    (maybe replayed), some of the venue's cumulative statuses (maybe stale, maybe repeated),
    fills cut into batches at random."""
    n = draw(hs.integers(1, 5))
    quantities = [D(draw(hs.integers(1, 5000))) / 10_000 for _ in range(n)]
    prices = [D(draw(hs.integers(9_000, 11_000))) / 100 for _ in range(n)]
    pairs = enumerate(zip(quantities, prices, strict=True))
    fills = [fill(f"t{i}", str(q), str(p)) for i, (q, p) in pairs]
    total = sum(quantities, D(0))
    qty = total + D(draw(hs.sampled_from([0, 0, 1, 5000]))) / 10_000
    statuses: list[Any] = []
    for k in draw(hs.lists(hs.integers(0, n), max_size=6)):
        executed = sum(quantities[:k], D(0))
        avg = None
        if k:
            value = sum((q * p for q, p in zip(quantities[:k], prices[:k], strict=True)), D(0))
            avg = str((value / executed).quantize(D("0.01")))  # the venue rounds its own
        state = OrderState.FILLED if executed >= qty else OrderState.PARTIALLY_FILLED
        statuses.append(status(str(executed), avg, state if k else OrderState.PLACED))
    replays = draw(hs.lists(hs.sampled_from(fills), max_size=3))
    events = draw(hs.permutations([*fills, *replays, *statuses]))
    cuts = draw(hs.lists(hs.booleans(), min_size=len(events), max_size=len(events)))
    steps: list[Any] = []
    for event, cut in zip(events, cuts, strict=True):
        if isinstance(event, Fill) and steps and isinstance(steps[-1], list) and not cut:
            steps[-1].append(event)  # the same apply_fills batch as the fill before
        else:
            steps.append([event] if isinstance(event, Fill) else event)
    return str(qty), fills, steps


def vwap(fills: Sequence[Fill]) -> str:
    qty = sum((f.quantity for f in fills), D(0))
    value = sum((f.quantity * f.price for f in fills), D(0))
    return od.plain((value / qty).quantize(D("1e-12")))


async def play(path: Path, qty: str, fills: list[Fill], steps: list[Any]) -> None:
    b = await open_book(path)
    try:
        await b.add("hd-a", qty)
        reported, venue_avg, seen = D(0), None, {}
        for step in steps:
            if isinstance(step, list):
                await b.fills(*step)
                seen.update({f.trade_id: f for f in step})
            else:
                await b.status(step)
                if step.executed_quantity > reported:
                    reported, venue_avg = step.executed_quantity, step.average_price
            stored = sum((f.quantity for f in seen.values()), D(0))
            filled, avg = await b.count()
            # After every step: max(the venue's figure, the stored fills), never the sum.
            assert filled == max(reported, stored), (filled, reported, stored)
            if seen and stored >= reported:
                assert avg == D(vwap(list(seen.values())))
            elif reported > stored:
                assert avg == venue_avg
        total = sum((f.quantity for f in fills), D(0))
        state, filled_text, avg_text = await b.row()
        assert D(filled_text) == total and avg_text == vwap(fills)
        assert state == ("filled" if total >= D(qty) else "partially_filled")
    finally:
        await b.store.close()


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_any_interleaving_counts_the_true_total(scenario: tuple[str, list[Fill], Any]) -> None:
    qty, fills, steps = scenario
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(play(Path(d) / "h.db", qty, fills, steps))


def test_a_fill_ahead_of_a_stale_status_then_a_replay() -> None:
    """One interleaving spelled out: the second fill first, a status reporting only the
    first, then both fills in one batch (the second a replay)."""
    fills = [fill("t0", "0.1", "100"), fill("t1", "0.2", "101")]
    steps: list[Any] = [[fills[1]], status("0.1", "100"), [fills[0], fills[1]]]
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(play(Path(d) / "h.db", "0.3", fills, steps))


async def test_a_failed_order_is_revived_by_the_venue_and_only_failed_is(tmp_path: Path) -> None:
    """ "failed" may be heliosd's inference (a lookup VALR's lagging views answered "not
    found"): a later status or fill from the venue revives it. Cancelled and filled stay
    final, and a failed order the venue also reports failed stays failed."""
    b = await open_book(tmp_path / "h.db")
    try:
        ids = {cid: await b.add(cid) for cid in ("hd-s", "hd-f", "hd-c", "hd-x")}
        assert list(ids.values()) == [1, 2, 3, 4]
        for cid in ("hd-s", "hd-f", "hd-x"):
            await b.status(status("0", None, OrderState.FAILED, cid=cid))
            assert (await b.row(ids[cid]))[0] == "failed"
        await b.status(status("0", None, OrderState.CANCELLED, cid="hd-c"))
        # A status: the venue has it resting.
        await b.status(status("0", None, OrderState.PLACED, cid="hd-s"))
        assert await b.row(1) == ("placed", "0", None)
        # A partial fill: open again, the fill counted once (a replay is a no-op).
        await b.fills(fill("t1", "0.25", "100", cid="hd-f"))
        assert await b.fills(fill("t1", "0.25", "100", cid="hd-f")) == [None]
        assert await b.row(2) == ("partially_filled", "0.25", "100")
        # Cancelled stays cancelled; failed stays failed when the venue says failed again.
        await b.status(status("0", None, OrderState.PLACED, cid="hd-c"))
        assert (await b.row(3))[0] == "cancelled"
        await b.status(status("0", None, OrderState.FAILED, cid="hd-x"))
        assert (await b.row(4))[0] == "failed"
    finally:
        await b.store.close()
