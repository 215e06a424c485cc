"""heliosd.risk.exposure's own contract: Exposure, the reserved exposure of one mode's open and
in-flight orders per base asset, fed order rows (track) and ledger fills (fill_applied),
priced through a real MarketData and read back through pending() / buy_value / version.

What other files already cover, not repeated here:
* tests/test_exposure_property.py: the position and leverage caps hold after every order the
  router's combined verdicts accept (Exposure reached through AccountRisk and the limits).
* tests/test_account.py: AccountRisk's snapshot of pending orders, a market order reported
  filled before its fill, orders first seen terminal or loaded open, reserve/release.
* tests/test_review_exposure.py: a balance row that does not show a fill does not settle it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from heliosd.core.types import (
    Fill,
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PairInfo,
    Quote,
    Side,
)
from heliosd.risk.exposure import MARKET_BUY_MARGIN, NO_PENDING, Exposure
from heliosd.risk.snapshot import Pending
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData

D = Decimal
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(100), D(10), D(10**9), D(1), 8)
ETHZAR = PairInfo("ETHZAR", "ETH", "ZAR", D("0.001"), D(1000), D(10), D(10**9), D(1), 8)
BTCUSDC = PairInfo("BTCUSDC", "BTC", "USDC", D("0.0001"), D(100), D(1), D(10**7), D("0.01"), 8)
XRPUSDT = PairInfo("XRPUSDT", "XRP", "USDT", D(1), D(10**6), D(1), D(10**7), D("0.0001"), 4)
UP = 1 + MARKET_BUY_MARGIN


class Book:
    """An Exposure wired as AccountRisk wires it: pairs and asks from a real MarketData, the
    rate of each quote currency in ZAR from a table (USDT's is unknown)."""

    def __init__(self) -> None:
        self.market = MarketData(
            {"BTCZAR": BTCZAR, "ETHZAR": ETHZAR, "BTCUSDC": BTCUSDC, "XRPUSDT": XRPUSDT}
        )
        self.ask("BTCZAR", "1000000")
        self.ask("ETHZAR", "50000")
        self.ask("BTCUSDC", "55000")
        self.ask("XRPUSDT", "2")
        self.rates = {"ZAR": D(1), "USDC": D(18)}
        self.exposure = Exposure(
            self.market.pair, lambda p: self.market.price_for(p, Side.BUY), self.rates.get
        )
        self.ids = 0

    def ask(self, pair: str, price: str | None) -> None:
        ask = None if price is None else D(price)
        self.market.update(Quote(pair, None if ask is None else ask - 1, ask, None, T0))

    def order(self, side: str, qty: str, *, price: str | None = None, pair: str = "BTCZAR",
              state: str = "new", filled: str = "0") -> dict[str, Any]:  # fmt: skip
        self.ids += 1
        r = {
            "id": self.ids, "mode": "LIVE", "pair": pair, "side": side,
            "type": "LIMIT" if price else "MARKET", "quantity": qty, "price": price,
            "state": state, "filled_quantity": filled,
        }  # fmt: skip
        self.exposure.track(r)
        return r

    def move(self, r: dict[str, Any], **changes: str) -> dict[str, Any]:
        r = {**r, **changes}  # a new row each change, as the store hands them out
        self.exposure.track(r)
        return r

    def pending(self, asset: str = "BTC") -> Pending:
        return self.exposure.pending().get(asset, NO_PENDING)


def test_a_limit_buy_reserves_its_remaining_quantity_at_its_price_in_the_reference() -> None:
    b = Book()
    b.order("BUY", "0.5", price="60000", pair="BTCUSDC")
    b.order("BUY", "0.01", price="990000")
    # Both BTC: one entry for the asset, whatever the quote currency; valued in ZAR.
    expected = D("0.5") * 60000 * 18 + D("0.01") * 990000
    assert b.pending() == Pending(D("0.51"), expected, D(0), 2, D(0))
    assert b.exposure.buy_value == expected
    assert set(b.exposure.pending()) == {"BTC"}


def test_a_market_buy_is_reserved_at_the_ask_plus_the_margin() -> None:
    b = Book()
    b.order("BUY", "2", pair="ETHZAR")
    assert b.pending("ETH").buy_value == 2 * D(50000) * UP
    assert b.exposure.buy_value == 2 * D(50000) * UP


def test_a_buy_keeps_the_price_it_was_first_seen_at_while_it_stays_open() -> None:
    b = Book()
    r = b.order("BUY", "1", pair="ETHZAR")
    b.ask("ETHZAR", "80000")  # the market moves: the reservation does not
    r = b.move(r, state="placed")
    b.exposure.fill_applied(r["id"], D("0.25"))
    b.move(r, state="partially_filled", filled_quantity="0.25")
    assert b.pending("ETH").buy_value == D("0.75") * 50000 * UP
    # A new order is priced at the market now.
    b.order("BUY", "1", pair="ETHZAR")
    assert b.pending("ETH").buy_value == D("0.75") * 50000 * UP + 80000 * UP


def test_an_unknown_ask_or_rate_counts_the_quantity_at_no_value() -> None:
    """The limits also value every pending quantity at the order's own price: a missing
    figure here must not drop the order, only its value."""
    b = Book()
    b.ask("ETHZAR", None)
    b.order("BUY", "3", pair="ETHZAR")  # a market BUY with no ask
    b.order("BUY", "100", price="2", pair="XRPUSDT")  # USDT's rate is unknown
    assert (b.pending("ETH").buy_quantity, b.pending("ETH").buy_value) == (D(3), D(0))
    assert (b.pending("XRP").buy_quantity, b.pending("XRP").buy_value) == (D(100), D(0))
    assert b.exposure.buy_value == 0


def test_an_order_in_a_pair_nobody_lists_counts_under_the_pair_symbol() -> None:
    b = Book()
    b.order("BUY", "5", price="10", pair="FOOZAR")
    b.order("SELL", "2", price="11", pair="FOOZAR")
    assert b.exposure.pending()["FOOZAR"] == Pending(D(5), D(0), D(2), 2, D(2))


def test_a_sell_is_in_flight_until_the_venue_acknowledges_it() -> None:
    b = Book()
    r = b.order("SELL", "0.3", price="1100000")
    assert b.pending() == Pending(D(0), D(0), D("0.3"), 1, D("0.3"))
    r = b.move(r, state="sent")
    assert b.pending().sell_in_flight == D("0.3")
    r = b.move(r, state="placed")
    assert b.pending() == Pending(D(0), D(0), D("0.3"), 1, D(0))
    b.exposure.fill_applied(r["id"], D("0.1"))
    assert b.pending().sell_quantity == D("0.2") and b.exposure.buy_value == 0


def test_tracking_the_same_row_again_changes_nothing() -> None:
    b = Book()
    r = b.order("BUY", "0.1", price="900000")
    view, version = b.exposure.pending(), b.exposure.version
    for _ in range(3):
        b.exposure.track(dict(r))
    assert b.exposure.version == version and b.exposure.pending() is view
    # A change that leaves the reservation as it was (new -> sent, a BUY) is no change either.
    b.move(r, state="sent")
    assert b.exposure.version == version and b.exposure.pending() is view


def test_pending_is_a_read_only_view_replaced_when_an_order_changes() -> None:
    b = Book()
    r = b.order("BUY", "0.1", price="900000")
    view, version = b.exposure.pending(), b.exposure.version
    with pytest.raises(TypeError):
        view["BTC"] = NO_PENDING  # type: ignore[index]
    b.move(r, state="cancelled")
    assert b.exposure.version > version
    assert b.exposure.pending() == {} and b.exposure.pending() is not view
    assert view["BTC"].buy_quantity == D("0.1")  # what a reader holds does not change


def test_a_fill_applied_moves_its_quantity_out_once_and_an_untracked_order_is_ignored() -> None:
    b = Book()
    r = b.order("BUY", "1", price="1000000", state="placed")
    # The ledger applies the fill before the order's new row is tracked (VenueSink's order).
    b.exposure.fill_applied(r["id"], D("0.4"))
    assert b.pending().buy_quantity == D("0.6")
    b.move(r, state="partially_filled", filled_quantity="0.4")
    assert b.pending().buy_quantity == D("0.6")  # the row's 0.4 is the same 0.4
    version = b.exposure.version
    b.exposure.fill_applied(999, D(1))  # an order never tracked (a hand trade)
    assert b.exposure.version == version and b.pending().buy_quantity == D("0.6")


def test_a_terminal_order_reserves_what_it_executed_until_the_ledger_has_it() -> None:
    b = Book()
    r = b.order("BUY", "1", price="1000000", state="placed")
    b.exposure.fill_applied(r["id"], D("0.1"))
    # Cancelled after trading 0.4 at the venue, of which the ledger has 0.1 so far.
    r = b.move(r, state="cancelled", filled_quantity="0.4")
    assert b.pending() == Pending(D("0.3"), D("0.3") * 1000000, D(0), 1, D(0))
    b.exposure.fill_applied(r["id"], D("0.3"))
    assert b.exposure.pending() == {} and b.exposure.buy_value == 0
    # Forgotten once all of it is in the ledger: a late duplicate changes nothing.
    version = b.exposure.version
    b.exposure.fill_applied(r["id"], D("0.3"))
    b.exposure.track(r)
    assert b.exposure.version == version and b.exposure.pending() == {}


def test_a_failed_order_the_venue_revives_counts_again() -> None:
    """rows.revives: "failed" may be heliosd's inference; a later venue fact reopens it."""
    b = Book()
    r = b.order("BUY", "1", price="1000000", state="sent")
    r = b.move(r, state="failed")
    assert b.exposure.pending() == {}
    r = b.move(r, state="partially_filled", filled_quantity="0.25")
    # First seen open again: what it says it executed is taken as in the ledger already.
    assert b.pending().buy_quantity == D("0.75")
    b.move(r, state="filled", filled_quantity="1")
    assert b.pending().buy_quantity == D("0.75")  # until the ledger applies the rest


def test_the_last_order_of_an_asset_leaves_no_entry_and_the_others_stand() -> None:
    b = Book()
    eth = b.order("BUY", "1", price="50000", pair="ETHZAR")
    btc = b.order("SELL", "0.2", price="1000000", state="placed")
    b.move(eth, state="cancelled")
    assert dict(b.exposure.pending()) == {"BTC": Pending(D(0), D(0), D("0.2"), 1, D(0))}
    assert b.exposure.buy_value == 0
    b.move(btc, state="cancelled")
    assert b.exposure.pending() == {}


def test_forget_drops_every_reservation_and_the_next_rows_count_as_first_seen() -> None:
    b = Book()
    r = b.order("BUY", "1", price="1000000", state="placed")
    b.order("SELL", "0.5", pair="ETHZAR")
    version = b.exposure.version
    b.exposure.forget()
    assert b.exposure.pending() == {} and b.exposure.buy_value == 0
    assert b.exposure.version > version
    b.exposure.fill_applied(r["id"], D("0.5"))  # no longer tracked: ignored
    # The rebuild tracks the stored rows: an open one's fills are in the rebuilt ledger.
    b.move(r, state="partially_filled", filled_quantity="0.5")
    assert b.pending() == Pending(D("0.5"), D("0.5") * 1000000, D(0), 1, D(0))


async def test_rows_from_a_real_store_reserve_until_their_fills_are_applied(
    tmp_path: Path,
) -> None:
    """The rows the store hands out (orders.insert_order, apply_fill's outcomes) are what
    Exposure takes in; each fill is applied to the ledger before the new row is tracked."""
    b = Book()
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D("0.02"), D(990000))
    store = await Store.open(tmp_path / "h.db")
    try:
        new = od.NewOrder(Mode.LIVE, intent, D("0.01"), (), "t", customer_order_id="hd-a")
        stored = await store.write(lambda c: od.insert_order(c, new))
        b.exposure.track(stored)  # reserved at the capped quantity, its limit price
        assert b.pending() == Pending(D("0.01"), D("0.01") * 990000, D(0), 1, D(0))
        for n, qty in enumerate(("0.004", "0.006")):
            f = Fill(f"t{n}", "BTCZAR", Side.BUY, D(990000), D(qty), D(0), "BTC", T0,
                     customer_order_id="hd-a")  # fmt: skip
            outcome = await store.write(lambda c, f=f: od.apply_fill(c, Mode.LIVE, f))
            assert outcome is not None and outcome["order"] is not None
            b.exposure.fill_applied(stored["id"], f.quantity)
            b.exposure.track(outcome["order"])
        assert outcome["order"]["state"] == "filled"
        assert b.exposure.pending() == {} and b.exposure.buy_value == 0
    finally:
        await store.close()


