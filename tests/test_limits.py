"""The four essential risk rules, run against a real Ledger and real MarketData."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pluggy
import pytest

from heliosd.builtin import limits
from heliosd.builtin.limits import (
    DAILY_LOSS,
    DRAWDOWN,
    EMPTY_ACCOUNT,
    DailyLossLimit,
    DrawdownLimit,
    LeverageLimit,
    PositionLimit,
)
from heliosd.core.config import Settings
from heliosd.core.protocols import BreakerState, RiskContext, RiskRule
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
)
from heliosd.plugins import hookspecs
from heliosd.risk.ledger import Ledger
from heliosd.trading.marketdata import MarketData

D = Decimal
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)
PAIRS = {"BTCZAR": BTCZAR}
SETTINGS = Settings()


class Counters:
    """The order counters a RiskContext carries (unused by these rules)."""

    def orders_since(self, since: datetime, mode: Mode | None = None) -> int:
        return 0

    def open_orders(self, pair: str | None = None, mode: Mode | None = None) -> int:
        return 0


def market(bid: str | None = "1199000", ask: str | None = "1200000") -> MarketData:
    m = MarketData(PAIRS)
    if bid is not None or ask is not None:
        m.update(Quote("BTCZAR", D(bid) if bid else None, D(ask) if ask else None, None, T0))
    return m


def ledger_with(m: MarketData, **balances: str) -> Ledger:
    ledger = Ledger(Mode.LIVE, "ZAR", SETTINGS.risk.tz, PAIRS, m, None)
    ledger.set_balances([Balance(c, D(v)) for c, v in balances.items()], snapshot=True)
    return ledger


def ctx(
    ledger: Ledger, m: MarketData, breakers: Mapping[str, BreakerState] | None = None
) -> RiskContext:
    return RiskContext(
        mode=Mode.LIVE,
        settings=SETTINGS,
        pair=m.pair("BTCZAR"),
        ledger=ledger,
        market=m,
        breakers=breakers or {},
        now=T0,
        order_stats=Counters(),
    )


def buy(qty: str, price: str | None = None) -> OrderIntent:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderIntent("BTCZAR", Side.BUY, kind, D(qty), D(price) if price else None)


def sell(qty: str) -> OrderIntent:
    return OrderIntent("BTCZAR", Side.SELL, OrderType.MARKET, D(qty))


# --------------------------------------------------------------------------- position limit


def test_25_percent_asked_is_capped_to_20_percent() -> None:
    m = market()
    ledger = ledger_with(m, ZAR="100000")
    # 0.02083333 BTC at the 1,200,000 ask is 25% of 100,000 ZAR.
    v = PositionLimit().check(buy("0.02083333"), ctx(ledger, m))
    assert v.action is VerdictAction.CAP
    # 20% = 20,000 ZAR / 1,200,000 = 0.0166666..., truncated to 8 decimals.
    assert v.quantity == D("0.01666666")
    assert v.details["requested"] == "0.02083333"
    assert v.details["allowed"] == "0.01666666"
    assert v.details["equity"] == "100000"
    assert v.details["limit_pct"] == "20"
    assert v.reason == (
        "position BTCZAR would be 25.00% of equity (limit 20%): held 0.00 + pending buys 0.00"
        " + this order 25000.00 = 25000.00 ZAR of equity 100000.00 ZAR;"
        " capped 0.02083333 -> 0.01666666"
    )


def test_cap_counts_the_position_already_held() -> None:
    m = market()
    ledger = Ledger(Mode.PAPER, "ZAR", SETTINGS.risk.tz, PAIRS, m, {"ZAR": D(100000)})
    ledger.apply_fill(
        Fill("t1", "BTCZAR", Side.BUY, D(1200000), D("0.01"), D(0), "ZAR", T0)
    )  # ZAR 88,000 + 0.01 BTC at mid 1,199,500: equity 99,995
    v = PositionLimit().check(buy("0.02"), ctx(ledger, m))
    # max |position| = 99,995 * 20% / 1,200,000 = 0.0166658333...; room = that - 0.01
    assert v.action is VerdictAction.CAP
    assert v.quantity == D("0.00666583")


def test_a_limit_price_above_the_ask_values_the_order() -> None:
    m = market()
    ledger = ledger_with(m, ZAR="100000")
    v = PositionLimit().check(buy("1", price="1500000"), ctx(ledger, m))
    assert v.quantity == D("0.01333333")  # 20,000 / 1,500,000
    # A limit below the ask trades no higher than the ask: the ask values it.
    v = PositionLimit().check(buy("1", price="1000000"), ctx(ledger, m))
    assert v.quantity == D("0.01666666")


def test_within_the_limit_is_accepted() -> None:
    m = market()
    ledger = ledger_with(m, ZAR="100000")
    v = PositionLimit().check(buy("0.0166"), ctx(ledger, m))
    assert v.action is VerdictAction.ACCEPT
    assert v.reason == "within the position limit"


def test_a_cap_below_the_pair_minimum_is_rejected() -> None:
    m = market("1200000", "1200000")
    ledger = ledger_with(m, ZAR="80000", BTC="0.01666")  # equity 99,992
    # room = 99,992 * 20% / 1,200,000 - 0.01666 = 0.00000533 < 0.0001 BTC minimum
    v = PositionLimit().check(buy("0.01"), ctx(ledger, m))
    assert v.action is VerdictAction.REJECT
    assert "the allowed 0.00000533 is below the BTCZAR minimum order" in v.reason
    assert v.details["allowed"] == "0.00000533"


def test_no_room_left_is_rejected() -> None:
    m = market("1200000", "1200000")
    ledger = ledger_with(m, ZAR="50000", BTC="0.05")  # 60% in BTC
    v = PositionLimit().check(buy("0.0001"), ctx(ledger, m))
    assert v.action is VerdictAction.REJECT
    assert v.reason.endswith("no room left")


@pytest.mark.parametrize("qty", ["0.05", "0.04", "0.0001"])
def test_reducing_orders_pass_at_any_size(qty: str) -> None:
    m = market("1200000", "1200000")
    ledger = ledger_with(m, ZAR="50000", BTC="0.05")  # far over the 20% limit
    for rule in (PositionLimit(), LeverageLimit()):
        v = rule.check(sell(qty), ctx(ledger, m))
        assert (v.action, v.reason) == (VerdictAction.ACCEPT, "reduces the position")


def test_selling_more_than_held_is_capped_to_the_holding_never_to_a_short() -> None:
    m = market("1200000", "1200000")
    ledger = ledger_with(m, ZAR="100000", BTC="0.01")  # equity 112,000
    # No spot shorts: 0.03 asked, 0.01 held -> capped to 0.01 (not to a 20% short).
    v = PositionLimit().check(sell("0.03"), ctx(ledger, m))
    assert v.action is VerdictAction.CAP
    assert v.quantity == D("0.01")
    assert v.reason == (
        "SELL 0.03 BTC exceeds the free 0.01 BTC (held 0.01, in open and in-flight sells 0):"
        " capped 0.03 -> 0.01000000; no spot shorts"
    )
    assert LeverageLimit().check(sell("0.03"), ctx(ledger, m)).action is VerdictAction.ACCEPT


def test_missing_price_or_equity_fails_closed() -> None:
    no_quote = market(None, None)
    ledger = ledger_with(no_quote, ZAR="100000")
    for rule in (PositionLimit(), LeverageLimit()):
        v = rule.check(buy("0.001"), ctx(ledger, no_quote))
        assert v.action is VerdictAction.REJECT
        assert v.reason == "no price for BTCZAR: cannot value the order"

    m = market()
    unknown = Ledger(Mode.LIVE, "ZAR", SETTINGS.risk.tz, PAIRS, m, None)  # no snapshot yet
    v = PositionLimit().check(buy("0.001"), ctx(unknown, m))
    assert v.action is VerdictAction.REJECT
    assert v.reason == "equity is 0 ZAR: nothing to size against"
    v = LeverageLimit().check(buy("0.001"), ctx(unknown, m))
    assert v.reason == "equity is 0 ZAR: leverage undefined"
    # Negative equity (a margin account under water) is not "empty": refused.
    under = ledger_with(m, ZAR="-5", BTC="0")
    assert PositionLimit().check(buy("0.001"), ctx(under, m)).action is VerdictAction.REJECT


def test_known_empty_account_lets_the_venue_refuse() -> None:
    """Seed Phase 2: a zero-balance LIVE account gets VALR's Insufficient Balance, not ours."""
    m = market()
    broke = ledger_with(m, ZAR="0")
    for rule in (PositionLimit(), LeverageLimit()):
        v = rule.check(buy("0.001"), ctx(broke, m))
        assert v.action is VerdictAction.ACCEPT
        assert v.reason == EMPTY_ACCOUNT

    intent = OrderIntent("DOGEZAR", Side.BUY, OrderType.MARKET, D(1))
    v = PositionLimit().check(intent, ctx(ledger_with(m, ZAR="100"), m))
    assert (v.action, v.reason) == (VerdictAction.REJECT, "unknown pair DOGEZAR")


