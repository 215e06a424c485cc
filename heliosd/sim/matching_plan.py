"""The book walk: which makers an order would reach, at what prices and sizes.

``_plan`` walks the opposite side in price-time priority without changing anything and
stops at the limit, the amount, or the account's own order (self-trade).
``MatchPlanner`` is a base class of :class:`heliosd.sim.matching.Exchange`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from heliosd.sim.market import Level, Market
from heliosd.sim.orders import ZERO, Order, Side


@dataclass(slots=True)
class Fill:
    maker: Order | Level
    price: Decimal
    quantity: Decimal


@dataclass(slots=True)
class Plan:
    fills: list[Fill]
    self_trade: bool = False
    exhausted: bool = False  # the book ran out before the amount was reached

    @property
    def base(self) -> Decimal:
        return sum((f.quantity for f in self.fills), ZERO)

    @property
    def quote(self) -> Decimal:
        return sum((f.quantity * f.price for f in self.fills), ZERO)


def _other(side: Side) -> Side:
    return "sell" if side == "buy" else "buy"


class MatchPlanner:
    """The book walk of :class:`heliosd.sim.matching.Exchange` (one of its base classes)."""

    def _plan(
        self,
        market: Market,
        side: Side,
        account_id: str,
        limit: Decimal | None,
        max_base: Decimal | None = None,
        max_quote: Decimal | None = None,
    ) -> Plan:
        """Walk the opposite side without changing anything."""
        opposite = _other(side)
        makers: list[tuple[Decimal, int, int, Order | Level]] = [
            (o.price, 0, i, o) for i, o in enumerate(market.resting.values()) if o.side == opposite
        ]
        mm = market.mm_asks if side == "buy" else market.mm_bids
        makers += [(lv.price, 1, i, lv) for i, lv in enumerate(mm) if lv.quantity > 0]
        makers.sort(key=lambda m: (m[0] if side == "buy" else -m[0], m[1], m[2]))
        quantum = market.spec.base_quantum
        plan = Plan([])
        base_left, quote_left = max_base, max_quote
        for price, _, _, maker in makers:
            if limit is not None and (price > limit if side == "buy" else price < limit):
                return plan
            if isinstance(maker, Order) and maker.account_id == account_id:
                plan.self_trade = True
                return plan
            qty = maker.remaining if isinstance(maker, Order) else maker.quantity
            if base_left is not None:
                qty = min(qty, base_left)
            if quote_left is not None:
                qty = min(qty, (quote_left / price).quantize(quantum, rounding=ROUND_DOWN))
            if qty <= 0:
                return plan
            plan.fills.append(Fill(maker, price, qty))
            if base_left is not None:
                base_left -= qty
            if quote_left is not None:
                quote_left -= qty * price
        plan.exhausted = bool(base_left) or bool(quote_left)
        return plan