# ---------------------------------------------------------------------- incremental == recount

_PAIRS = {"BTCZAR": BTCZAR, "ETHZAR": ETHZAR, "BTCUSDC": BTCUSDC, "XRPUSDT": XRPUSDT}
_RATES = {"ZAR": D(1), "USDC": D(18)}
_UNACKED = ("new", "sent")


@dataclass
class _Model:
    """What each order should reserve, recounted from scratch after every step."""

    row: dict[str, Any]
    applied: Decimal
    unit: Decimal
    tracked: bool = True

    def outstanding(self) -> Decimal:
        q = D(self.row["quantity"])
        state = OrderState(self.row["state"])
        if state.is_open:
            return q - self.applied
        executed = q if state is OrderState.FILLED else D(self.row["filled_quantity"])
        return executed - self.applied


def _unit(book: Book, row: Mapping[str, Any]) -> Decimal:
    info = _PAIRS.get(row["pair"])
    if row["side"] != "BUY" or info is None:
        return D(0)
    if row["price"]:
        price: Decimal | None = D(row["price"])
    else:
        ask = book.market.price_for(row["pair"], Side.BUY)
        price = None if ask is None else ask * UP
    rate = _RATES.get(info.quote)
    return D(0) if price is None or rate is None else price * rate


def _recount(models: list[_Model]) -> dict[str, Pending]:
    out: dict[str, Pending] = {}
    for m in models:
        left = m.outstanding()
        if not m.tracked or left <= 0:
            continue
        info = _PAIRS.get(m.row["pair"])
        asset = info.base if info is not None else m.row["pair"]
        p = out.get(asset, NO_PENDING)
        buy = m.row["side"] == "BUY"
        out[asset] = Pending(
            p.buy_quantity + (left if buy else 0), p.buy_value + (left * m.unit if buy else 0),
            p.sell_quantity + (0 if buy else left), p.orders + 1,
            p.sell_in_flight + (left if not buy and m.row["state"] in _UNACKED else 0),
        )  # fmt: skip
    return out


