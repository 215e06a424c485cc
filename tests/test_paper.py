"""The paper exchange: VALR-like limits, fees, reservations, events and restart.

Every price and balance below is computed by hand from the settings in ``paper()``:
taker 0.1 %, slippage 0.05 %, book 999,000 / 1,000,000 ZAR for BTCZAR.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pluggy
import pytest

from heliosd.builtin import paper as paper_module
from heliosd.builtin.paper import PaperExchange
from heliosd.core.config import PaperSettings, Settings
from heliosd.core.errors import ExchangeRejected, HeliosError
from heliosd.core.protocols import ExchangeClient, ExchangeContext, ExchangeFactory
from heliosd.core.types import (
    Balance,
    Fill,
    Mode,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PlaceRequest,
    Quote,
    Side,
)
from heliosd.plugins import hookspecs
from heliosd.trading.marketdata import MarketData

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT = OrderType.MARKET, OrderType.LIMIT


class Recorder:
    """The core's event sink as the paper venue sees it: records every delivery.

    ``placed`` holds exchange order ids the "caller" recorded after place() returned, so a
    test can check that no event ever arrives before its placement was recorded.
    """

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.statuses: list[OrderStatus] = []
        self.open_orders: list[list[OpenOrder]] = []
        self.balances: list[tuple[list[Balance], bool]] = []
        self.placed: set[str] = set()
        self.early: list[str] = []

    async def on_fill(self, fill: Fill) -> None:
        if fill.exchange_order_id not in self.placed:
            self.early.append(f"fill {fill.exchange_order_id}")
        self.fills.append(fill)

    async def on_order_status(self, status: OrderStatus) -> None:
        self.statuses.append(status)

    async def on_open_orders(self, orders: Sequence[OpenOrder]) -> None:
        self.open_orders.append(list(orders))

    async def on_balances(self, balances: Sequence[Balance], *, snapshot: bool) -> None:
        self.balances.append((list(balances), snapshot))

    async def on_quote(self, quote: Quote) -> None:
        raise AssertionError("the paper venue publishes no quotes")

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        raise AssertionError("the paper venue has no connections")

    def fill_watermark(self) -> datetime | None:
        return None


def settings(**overrides: object) -> PaperSettings:
    values: dict[str, object] = {
        "starting_balances": {"ZAR": D(100000), "BTC": D("0.5")},
        "maker_fee_pct": D(0),
        "taker_fee_pct": D("0.1"),
        "slippage_pct": D("0.05"),
    }
    values.update(overrides)
    return PaperSettings(**values)  # type: ignore[arg-type]


def quote(bid: str | None, ask: str | None, last: str | None = None, pair: str = "BTCZAR") -> Quote:
    return Quote(
        pair,
        None if bid is None else D(bid),
        None if ask is None else D(ask),
        None if last is None else D(last),
        datetime.now(UTC),
    )


@pytest.fixture
def market() -> MarketData:
    md = MarketData()
    md.update(quote("999000", "1000000"))
    return md


async def drain() -> None:
    # One pass of the delivery task empties the queue; a few yields leave it room to run.
    for _ in range(5):
        await asyncio.sleep(0)


async def started(market: MarketData, **overrides: object) -> tuple[PaperExchange, Recorder]:
    ex = PaperExchange(market, settings(**overrides))
    rec = Recorder()
    await ex.start(rec)
    await drain()
    return ex, rec


def req(
    side: Side,
    qty: str,
    type_: OrderType = MARKET,
    price: str | None = None,
    cid: str = "c-1",
    pair: str = "BTCZAR",
) -> PlaceRequest:
    return PlaceRequest(cid, pair, side, type_, D(qty), None if price is None else D(price))


async def funds(ex: PaperExchange) -> dict[str, tuple[Decimal, Decimal]]:
    return {b.currency: (b.available, b.reserved) for b in await ex.balances()}


# ----------------------------------------------------------------------- market orders


async def test_market_buy_fills_at_slipped_ask_with_fee_in_base(market: MarketData) -> None:
    ex, rec = await started(market)
    result = await ex.place(req(BUY, "0.01"))
    assert result.state is OrderState.FILLED
    # ask 1,000,000 x 1.0005 = 1,000,500. 0.01 BTC is what VALR credits after the fee, so
    # the fill is 0.01 / 0.999 = 0.01001001001 -> 0.01001002 (up); fee 0.1 % of it,
    # 0.00001001002 -> 0.00001002 (up); notional 0.01001002 x 1,000,500 = 10,015.02501 ZAR.
    assert await funds(ex) == {"ZAR": (D("89984.97499"), 0), "BTC": (D("0.51"), 0)}
    await drain()
    (fill,) = rec.fills
    assert (fill.side, fill.price, fill.quantity) == (BUY, D(1000500), D("0.01001002"))
    assert (fill.fee, fill.fee_currency) == (D("0.00001002"), "BTC")
    assert fill.trade_id.startswith("paper-")
    assert fill.exchange_order_id == result.exchange_order_id
    assert fill.customer_order_id == "c-1"
    (status,) = rec.statuses
    assert status.state is OrderState.FILLED
    assert status.executed_quantity == D("0.01001002")
    assert status.average_price == D(1000500)
    assert rec.balances[-1] == (
        [Balance("ZAR", D("89984.97499")), Balance("BTC", D("0.51"))],
        False,
    )
    await ex.close()


async def test_market_sell_fills_at_slipped_bid_with_fee_in_quote_rounded_up(
    market: MarketData,
) -> None:
    ex, rec = await started(market)
    await ex.place(req(SELL, "0.01"))
    # bid 999,000 x 0.9995 = 998,500.5 -> 998,500 (down: against the seller);
    # notional 9,985 ZAR; fee 9.985 -> 9.99 ZAR (ceiling to cents).
    assert await funds(ex) == {"ZAR": (D("109975.01"), 0), "BTC": (D("0.49"), 0)}
    await drain()
    (fill,) = rec.fills
    assert (fill.price, fill.fee, fill.fee_currency) == (D(998500), D("9.99"), "ZAR")
    await ex.close()


async def test_no_slippage_and_no_fee_fill_at_the_touch(market: MarketData) -> None:
    ex, rec = await started(market, slippage_pct=D(0), taker_fee_pct=D(0))
    await ex.place(req(BUY, "0.1"))
    assert await funds(ex) == {"ZAR": (D(0), 0), "BTC": (D("0.6"), 0)}
    await drain()
    assert (rec.fills[0].price, rec.fills[0].fee) == (D(1000000), 0)
    await ex.close()


async def test_quantity_is_truncated_to_base_decimals(market: MarketData) -> None:
    ex, rec = await started(market, slippage_pct=D(0), taker_fee_pct=D(0))
    await ex.place(req(BUY, "0.012345678999"))
    await drain()
    assert rec.fills[0].quantity == D("0.01234567")
    await ex.close()


async def test_last_price_is_used_when_the_book_is_empty() -> None:
    md = MarketData()
    md.update(quote(None, None, last="1000000"))
    ex, rec = await started(md, slippage_pct=D(0))
    await ex.place(req(BUY, "0.001"))
    await drain()
    assert rec.fills[0].price == D(1000000)
    await ex.close()


# ----------------------------------------------------------------------- refusals


async def test_insufficient_balance_is_refused_with_valrs_text(market: MarketData) -> None:
    ex, rec = await started(market)
    before = await funds(ex)
    with pytest.raises(ExchangeRejected) as err:
        await ex.place(req(BUY, "0.1"))  # 100,050 ZAR at the slipped ask > 100,000
    assert (err.value.message, err.value.venue_code) == ("Insufficient Balance", -6)
    with pytest.raises(ExchangeRejected, match="Insufficient Balance"):
        await ex.place(req(SELL, "0.5001"))
    market.update(quote("50000", "50001", pair="ETHZAR"))
    with pytest.raises(ExchangeRejected, match="Insufficient Balance"):
        await ex.place(req(SELL, "0.01", pair="ETHZAR", cid="e-1"))  # no ETH at all
    assert await funds(ex) == before
    await drain()
    assert rec.fills == []
    assert rec.statuses == []
    await ex.close()


async def test_below_minimum_and_above_maximum(market: MarketData) -> None:
    ex, _ = await started(market)
    with pytest.raises(ExchangeRejected) as err:
        await ex.place(req(BUY, "0.00009999"))
    assert err.value.message == (
        "Minimum order size not met. Minimum amount: 0.0001 BTC, minimum total: 10 ZAR"
    )
    assert err.value.venue_code == -12007
    # Enough base, too little quote: 0.0001 BTC at 50,000 ZAR is 5 ZAR.
    with pytest.raises(ExchangeRejected, match="minimum total: 10 ZAR"):
        await ex.place(req(BUY, "0.0001", LIMIT, "50000"))
    with pytest.raises(ExchangeRejected) as err:
        await ex.place(req(SELL, "2.1", LIMIT, "1100000"))
    assert err.value.message == (
        "Maximum order size exceeded. Maximum amount: 2 BTC, maximum total: 5000000 ZAR"
    )
    await ex.close()


async def test_unknown_pair_missing_price_and_bad_requests(market: MarketData) -> None:
    ex, _ = await started(market)
    with pytest.raises(ExchangeRejected, match=r"^Unsupported Currency Pair$"):
        await ex.place(req(BUY, "1", pair="XRPZAR"))
    with pytest.raises(ExchangeRejected, match=r"^No market price for ETHZAR$"):
        await ex.place(req(BUY, "1", pair="ETHZAR"))
    with pytest.raises(ExchangeRejected, match=r"^Invalid Request"):
        await ex.place(req(BUY, "0.01", LIMIT, None))
    with pytest.raises(ExchangeRejected, match=r"^Invalid Request"):
        await ex.place(req(BUY, "0.01", cid="has_underscore"))
    with pytest.raises(ExchangeRejected, match=r"^Invalid Request"):
        await ex.place(req("HOLD", "0.01"))  # type: ignore[arg-type]
    await ex.close()


async def test_plain_strings_are_not_mistaken_for_the_other_side(market: MarketData) -> None:
    ex, rec = await started(market, slippage_pct=D(0))
    await ex.place(PlaceRequest("s-1", "BTCZAR", "BUY", "MARKET", D("0.01")))  # type: ignore[arg-type]
    await drain()
    assert (rec.fills[0].side, rec.fills[0].price) == (BUY, D(1000000))
    await ex.close()


async def test_duplicate_customer_id_among_open_orders(market: MarketData) -> None:
    ex, _ = await started(market)
    await ex.place(req(BUY, "0.01", LIMIT, "900000", cid="dup"))
    with pytest.raises(ExchangeRejected) as err:
        await ex.place(req(BUY, "0.01", LIMIT, "800000", cid="dup"))
    assert err.value.message == "Duplicate customer order id's are not allowed"
    assert err.value.venue_code == -11502
    await ex.cancel("BTCZAR", customer_order_id="dup")
    # Once the first is no longer open, VALR accepts the id again.
    result = await ex.place(req(BUY, "0.01", LIMIT, "800000", cid="dup"))
    assert result.state is OrderState.PLACED
    await ex.close()


# ----------------------------------------------------------------------- limit orders


async def test_limit_rests_reserves_then_fills_as_maker_on_a_crossing_quote(
    market: MarketData,
) -> None:
    ex, rec = await started(market)
    result = await ex.place(req(BUY, "0.01", LIMIT, "990000.4"))  # rounds to the 1 ZAR tick
    assert result.state is OrderState.PLACED
    assert await funds(ex) == {"ZAR": (D(90100), D(9900)), "BTC": (D("0.5"), 0)}
    (open_order,) = await ex.open_orders()
    assert (open_order.price, open_order.remaining_quantity) == (D(990000), D("0.01"))
    assert open_order.exchange_order_id == result.exchange_order_id
    await drain()
    assert [s.state for s in rec.statuses] == [OrderState.PLACED]
    assert rec.open_orders[-1] == [open_order]

    market.update(quote("985000", "990001"))  # not crossed yet
    market.update(quote("985000", "989000"))  # ask below the limit: filled at the limit
    assert await ex.open_orders() == []
    assert await funds(ex) == {"ZAR": (D(90100), 0), "BTC": (D("0.51"), 0)}
    await drain()
    (fill,) = rec.fills
    assert (fill.price, fill.quantity, fill.fee, fill.fee_currency) == (
        D(990000),
        D("0.01"),
        0,
        "ZAR",
    )
    assert rec.statuses[-1].state is OrderState.FILLED
    assert rec.open_orders[-1] == []
    market.update(quote("900000", "901000"))
    await drain()
    assert len(rec.fills) == 1  # filled once, never again
    await ex.close()


async def test_maker_fee_is_paid_in_the_currency_paid_and_reserved_up_front(
    market: MarketData,
) -> None:
    ex, rec = await started(market, maker_fee_pct=D("0.08"))
    await ex.place(req(BUY, "0.01", LIMIT, "990000", cid="b"))
    await ex.place(req(SELL, "0.01", LIMIT, "1010000", cid="s"))
    # BUY reserves 9,900 + 0.08 % = 9,907.92 ZAR; SELL reserves 0.01 + 0.08 % = 0.010008 BTC.
    assert await funds(ex) == {
        "ZAR": (D("90092.08"), D("9907.92")),
        "BTC": (D("0.489992"), D("0.010008")),
    }
    market.update(quote("1010000", "1010001"))  # the bid reaches the sell
    market.update(quote("989000", "990000"))  # the ask reaches the buy
    assert await funds(ex) == {"ZAR": (D("100192.08"), 0), "BTC": (D("0.499992"), 0)}
    await drain()
    fees = {f.side: (f.price, f.fee, f.fee_currency) for f in rec.fills}
    assert fees == {
        SELL: (D(1010000), D("0.000008"), "BTC"),
        BUY: (D(990000), D("7.92"), "ZAR"),
    }
    await ex.close()


async def test_maker_rebate_is_credited_in_the_currency_paid(market: MarketData) -> None:
    ex, rec = await started(market, maker_fee_pct=D("-0.02"))
    await ex.place(req(BUY, "0.01", LIMIT, "990000"))
    assert await funds(ex) == {"ZAR": (D(90100), D(9900)), "BTC": (D("0.5"), 0)}
    market.update(quote("980000", "985000"))
    # Pays 9,900 - 1.98 rebate.
    assert await funds(ex) == {"ZAR": (D("90101.98"), 0), "BTC": (D("0.51"), 0)}
    await drain()
    assert (rec.fills[0].fee, rec.fills[0].fee_currency) == (D("-1.98"), "ZAR")
    await ex.close()


async def test_crossing_limit_takes_at_the_better_of_limit_and_slipped_touch(
    market: MarketData,
) -> None:
    ex, rec = await started(market)
    a = await ex.place(req(BUY, "0.01", LIMIT, "1000200", cid="a"))  # slipped ask 1,000,500
    b = await ex.place(req(BUY, "0.01", LIMIT, "1001000", cid="b"))
    c = await ex.place(req(SELL, "0.01", LIMIT, "998000", cid="c"))  # slipped bid 998,500
    assert {a.state, b.state, c.state} == {OrderState.FILLED}
    await drain()
    assert [f.price for f in rec.fills] == [D(1000200), D(1000500), D(998500)]
    assert [f.fee_currency for f in rec.fills] == ["BTC", "BTC", "ZAR"]
    assert await ex.open_orders() == []
    await ex.close()


async def test_trade_prints_fill_resting_orders_only_when_the_book_side_is_unknown(
    market: MarketData,
) -> None:
    ex, rec = await started(market)
    await ex.place(req(BUY, "0.01", LIMIT, "990000"))
    market.update(quote("995000", "996000", last="980000"))  # the ask decides: not crossed
    market.update(quote(None, None, last="990000"))  # at the limit: queue position unknown
    assert len(await ex.open_orders()) == 1
    market.update(quote(None, None, last="989999"))  # strictly through the limit
    assert await ex.open_orders() == []
    await drain()
    assert rec.fills[0].price == D(990000)
    await ex.close()


async def test_reservations_block_spending_and_cancel_releases_them(market: MarketData) -> None:
    ex, rec = await started(market)
    placed = await ex.place(req(BUY, "0.095", LIMIT, "990000", cid="big"))  # reserves 94,050
    with pytest.raises(ExchangeRejected, match="Insufficient Balance"):
        await ex.place(req(BUY, "0.01", cid="m"))  # 10,005 > 5,950 available
    await ex.cancel("BTCZAR", exchange_order_id=placed.exchange_order_id)
    assert await funds(ex) == {"ZAR": (D(100000), 0), "BTC": (D("0.5"), 0)}
    await drain()
    assert rec.statuses[-1].state is OrderState.CANCELLED
    assert rec.statuses[-1].exchange_order_id == placed.exchange_order_id
    assert rec.open_orders[-1] == []
    status = await ex.order_status("BTCZAR", customer_order_id="big")
    assert status is not None
    assert status.state is OrderState.CANCELLED
    with pytest.raises(ExchangeRejected) as err:  # not open any more
        await ex.cancel("BTCZAR", exchange_order_id=placed.exchange_order_id)
    assert (err.value.message, err.value.venue_code) == ("Invalid Order. ", -1)
    await ex.close()


async def test_cancel_all_cancels_everything_and_reports_each(market: MarketData) -> None:
    ex, rec = await started(market)
    await ex.place(req(BUY, "0.01", LIMIT, "900000", cid="a"))
    await ex.place(req(SELL, "0.2", LIMIT, "1200000", cid="b"))
    await drain()
    rec.statuses.clear()
    assert await ex.cancel_all() == 2
    assert await ex.cancel_all() == 0
    assert await ex.open_orders() == []
    assert await funds(ex) == {"ZAR": (D(100000), 0), "BTC": (D("0.5"), 0)}
    await drain()
    assert sorted((s.customer_order_id, s.state) for s in rec.statuses) == [
        ("a", OrderState.CANCELLED),
        ("b", OrderState.CANCELLED),
    ]
    assert rec.open_orders[-1] == []
    await ex.close()


# ----------------------------------------------------------------------- events


async def test_events_arrive_after_place_returns_exactly_once(market: MarketData) -> None:
    ex, rec = await started(market)
    result = await ex.place(req(BUY, "0.01"))
    # Nothing is delivered inside place(): the caller records its placement first.
    assert rec.fills == []
    assert rec.statuses == []
    assert result.exchange_order_id is not None
    rec.placed.add(result.exchange_order_id)
    await drain()
    await asyncio.sleep(0.01)
    assert rec.early == []
    assert len(rec.fills) == 1
    assert [s.state for s in rec.statuses] == [OrderState.FILLED]
    await ex.close()
    assert len(rec.fills) == 1


async def test_start_sends_snapshots_and_close_drains_the_queue(market: MarketData) -> None:
    ex = PaperExchange(market, settings())
    rec = Recorder()
    await ex.start(rec)
    await ex.place(req(BUY, "0.01", cid="x"))
    await ex.close()  # delivers what is queued before returning
    assert rec.balances[0] == ([Balance("ZAR", D(100000)), Balance("BTC", D("0.5"))], True)
    assert rec.open_orders[0] == []
    assert len(rec.fills) == 1
    with pytest.raises(HeliosError):
        await ex.place(req(BUY, "0.01", cid="y"))


@pytest.mark.logs_exception("handler bug")
async def test_a_failing_event_handler_is_logged_and_delivery_goes_on(
    market: MarketData, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Recorder):
        async def on_fill(self, fill: Fill) -> None:
            raise RuntimeError("handler bug")

    ex = PaperExchange(market, settings())
    rec = Failing()
    await ex.start(rec)
    with caplog.at_level(logging.ERROR, logger="heliosd.builtin.paper"):
        await ex.place(req(BUY, "0.01"))
        await drain()
    assert [s.state for s in rec.statuses] == [OrderState.FILLED]
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("handler bug",)]
    await ex.close()


# ----------------------------------------------------------------------- lookups


async def test_order_status_trade_history_and_account_facts(market: MarketData) -> None:
    ex, _ = await started(market)
    t0 = datetime.now(UTC)
    filled = await ex.place(req(BUY, "0.01", cid="f"))
    resting = await ex.place(req(SELL, "0.01", LIMIT, "1100000", cid="r"))
    by_id = await ex.order_status("BTCZAR", exchange_order_id=filled.exchange_order_id)
    assert by_id is not None
    assert by_id.state is OrderState.FILLED
    assert by_id.customer_order_id == "f"
    by_cid = await ex.order_status("BTCZAR", customer_order_id="r")
    assert by_cid is not None
    assert by_cid.state is OrderState.PLACED
    assert by_cid.exchange_order_id == resting.exchange_order_id
    assert await ex.order_status("ETHZAR", customer_order_id="r") is None
    assert await ex.order_status("BTCZAR", customer_order_id="nope") is None
    history = await ex.trade_history()
    assert [f.customer_order_id for f in history] == ["f"]
    assert await ex.trade_history(since=t0) == history
    assert await ex.trade_history(since=datetime.now(UTC) + timedelta(seconds=1)) == []
    key = await ex.check_credentials()
    assert key.label == "paper"
    assert key.permissions == {"View access", "Trade"}
    assert "Withdraw" not in key.permissions
    assert await ex.positions() == []
    assert abs(await ex.server_time() - datetime.now(UTC)) < timedelta(seconds=5)
    assert (await ex.pairs())["BTCZAR"].min_base == D("0.0001")
    await ex.close()


# ----------------------------------------------------------------------- restart


async def test_restore_continues_exactly_where_the_last_run_stopped(market: MarketData) -> None:
    ex, rec = await started(market, maker_fee_pct=D("0.08"))
    await ex.place(req(BUY, "0.02", cid="m1"))
    await ex.place(req(SELL, "0.005", cid="m2"))
    await ex.place(req(BUY, "0.01", LIMIT, "990000", cid="l1"))
    await ex.place(req(SELL, "0.1", LIMIT, "1100000", cid="l2"))
    market.update(quote("985000", "989000"))  # fills l1 as maker
    await ex.place(req(BUY, "0.01", LIMIT, "950000", cid="l3"))
    await ex.close()
    before_funds = await funds(ex)
    before_open = await ex.open_orders()
    assert [o.customer_order_id for o in before_open] == ["l2", "l3"]
    stored_fills = list(reversed(rec.fills))  # any order: restore sorts by time

    again = PaperExchange(market, settings(maker_fee_pct=D("0.08")))
    again.restore(stored_fills, before_open)
    assert await funds(again) == before_funds
    assert await again.open_orders() == before_open
    assert await again.trade_history() == rec.fills
    status = await again.order_status("BTCZAR", customer_order_id="m1")
    assert status is not None
    assert status.state is OrderState.FILLED
    assert status.executed_quantity == D("0.02002003")  # grossed up for the fee

    rec2 = Recorder()
    await again.start(rec2)
    with pytest.raises(ExchangeRejected, match="Duplicate"):
        await again.place(req(BUY, "0.01", LIMIT, "900000", cid="l3"))
    market.update(quote("1100000", "1100001"))  # the restored sell fills as before
    await drain()
    assert [f.customer_order_id for f in rec2.fills] == ["l2"]
    assert [o.customer_order_id for o in await again.open_orders()] == ["l3"]
    await again.close()


async def test_restore_fills_orders_the_price_crossed_while_down(market: MarketData) -> None:
    ex, _ = await started(market)
    await ex.place(req(BUY, "0.01", LIMIT, "990000", cid="l1"))
    await ex.close()
    open_orders = await ex.open_orders()
    market.update(quote("980000", "985000"))  # while "down": nobody subscribed
    again = PaperExchange(market, settings())
    again.restore([], open_orders)
    rec = Recorder()
    await again.start(rec)
    await drain()
    assert [f.customer_order_id for f in rec.fills] == ["l1"]
    await again.close()


async def test_restore_reports_orders_that_cannot_rest_again(
    market: MarketData, caplog: pytest.LogCaptureFixture
) -> None:
    unfunded = OpenOrder("e-1", "BTCZAR", BUY, LIMIT, D(990000), D(1), D(1), "u-1")
    unknown = OpenOrder("e-2", "DOGEXYZ", BUY, LIMIT, D(1), D(100), D(100), "u-2")
    never_placed = OpenOrder("", "BTCZAR", BUY, LIMIT, D(900000), D("0.01"), D("0.01"), "u-3")
    ex = PaperExchange(market, settings())
    with caplog.at_level(logging.WARNING, logger="heliosd.builtin.paper"):
        ex.restore([], [unfunded, unknown, never_placed])
    assert len(caplog.records) == 2
    assert await ex.open_orders() == []
    assert await funds(ex) == {"ZAR": (D(100000), 0), "BTC": (D("0.5"), 0)}
    rec = Recorder()
    await ex.start(rec)
    await drain()
    assert [(s.exchange_order_id, s.state, s.failed_reason) for s in rec.statuses] == [
        ("e-1", OrderState.CANCELLED, "Insufficient Balance"),
        ("e-2", OrderState.CANCELLED, "Unsupported Currency Pair"),
    ]
    with pytest.raises(HeliosError):
        ex.restore([], [])  # too late once started
    await ex.close()


async def test_restore_refuses_a_fill_of_an_unreadable_pair(market: MarketData) -> None:
    fill = Fill("t-1", "DOGEXYZ", BUY, D(1), D(10), D(0), "DOGE", datetime.now(UTC))
    with pytest.raises(HeliosError, match="unknown pair DOGEXYZ"):
        PaperExchange(market, settings()).restore([fill], [])


async def test_restore_reads_pairs_not_loaded_yet_from_their_symbol(market: MarketData) -> None:
    """The core restores before the venue's pairs load: XRPZAR is not in the defaults."""
    fill = Fill("t-1", "XRPZAR", BUY, D(10), D(100), D("0.1"), "XRP", datetime.now(UTC))
    order = OpenOrder("e-1", "XRPZAR", SELL, LIMIT, D(12), D(50), D(50), "x-1")
    ex = PaperExchange(market, settings())
    ex.restore([fill], [order])
    assert await funds(ex) == {
        "ZAR": (D(99000), 0),
        "BTC": (D("0.5"), 0),
        "XRP": (D("49.9"), D(50)),
    }
    assert [o.customer_order_id for o in await ex.open_orders()] == ["x-1"]
    rec = Recorder()
    await ex.start(rec)
    market.update(quote("12", "13", pair="XRPZAR"))
    await drain()
    assert [(f.price, f.quantity) for f in rec.fills] == [(D(12), D(50))]
    assert (await funds(ex))["ZAR"] == (D(99600), 0)
    await ex.close()


