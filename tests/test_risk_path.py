"""The risk path's shared work: one valuation per order, reused reason texts, rule names.

Real parts throughout: a Store file in tmp_path, a real Ledger and MarketData, the four
built-in rules through the real ExecutionRouter. Each test pins that a shortcut taken for
speed gives exactly the answer the long way gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.builtin import limits
from heliosd.builtin.limits import LeverageLimit, OrderValuation, PositionLimit
from heliosd.core.config import Settings
from heliosd.core.protocols import RiskContext
from heliosd.core.types import (
    Balance,
    Mode,
    OrderIntent,
    OrderType,
    Quote,
    Side,
    Verdict,
    VerdictAction,
)
from heliosd.risk.breakers import Breakers
from heliosd.risk.ledger import Ledger
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData
from heliosd.trading.router import ExecutionRouter

D = Decimal
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SETTINGS = Settings()


def buy(qty: str, pair: str = "BTCZAR", price: str | None = None) -> OrderIntent:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderIntent(pair, Side.BUY, kind, D(qty), D(price) if price else None)


def sell(qty: str, pair: str = "BTCZAR") -> OrderIntent:
    return OrderIntent(pair, Side.SELL, OrderType.MARKET, D(qty))


@dataclass
class Rig:
    router: ExecutionRouter
    ledger: Ledger
    market: MarketData
    counters: od.OrderCounters

    def bare_context(self, intent: OrderIntent, memo: dict[str, Any] | None) -> RiskContext:
        """The context a test or a plugin author would build: keywords, no router."""
        return RiskContext(
            mode=Mode.PAPER,
            settings=SETTINGS,
            pair=self.market.pair(intent.pair),
            ledger=self.ledger,
            market=self.market,
            breakers={},
            now=T0,
            order_stats=self.counters,
            memo=memo,
        )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await Store.open(tmp_path / "heliosd.db")
    market = MarketData()
    market.update(Quote("BTCZAR", D(1199000), D(1201000), None, T0))
    market.update(Quote("ETHZAR", D(59900), D(60100), None, T0))
    balances = {"ZAR": D(100000), "BTC": D("0.01")}
    risk = SETTINGS.risk
    paper = Ledger(Mode.PAPER, risk.reference_currency, risk.tz, market.pairs(), market, balances)
    live = Ledger(Mode.LIVE, risk.reference_currency, risk.tz, market.pairs(), market)
    breakers = Breakers(store)
    await breakers.load()
    counters = od.OrderCounters()
    router = ExecutionRouter(
        store=store, settings=SETTINGS, clients={}, ledgers={Mode.PAPER: paper, Mode.LIVE: live},
        market=market, breakers=breakers, counters=counters, rules=limits.essential_rules(),
    )  # fmt: skip
    try:
        yield Rig(router, paper, market, counters)
    finally:
        await store.close()


ORDERS = [
    buy("0.001"),  # within both limits
    buy("0.5"),  # over 20%: capped
    buy("0.5", price="1300000"),  # capped, valued at its own limit price
    sell("0.005"),  # reduces the BTC held
    sell("0.5"),  # larger than the position: capped on the short side
    buy("40", pair="ETHZAR"),  # over the limit and over 3x leverage: capped and rejected
    buy("1", pair="XRPZAR"),  # unknown pair: rejected by both size limits
]


async def test_the_router_gives_the_verdicts_each_rule_gives_alone(rig: Rig) -> None:
    # The router shares one valuation between the size limits; every rule run on its own
    # context, without a memo, computes everything itself. The answers must not differ.
    seen = set()
    for intent in ORDERS:
        evaluation = await rig.router.evaluate(intent)
        alone = tuple(r.check(intent, rig.bare_context(intent, None)) for r in rig.router.rules)
        assert evaluation.verdicts == alone
        seen |= {v.action for v in evaluation.verdicts}
    assert seen == {VerdictAction.ACCEPT, VerdictAction.CAP, VerdictAction.REJECT}


def test_both_size_limits_use_one_valuation_per_order(rig: Rig) -> None:
    intent = buy("0.5")
    ctx = rig.bare_context(intent, {})
    PositionLimit().check(intent, ctx)
    assert ctx.memo is not None
    (valuation,) = ctx.memo.values()
    assert isinstance(valuation, OrderValuation) and valuation.intent is intent
    LeverageLimit().check(intent, ctx)
    (again,) = ctx.memo.values()
    assert again is valuation  # the leverage limit read it, it did not value the order again


def test_a_context_reused_for_another_order_values_that_order(rig: Rig) -> None:
    # A plugin (or a test) may check two intents against one context: the second must not
    # be judged with the first one's figures.
    ctx = rig.bare_context(buy("0.5"), {})
    assert PositionLimit().check(buy("0.5"), ctx).action is VerdictAction.CAP
    reducing = PositionLimit().check(sell("0.005"), ctx)
    assert reducing == Verdict.accept("position_limit", "reduces the position")
    unknown = LeverageLimit().check(buy("1", pair="XRPZAR"), ctx)
    assert unknown == Verdict.reject("leverage_limit", "unknown pair XRPZAR")


def test_a_cap_reason_follows_the_equity_when_it_changes(rig: Rig) -> None:
    rule = PositionLimit()  # one instance: its remembered equity text must not go stale
    intent = buy("0.5")
    first = rule.check(intent, rig.bare_context(intent, {}))
    assert first.details["equity"] == "112000"  # 100,000 ZAR + 0.01 BTC at the 1,200,000 mid
    rig.ledger.set_balances([Balance("ZAR", D("200000.5"))], snapshot=True)
    second = rule.check(intent, rig.bare_context(intent, {}))
    assert second.details["equity"] == "200000.5"
    assert second.reason == (
        "position BTCZAR would be 300.25% of equity (limit 20%): held 0.00 + pending buys 0.00"
        " + this order 600500.00 = 600500.00 ZAR of equity 200000.50 ZAR; capped 0.5 -> 0.03330566"
    )
    # And back: the same figures give the same text as the first time.
    rig.ledger.set_balances([Balance("ZAR", D(100000)), Balance("BTC", D("0.01"))], snapshot=True)
    assert rule.check(intent, rig.bare_context(intent, {})) == first


class Named:
    name = "named_rule"

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        raise RuntimeError("broken on purpose")


class Nameless:
    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        return Verdict.reject("nameless_said", f"now is {ctx.now.tzinfo}, mode {ctx.mode}")


async def test_replacing_the_rules_renames_their_verdicts(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # Rule names are looked up when the rules are set (a plugin reload assigns router.rules).
    nameless: Any = Nameless()  # a rule without a name attribute, on purpose
    rig.router.rules = [Named(), nameless]
    evaluation = await rig.router.evaluate(buy("0.001"))
    assert evaluation.quantity is None  # fail closed: a raising rule rejects
    assert [v.rule for v in evaluation.verdicts] == ["named_rule", "nameless_said"]
    assert evaluation.reason == (
        "named_rule: rule named_rule failed: broken on purpose; "
        "nameless_said: now is UTC, mode PAPER"
    )
    assert "risk rule named_rule raised RuntimeError" in caplog.text
    rig.router.rules = ()
    evaluation = await rig.router.evaluate(buy("0.001"))
    assert evaluation.verdicts == () and evaluation.quantity == D("0.001")