_STEPS = hs.lists(
    hs.one_of(
        hs.tuples(
            hs.just("order"),
            hs.sampled_from([*_PAIRS, "FOOZAR"]),
            hs.sampled_from(["BUY", "SELL"]),
            hs.booleans(),
            hs.integers(1, 400),
            hs.sampled_from(["new", "placed", "partially_filled"]),
        ),
        hs.tuples(hs.just("fill"), hs.integers(0, 9), hs.sampled_from(["0.25", "0.5", "1"])),
        hs.tuples(
            hs.just("row"),
            hs.integers(0, 9),
            hs.sampled_from(list(OrderState)),
            hs.sampled_from(["0", "0.5", "1"]),
        ),
        hs.tuples(hs.just("ask"), hs.integers(0, 9), hs.integers(0, 3)),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(_STEPS)
def test_incremental_totals_always_equal_a_recount_of_the_orders(steps: list[Any]) -> None:
    """Any mix of new orders (born here or loaded part-filled), fills the ledger applies,
    forward row changes (revivals too) and market moves: pending() and buy_value are always
    the sum of each order's own reservation, valued at the price it was first seen at."""
    b = Book()
    models: list[_Model] = []
    for step in steps:
        if step[0] == "order":
            _, pair, side, limit, qty, state = step
            quantity = D(qty) / 100
            filled = (quantity / 4) if state == "partially_filled" else D(0)
            price = str(_PAIRS[pair].min_quote * 1000) if limit and pair in _PAIRS else None
            price = price or ("3" if limit else None)
            r = b.order(side, str(quantity), price=price, pair=pair, state=state,
                        filled=str(filled))  # fmt: skip
            models.append(_Model(r, filled, _unit(b, r)))
        elif step[0] == "fill" and models:
            m = models[step[1] % len(models)]
            qty = max(D(m.row["quantity"]) - m.applied, D(0)) * D(step[2])
            if qty > 0:
                b.exposure.fill_applied(m.row["id"], qty)
                if m.tracked:
                    m.applied += qty
        elif step[0] == "row" and models:
            m = models[step[1] % len(models)]
            old, new = OrderState(m.row["state"]), step[2]
            if not (od.can_move(old, new) or od.revives(old, new)):
                continue
            filled = max(D(m.row["filled_quantity"]), D(m.row["quantity"]) * D(step[3]))
            r = b.move(m.row, state=str(new), filled_quantity=str(filled))
            if not m.tracked and new.is_open:  # first seen again: its fills are applied
                m.tracked, m.applied, m.unit = True, filled, _unit(b, r)
            m.row = r
        elif step[0] == "ask" and models:  # the market of one of the orders moves
            pair = models[step[1] % len(models)].row["pair"]
            if pair in _PAIRS:
                k = step[2]
                b.ask(pair, None if k == 0 else str(_PAIRS[pair].tick_size * 10**5 * k))
        for m in models:  # done, and all of it in the ledger: forgotten
            if m.tracked and OrderState(m.row["state"]).is_terminal and m.outstanding() <= 0:
                m.tracked = False
        expected = _recount(models)
        assert dict(b.exposure.pending()) == expected, step
        assert b.exposure.buy_value == sum((p.buy_value for p in expected.values()), D(0))
