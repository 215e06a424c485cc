"""The matching engine without HTTP: money is conserved and reservations always add up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.sim import SimConfig, wire
from heliosd.sim.config import FaultConfig
from heliosd.sim.matching import Exchange
from heliosd.sim.orders import ZERO
from heliosd.sim.validation import LimitRequest, MarketRequest

ACCOUNTS = ("0", "1")
CURRENCIES = ("ZAR", "BTC")


def fresh(maker_fee: str = "0", rebate_bps: int = 0) -> Exchange:
    exchange = Exchange(
        SimConfig(price_interval_s=None, maker_fee_pct=Decimal(maker_fee)),
        faults=FaultConfig(maker_rebate_bps=rebate_bps),
    )
    for account in ACCOUNTS:
        exchange.fund(account, "ZAR", Decimal("500000"))
        exchange.fund(account, "BTC", Decimal("0.5"))
    return exchange


def check_invariants(exchange: Exchange) -> None:
    for account_id in ACCOUNTS:
        acct = exchange.account(account_id)
        held: dict[str, Decimal] = {c: ZERO for c in CURRENCIES}
        for order in acct.open_orders.values():
            assert order.is_open
            assert order.remaining > 0
            held[order.reserved_currency] += order.reserved_amount
        for order in acct.orders.values():
            if not order.is_open:
                assert order.reserved_amount == 0, order
                assert order.order_id not in acct.open_orders
        for currency in CURRENCIES:
            bal = acct.balance(currency)
            assert bal.available >= 0, (account_id, currency, bal)
            assert bal.reserved == held[currency], (account_id, currency, bal, held)
    book = exchange.markets["BTCZAR"]
    open_ids = {o for a in ACCOUNTS for o in exchange.account(a).open_orders}
    assert set(book.resting) == open_ids


action = st.one_of(
    st.tuples(
        st.just("limit"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 300).map(lambda n: Decimal(n) / 1000),  # 0.001 .. 0.3 BTC
        st.integers(980_000, 1_020_000).map(Decimal),
        st.sampled_from(["GTC", "GTC", "IOC", "FOK"]),
        st.booleans(),
    ),
    st.tuples(
        st.just("market"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 100).map(lambda n: Decimal(n) / 1000),
    ),
    st.tuples(st.just("price"), st.integers(970_000, 1_030_000).map(Decimal)),
    st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 5)),
    st.tuples(st.just("cancel_all"), st.sampled_from(ACCOUNTS)),
)


def apply(exchange: Exchange, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "limit":
        _, account, side, qty, price, tif, post_only = step
        req = LimitRequest(
            "BTCZAR", side, qty, price, bool(post_only) and tif == "GTC", str(tif), None, False
        )
        exchange.execute(exchange.new_order(str(account), req), req)
    elif kind == "market":
        _, account, side, qty = step
        mreq = MarketRequest("BTCZAR", side, qty, None, None)
        exchange.execute(exchange.new_order(str(account), mreq), mreq)
    elif kind == "price":
        exchange.set_price("BTCZAR", step[1])
    elif kind == "cancel":
        acct = exchange.account(str(step[1]))
        opened = list(acct.open_orders.values())
        if opened:
            order = opened[int(step[2]) % len(opened)]
            assert exchange.cancel(acct.account_id, "BTCZAR", order.order_id, None) is order
    else:
        exchange.cancel_all(str(step[1]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(action, max_size=30),
    st.sampled_from([("0", 0), ("0.05", 0), ("-0.01", 0), ("0.05", 3)]),
)
def test_reservations_always_add_up(steps: list[tuple[Any, ...]], fees: tuple[str, int]) -> None:
    exchange = fresh(*fees)
    for step in steps:
        apply(exchange, step)
        check_invariants(exchange)
    for account in ACCOUNTS:
        exchange.cancel_all(account)
        for currency in CURRENCIES:
            assert exchange.account(account).balance(currency).reserved == 0


def test_fills_conserve_money_between_two_accounts() -> None:
    exchange = fresh()
    sell = LimitRequest(
        "BTCZAR", "sell", Decimal("0.1"), Decimal("1000100"), False, "GTC", None, False
    )
    exchange.execute(exchange.new_order("0", sell), sell)
    buy = LimitRequest(
        "BTCZAR", "buy", Decimal("0.1"), Decimal("1000300"), False, "GTC", None, False
    )
    exchange.execute(exchange.new_order("1", buy), buy)
    zar = sum(exchange.account(a).balance("ZAR").total for a in ACCOUNTS)
    btc = sum(exchange.account(a).balance("BTC").total for a in ACCOUNTS)
    fee = Decimal("0.1") * Decimal("0.001")  # the taker's fee, in BTC, leaves the system
    assert zar == Decimal("1000000")
    assert btc == Decimal("1") - fee
    check_invariants(exchange)


def test_best_prices_skip_emptied_market_maker_levels() -> None:
    exchange = fresh()
    market = exchange.markets["BTCZAR"]
    top = market.mm_asks[0]
    top.quantity = ZERO
    assert market.best_ask() == market.mm_asks[1].price


def rest_buy(exchange: Exchange, qty: str, price: str) -> str:
    req = LimitRequest("BTCZAR", "buy", Decimal(qty), Decimal(price), True, "GTC", None, False)
    order = exchange.new_order("0", req)
    assert exchange.execute(order, req) == ""
    return order.order_id


def test_maker_rebate_mode_pays_the_maker_in_the_currency_a_fee_is_paid_in() -> None:
    # 2 bps: a resting buy of 0.1 BTC at 990,000 fills as maker when the market falls through
    # it and earns 0.0002 x 99,000 = 19.80 ZAR; a resting sell earns its rebate in BTC.
    exchange = fresh(rebate_bps=2)
    assert exchange.maker_fee_rate == Decimal("-0.0002")
    order_id = rest_buy(exchange, "0.1", "990000")
    reserved = exchange.account("0").balance("ZAR").reserved
    assert reserved == Decimal(99000)  # no maker fee reserved when makers earn
    exchange.set_price("BTCZAR", Decimal(980000))
    [trade] = [t for t in exchange.account("0").trades if t.order_id == order_id]
    assert (trade.maker, trade.fee, trade.fee_currency) == (True, Decimal("-19.80"), "ZAR")
    zar, btc = exchange.account("0").balance("ZAR"), exchange.account("0").balance("BTC")
    assert (zar.total, zar.reserved) == (Decimal("500000") - 99000 + Decimal("19.80"), 0)
    assert btc.total == Decimal("0.6")
    row = wire.account_trade(trade)
    assert (row["makerReward"], row["makerRewardCurrency"]) == ("19.8", "ZAR")
    assert "fee" not in row and "feeCurrency" not in row

    sell = LimitRequest(
        "BTCZAR", "sell", Decimal("0.1"), Decimal("990000"), True, "GTC", None, False
    )
    exchange.execute(exchange.new_order("0", sell), sell)
    exchange.set_price("BTCZAR", Decimal(1000000))
    last = exchange.account("0").trades[-1]
    assert (last.side, last.fee, last.fee_currency) == ("sell", Decimal("-0.00002"), "BTC")
    assert exchange.account("0").balance("BTC").total == Decimal("0.50002")
    check_invariants(exchange)


def test_the_rebate_shape_is_fixed_per_trade_and_taker_fills_never_carry_a_reward() -> None:
    exchange = fresh(rebate_bps=1)
    exchange.faults.maker_reward_shape = "both"
    rest_buy(exchange, "0.01", "990000")
    exchange.set_price("BTCZAR", Decimal(980000))
    exchange.faults.maker_reward_shape = "fee"
    rest_buy(exchange, "0.01", "970000")
    exchange.set_price("BTCZAR", Decimal(960000))
    both, negative = (wire.account_trade(t) for t in exchange.account("0").trades)
    assert (both["fee"], both["feeCurrency"], both["makerReward"]) == ("0", "ZAR", "0.99")
    assert (negative["fee"], negative["feeCurrency"]) == ("-0.97", "ZAR")
    assert "makerReward" not in negative
    market = MarketRequest("BTCZAR", "buy", Decimal("0.01"), None, None)
    exchange.execute(exchange.new_order("1", market), market)
    taker = wire.account_trade(exchange.account("1").trades[-1])
    assert Decimal(taker["fee"]) > 0 and "makerReward" not in taker
