"""The matching engine without HTTP: money is conserved and reservations always add up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.sim import SimConfig
from heliosd.sim.matching import Exchange
from heliosd.sim.orders import ZERO
from heliosd.sim.validation import LimitRequest, MarketRequest

ACCOUNTS = ("0", "1")
CURRENCIES = ("ZAR", "BTC")


def fresh(maker_fee: str = "0") -> Exchange:
    exchange = Exchange(SimConfig(price_interval_s=None, maker_fee_pct=Decimal(maker_fee)))
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
@given(st.lists(action, max_size=30), st.sampled_from(["0", "0.05", "-0.01"]))
def test_reservations_always_add_up(steps: list[tuple[Any, ...]], maker_fee: str) -> None:
    exchange = fresh(maker_fee)
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