# --------------------------------------------------------------------------- leverage


def test_4x_leverage_is_rejected_with_the_numbers() -> None:
    m = market("1000000", "1000000")
    # A margin account: 0.35 BTC bought with borrowed rand. Equity 100,000, gross 350,000.
    ledger = ledger_with(m, ZAR="-250000", BTC="0.35")
    v = LeverageLimit().check(buy("0.05"), ctx(ledger, m))
    assert v.action is VerdictAction.REJECT
    assert v.reason == (
        "leverage 4.00x would exceed the 3x limit (gross 400000.00 ZAR, equity 100000.00 ZAR:"
        " held 350000.00 + pending buys 0.00 + this order 50000.00 + the rest of the account"
        " 0.00)"
    )
    assert v.details == {
        "leverage": "4.00",
        "limit": "3",
        "gross": "400000",
        "equity": "100000",
        "held": "350000.00",
        "pending_buys": "0.00",
        "order": "50000.00",
        "rest": "0.00",
    }


def test_leverage_within_the_limit_is_accepted() -> None:
    m = market("1000000", "1000000")
    ledger = ledger_with(m, ZAR="0", BTC="0.1")
    v = LeverageLimit().check(buy("0.1"), ctx(ledger, m))
    assert v.action is VerdictAction.ACCEPT
    assert v.reason == "within the leverage limit"


