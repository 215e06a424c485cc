"""heliosd.risk.account and heliosd.risk.exposure: one account risk model per mode, against a
real Ledger, real MarketData and the real order counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from heliosd.builtin.limits import LeverageLimit, PositionLimit
from heliosd.core.config import Settings
from heliosd.core.protocols import RiskContext
from heliosd.core.types import (
    Balance,
    Fill,
    Mode,
    OrderIntent,
    OrderType,
    PairInfo,
    Quote,
    Side,
    VerdictAction,
    utcnow,
)
from heliosd.risk.account import AccountRisk, MarketPricer
from heliosd.risk.exposure import MARKET_BUY_MARGIN
from heliosd.risk.ledger import Ledger
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData

D = Decimal
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def after_snapshot() -> datetime:
    """A fill's trade time after the venue's last balance snapshot (one traded before it is
    in it already, so it would never be unsettled)."""
    return utcnow() + timedelta(milliseconds=1)


BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)
ETHZAR = PairInfo("ETHZAR", "ETH", "ZAR", D("0.001"), D(50), D(10), D(5000000), D(1), 8)
BTCUSDC = PairInfo("BTCUSDC", "BTC", "USDC", D("0.0001"), D(2), D(10), D(500000), D("0.01"), 8)
SETTINGS = Settings()


class Rig:
    """A LIVE account: ledger with venue balances, market, counters feeding AccountRisk."""

    def __init__(self, **balances: str) -> None:
        self.market = MarketData({"BTCZAR": BTCZAR, "ETHZAR": ETHZAR, "BTCUSDC": BTCUSDC})
        self.market.update(Quote("BTCZAR", D(999000), D(1000000), None, T0))
        self.ledger = Ledger(
            Mode.LIVE, "ZAR", SETTINGS.risk.tz, self.market.pairs(), self.market,
            traded=("BTCZAR", "ETHZAR"),
        )  # fmt: skip
        self.ledger.set_balances([Balance(c, D(v)) for c, v in balances.items()], snapshot=True)
        self.account = AccountRisk(Mode.LIVE, self.ledger, self.market)
        self.counters = od.OrderCounters()
        self.counters.accounts[Mode.LIVE] = self.account
        self.next_id = 0
        self.fills: dict[int, Decimal] = {}

    def order(self, side: str, qty: str, *, price: str | None = None, state: str = "new",
              pair: str = "BTCZAR", filled: str = "0") -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        row = {
            "id": self.next_id, "mode": "LIVE", "pair": pair, "side": side,
            "type": "LIMIT" if price else "MARKET", "quantity": qty, "price": price,
            "state": state, "filled_quantity": filled,
        }  # fmt: skip
        self.counters.track(row)
        return row

    def move(self, row: dict[str, Any], **changes: str) -> None:
        row.update(changes)
        self.counters.track(row)

    def fill(self, row: dict[str, Any], qty: str, price: str = "1000000") -> None:
        """What the venue sink does for a new fill: ledger, then the counters."""
        fill = Fill(
            trade_id=f"t{row['id']}-{qty}", pair=row["pair"], side=Side(row["side"]),
            price=D(price), quantity=D(qty), fee=D(0), fee_currency="ZAR",
            traded_at=after_snapshot(),
        )  # fmt: skip
        self.ledger.apply_fill(fill)
        self.counters.fill_applied(Mode.LIVE, row["id"], D(qty))
        # As orders.apply_fills: max(the venue's executed figure, the stored fills' sum).
        self.fills[row["id"]] = self.fills.get(row["id"], D(0)) + D(qty)
        filled = max(D(row["filled_quantity"]), self.fills[row["id"]])
        state = "filled" if filled >= D(row["quantity"]) else "partially_filled"
        self.move(row, filled_quantity=str(filled), state=state)

    def ctx(self) -> RiskContext:
        return RiskContext(
            Mode.LIVE, SETTINGS, self.market.pair("BTCZAR"), self.ledger, self.market, {},
            T0, self.counters, {}, self.account.snapshot(),
        )  # fmt: skip


def buy(qty: str, price: str | None = None) -> OrderIntent:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderIntent("BTCZAR", Side.BUY, kind, D(qty), D(price) if price else None)


def sell(qty: str) -> OrderIntent:
    return OrderIntent("BTCZAR", Side.SELL, OrderType.MARKET, D(qty), None)


def test_open_orders_reserve_their_remaining_quantity_until_terminal() -> None:
    rig = Rig(ZAR="100000")
    limit = rig.order("BUY", "0.015", price="990000")
    rig.order("BUY", "0.01")
    sale = rig.order("SELL", "0.002", price="1100000")
    p = rig.account.snapshot().pending["BTC"]
    assert p.buy_quantity == D("0.025")
    # The LIMIT at its price; the MARKET BUY at the ask plus the margin.
    assert p.buy_value == D("0.015") * 990000 + D("0.01") * D(1000000) * (1 + MARKET_BUY_MARGIN)
    assert p.sell_quantity == D("0.002")
    assert p.orders == 3

    rig.move(limit, state="placed")
    rig.move(limit, state="partially_filled", filled_quantity="0.005")  # status, no fill yet
    assert rig.account.snapshot().pending["BTC"].buy_quantity == D("0.025")  # not in ledger
    rig.fill(limit, "0.005", "990000")
    assert rig.account.snapshot().pending["BTC"].buy_quantity == D("0.02")
    rig.move(limit, state="cancelled")
    rig.move(sale, state="cancelled")
    snap = rig.account.snapshot()
    assert snap.pending["BTC"].buy_quantity == D("0.01")
    assert snap.pending["BTC"].sell_quantity == 0
    assert snap.pending_buy_value == D("0.01") * D(1000000) * (1 + MARKET_BUY_MARGIN)
    # The coin bought shows in the holding as unsettled until the venue reports BTC.
    assert snap.holdings["BTC"].unsettled == D("0.005")
    rig.ledger.set_balances([Balance("BTC", D("0.005"))], snapshot=False)
    assert rig.account.snapshot().holdings["BTC"].unsettled == 0
    assert rig.account.snapshot().holdings["BTC"].total == D("0.005")


def test_a_market_order_reported_filled_still_counts_until_its_fill_arrives() -> None:
    rig = Rig(ZAR="100000")
    row = rig.order("BUY", "0.015")
    rig.move(row, state="filled")  # VALR's status lookup after placing: filled, no fill yet
    assert rig.account.snapshot().pending["BTC"].buy_quantity == D("0.015")
    rig.fill(row, "0.015")
    snap = rig.account.snapshot()
    assert "BTC" not in snap.pending  # moved to the holding, unsettled until the balance
    assert snap.holdings["BTC"].unsettled == D("0.015")
    # And the position limit counts it: 15% held, another 10% would be 25%.
    verdict = PositionLimit().check(buy("0.01"), rig.ctx())
    assert verdict.action is VerdictAction.CAP
    assert verdict.details["held"] == "15000.00"


def test_orders_first_seen_terminal_reserve_nothing_and_open_ones_count_their_fills() -> None:
    rig = Rig(ZAR="100000", BTC="0.01")
    rig.order("BUY", "0.5", state="filled", filled="0.5")  # an old order, done long ago
    loaded = rig.order("BUY", "0.02", price="990000", state="partially_filled", filled="0.005")
    p = rig.account.snapshot().pending["BTC"]
    assert p.buy_quantity == D("0.015") and p.orders == 1
    rig.move(loaded, state="cancelled")
    assert rig.account.snapshot().pending == {}


def test_five_resting_buys_of_15_percent_cannot_all_pass_uncapped() -> None:
    rig = Rig(ZAR="100000")
    rule = PositionLimit()
    accepted = []
    for _ in range(5):
        ctx = rig.ctx()
        verdict = rule.check(buy("0.015", "1000000"), ctx)  # 15,000 ZAR each
        if verdict.action is VerdictAction.REJECT:
            break
        qty = verdict.quantity if verdict.action is VerdictAction.CAP else D("0.015")
        assert qty is not None
        accepted.append(qty)
        rig.order("BUY", str(qty), price="1000000")
    assert accepted == [D("0.015"), D("0.005")]  # 15% + 5% = the 20% cap, then no room
    verdict = rule.check(buy("0.001", "1000000"), rig.ctx())
    assert verdict.action is VerdictAction.REJECT
    assert "held 0.00 + pending buys 20000.00 + this order 1000.00 = 21000.00 ZAR" in (
        verdict.reason
    )
    assert verdict.details["pending_orders"] == "2"


def test_a_sell_with_nothing_held_is_rejected_not_capped_to_a_short() -> None:
    rig = Rig(ZAR="100000")
    verdict = PositionLimit().check(sell("0.01"), rig.ctx())
    assert verdict.action is VerdictAction.REJECT
    assert verdict.reason == (
        "SELL 0.01 BTC exceeds the free 0 BTC (held 0, in open and in-flight sells 0):"
        " nothing left to sell; no spot shorts"
    )


def test_sells_are_capped_to_the_holding_less_open_sells() -> None:
    rig = Rig(ZAR="100000", BTC="0.01")
    rig.order("SELL", "0.006", price="1100000")
    verdict = PositionLimit().check(sell("0.01"), rig.ctx())
    assert verdict.action is VerdictAction.CAP
    assert verdict.quantity == D("0.004")
    assert verdict.details == {
        "requested": "0.01", "held": "0.01", "pending_sells": "0.006", "free": "0.004",
        "allowed": "0.00400000",
    }  # fmt: skip
    ok = PositionLimit().check(sell("0.004"), rig.ctx())
    assert ok.action is VerdictAction.ACCEPT and ok.reason == "reduces the position"
    rig.order("SELL", "0.004")
    assert PositionLimit().check(sell("0.0001"), rig.ctx()).action is VerdictAction.REJECT


def test_leverage_counts_pending_buys_of_every_asset() -> None:
    rig = Rig(ZAR="100000")
    rig.market.update(Quote("ETHZAR", D(59000), D(60000), None, T0))
    # 2.9x of equity pending in ETH: a 0.2x BTC order would take the account over 3x.
    rig.order("BUY", "4.8333", pair="ETHZAR", price="60000")
    verdict = LeverageLimit().check(buy("0.02", "1000000"), rig.ctx())
    assert verdict.action is VerdictAction.REJECT
    assert verdict.details["rest"] == "289998.00"
    assert verdict.details["order"] == "20000.00"


def test_the_snapshot_is_one_object_until_something_changes() -> None:
    rig = Rig(ZAR="100000", BTC="0.01")
    first = rig.account.snapshot()
    assert rig.account.snapshot() is first
    assert first.equity == D(100000) + D("0.01") * D(999500)
    assert first.holdings["BTC"].price.source == "stream"
    assert first.holdings["BTC"].price.age_s is None  # the fallback knows no age: unknown
    assert first.stale == ("BTC",)
    rig.order("BUY", "0.001")
    second = rig.account.snapshot()
    assert second is not first and second.pending["BTC"].orders == 1
    rig.market.update(Quote("BTCZAR", D(1999000), D(2000000), None, T0))
    third = rig.account.snapshot()
    assert third is not second and third.equity == D(100000) + D("0.01") * D(1999500)
    rig.ledger.set_balances([Balance("ZAR", D(5))], snapshot=True)
    assert rig.account.snapshot().equity == D(5)


def test_every_asset_is_held_and_valued_and_external_ones_are_marked() -> None:
    rig = Rig(ZAR="1000", USDC="50", DOGE="7")
    rig.market.update(Quote("USDCZAR", D(18), D(18), None, T0))
    snap = rig.account.snapshot()
    assert set(snap.holdings) == {"ZAR", "USDC", "DOGE"}
    usdc, doge = snap.holdings["USDC"], snap.holdings["DOGE"]
    assert usdc.external and usdc.value == D(900)
    assert doge.external and doge.price.value is None and doge.value == 0
    assert not snap.holdings["ZAR"].external
    rows = {r["asset"]: r for r in rig.account.positions_json()}
    assert rows["USDC"]["external"] is True and rows["USDC"]["notional"] == "900"
    assert rows["DOGE"]["mark"] is None


def test_a_hand_trade_in_an_untraded_pair_is_booked_and_shown_external() -> None:
    rig = Rig(ZAR="1000")
    fill = Fill("hand-1", "BTCUSDC", Side.BUY, D(60000), D("0.001"), D(0), "USDC", T0)
    assert rig.ledger.apply_or_record(fill) is None
    [row] = [r for r in rig.account.positions_json() if r["pair"] == "BTCUSDC"]
    assert row["external"] is True and row["average_cost"] == "60000"


def test_a_pair_the_venue_never_listed_is_inferred_and_nonsense_is_recorded() -> None:
    market = MarketData({"BTCZAR": BTCZAR})
    ledger = Ledger(Mode.LIVE, "ZAR", SETTINGS.risk.tz, market.pairs(), market)
    good = Fill("a", "SOLUSDT", Side.BUY, D(150), D(2), D(0), "USDT", T0)
    bad = Fill("b", "???", Side.BUY, D(1), D(1), D(0), "ZAR", T0)
    errors = ledger.rebuild([good, bad])
    assert [e.trade_id for e in errors] == ["b"]
    assert ledger.errors == errors and "unknown pair ???" in errors[0].reason
    assert ledger.pair_info("SOLUSDT") is not None
    assert ledger.pair_info("SOLUSDT").base == "SOL"  # type: ignore[union-attr]


def test_positions_reconcile_to_the_venue_holding() -> None:
    rig = Rig(ZAR="100000")
    row = rig.order("BUY", "0.02")
    rig.fill(row, "0.02", "1000000")
    rig.ledger.set_balances([Balance("BTC", D("0.02"))], snapshot=False)
    rig.market.update(Quote("BTCZAR", D(1099000), D(1101000), None, T0))
    [pos] = [r for r in rig.account.positions_json() if r["pair"] == "BTCZAR"]
    assert pos["unrealized_pnl"] == "2000"  # 0.02 x (1,100,000 - 1,000,000)
    # Half sold by hand on the website: the book shrinks at its average cost, no realized.
    rig.ledger.set_balances([Balance("BTC", D("0.01"))], snapshot=False)
    [pos] = [r for r in rig.account.positions_json() if r["pair"] == "BTCZAR"]
    assert pos["quantity"] == "0.01" and pos["average_cost"] == "1000000"
    assert pos["unrealized_pnl"] == "1000" and pos["realized_pnl"] == "0"
    # All of it gone: quantity 0, no phantom P&L tracking the mark.
    rig.ledger.set_balances([Balance("BTC", D(0))], snapshot=False)
    rig.market.update(Quote("BTCZAR", D(1199000), D(1201000), None, T0))
    [pos] = [r for r in rig.account.positions_json() if r["pair"] == "BTCZAR"]
    assert pos["quantity"] == "0" and pos["unrealized_pnl"] == "0"
    assert rig.ledger.unrealized_pnl() == 0
    # A deposit of 0.05: inventory without cost basis, valued, no unrealized P&L.
    rig.ledger.set_balances([Balance("BTC", D("0.05"))], snapshot=False)
    [pos] = [r for r in rig.account.positions_json() if r["pair"] == "BTCZAR"]
    assert pos["notional"] == "60000" and pos["unrealized_pnl"] == "4000"  # 0.02 booked


def test_the_fallback_pricer_values_through_marks_then_last_fills() -> None:
    market = MarketData({"BTCZAR": BTCZAR})
    last = {"ETHZAR": D(50000)}
    pricer = MarketPricer(market, "ZAR", last.get)
    assert pricer.price("ZAR").value == 1 and pricer.price("ZAR").age_s == 0
    assert pricer.price("BTC").value is None and pricer.price("BTC").source == "none"
    assert pricer.price("ETH").value == D(50000) and pricer.price("ETH").source == "last_fill"
    version = pricer.version
    market.update(Quote("BTCZAR", D(10), D(12), None, T0))
    assert pricer.version != version and pricer.price("BTC").value == D(11)


def test_a_reservation_made_before_the_row_is_stored_counts_until_released() -> None:
    """For the router: an order evaluated and waiting for its commit already counts, so a
    second order evaluated meanwhile cannot take the same room."""
    rig = Rig(ZAR="100000")
    release = rig.counters.reserve(Mode.LIVE, buy("0.015", "1000000"), D("0.015"))
    verdict = PositionLimit().check(buy("0.015", "1000000"), rig.ctx())
    assert verdict.action is VerdictAction.CAP and verdict.quantity == D("0.005")
    stored = rig.order("BUY", "0.015", price="1000000")  # the stored row is tracked...
    release()  # ...then the provisional reservation goes
    release()  # idempotent
    p = rig.account.snapshot().pending["BTC"]
    assert p.buy_quantity == D("0.015") and p.orders == 1
    rig.move(stored, state="cancelled")
    assert rig.account.snapshot().pending == {}
    assert rig.counters.reserve(Mode.PAPER, buy("1"), D(1))() is None  # no model: nothing