async def test_restore_counts_a_trade_id_once(market: MarketData) -> None:
    fill = Fill("t-1", "BTCZAR", BUY, D(1000000), D("0.01"), D(0), "BTC", datetime.now(UTC))
    ex = PaperExchange(market, settings())
    ex.restore([fill, fill], [])
    assert await funds(ex) == {"ZAR": (D(90000), 0), "BTC": (D("0.51"), 0)}


# ----------------------------------------------------------------------- plugin


async def test_registered_as_paper_through_the_hook(market: MarketData) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(paper_module)
    registered: dict[str, ExchangeFactory] = {}
    pm.hook.heliosd_register_exchanges(
        register=lambda name, factory: registered.setdefault(name, factory), config=Settings()
    )
    assert list(registered) == ["paper"]
    client = registered["paper"](ExchangeContext(Settings(), Mode.PAPER, market))
    assert isinstance(client, PaperExchange)
    assert isinstance(client, ExchangeClient)
    assert client.name == "paper"
    # Settings defaults: 100,000 ZAR only.
    assert await client.balances() == [Balance("ZAR", D(100000))]


async def test_start_refuses_a_market_view_without_quotes() -> None:
    class Frozen:
        version = 0

        def pairs(self) -> dict[str, object]:
            return {}

    ex = PaperExchange(Frozen(), settings())  # type: ignore[arg-type]
    with pytest.raises(HeliosError, match="publishes quotes"):
        await ex.start(Recorder())


# ----------------------------------------------------------------------- speed


async def test_market_orders_cost_microseconds(market: MarketData) -> None:
    ex, _ = await started(market, starting_balances={"ZAR": D(10) ** 12, "BTC": D(0)})
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        await ex.place(req(BUY, "0.001", cid=f"p-{i}"))
    per_order = (time.perf_counter() - start) / n
    # About 20 us on our machines; loose so a busy CI box does not flake.
    assert per_order < 300e-6, per_order
    await ex.close()