# --------------------------------------------------------------------------- breakers


@pytest.mark.parametrize(
    ("rule", "name"), [(DailyLossLimit(), DAILY_LOSS), (DrawdownLimit(), DRAWDOWN)]
)
def test_breakers_block_increasing_but_not_reducing_orders(rule: RiskRule, name: str) -> None:
    m = market()
    ledger = ledger_with(m, ZAR="90000", BTC="0.01")
    until = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    tripped = {name: BreakerState(name, True, "loss 5.10%", until)}

    v = rule.check(buy("0.001"), ctx(ledger, m, tripped))
    assert v.action is VerdictAction.REJECT
    assert "(loss 5.10%): only position-reducing orders are accepted" in v.reason
    assert "until 2026-03-02T22:00:00+00:00 or a resume" in v.reason

    v = rule.check(sell("0.01"), ctx(ledger, m, tripped))
    assert v.action is VerdictAction.ACCEPT
    v = rule.check(sell("0.02"), ctx(ledger, m, tripped))  # more than held: increases
    assert v.action is VerdictAction.REJECT

    cleared = {name: BreakerState(name, False)}
    assert rule.check(buy("0.001"), ctx(ledger, m, cleared)).action is VerdictAction.ACCEPT
    assert rule.check(buy("0.001"), ctx(ledger, m)).action is VerdictAction.ACCEPT


# --------------------------------------------------------------------------- registration, cost


def test_hookimpl_registers_the_four_rules_by_name() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(limits)
    got: list[RiskRule] = []
    pm.hook.heliosd_register_risk_rules(register=got.append, config=SETTINGS)
    assert [r.name for r in got] == [
        "position_limit",
        "leverage_limit",
        "daily_loss_limit",
        "drawdown_limit",
    ]
    assert (limits.DAILY_LOSS, limits.DRAWDOWN, limits.EMERGENCY) == (
        "daily_loss",
        "drawdown",
        "emergency",
    )


def test_the_risk_path_is_cheap() -> None:
    m = market()
    ledger = ledger_with(m, ZAR="100000", BTC="0.001")
    c = ctx(ledger, m)
    rules = limits.essential_rules()
    intent = buy("0.001")
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        for rule in rules:
            rule.check(intent, c)
    per_order = (time.perf_counter() - start) / n
    # The bar is ~10 us on our 2-core machines; the bound is loose so a busy CI box passes.
    assert per_order < 100e-6, f"{per_order * 1e6:.1f} us per order"
