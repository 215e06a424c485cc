"""The two size limits: :class:`PositionLimit` (the position cap, and no spot shorts) and
:class:`LeverageLimit`, with the texts of their reasons and the empty-account exception.
"""

from __future__ import annotations

from decimal import Decimal

from heliosd.builtin.limit_valuation import _BUY, _CAP, OrderValuation, order_valuation
from heliosd.core.protocols import RiskContext
from heliosd.core.types import ZERO, OrderIntent, PairInfo, Verdict
from heliosd.risk.ledger import decimal_text

_HUNDRED = Decimal(100)


EMPTY_ACCOUNT = "account holds nothing (all balances known and zero): the venue decides"


def empty_account(ctx: RiskContext) -> bool:
    """Balances are known (the ledger is ready) and every one of them is zero."""
    ledger = ctx.ledger
    if not getattr(ledger, "ready", False):
        return False
    return all(not b.total for b in ledger.balances().values())


def _fixed2(value: Decimal) -> str:
    """Two decimals, always shown: "4.00", "400000.00" (reasons are read by people)."""
    return format(value, ".2f")


_pct = _fixed2


class _LastText:
    """``decimal_text`` of the last value asked for, kept for the next call.

    Cap and reject reasons repeat the same figures order after order (the equity changes only
    when the ledger or a mark does, a limit only when the settings do), and ``decimal_text``
    costs ~1 us. Exact: equal Decimals have equal texts (the text is of the value rounded to
    fixed places), and the pair is replaced in one assignment.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Decimal, str] | None = None

    def __call__(self, value: Decimal) -> str:
        last = self._last
        if last is not None and last[0] == value:
            return last[1]
        text = decimal_text(value)
        self._last = (value, text)
        return text


class PositionLimit:
    """|post-trade position notional in the pair| / equity <= ``risk.max_position_pct``.

    Above the limit the order is capped to the largest quantity within it, rounded down to
    the pair's base decimals; a cap below the pair's minimum order is a reject.
    """

    name = "position_limit"

    def __init__(self) -> None:
        # Verdicts are immutable: the common answers are built once, not per order.
        self._reduces = Verdict.accept(self.name, "reduces the position")
        self._within = Verdict.accept(self.name, "within the position limit")
        self._equity_text = _LastText()
        self._limit_text = _LastText()

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        v = order_valuation(intent, ctx)
        if v.reduces:
            return self._reduces
        pair = v.pair
        if pair is None:
            return Verdict.reject(self.name, f"unknown pair {intent.pair}")
        if intent.quantity <= ZERO:
            return Verdict.reject(self.name, f"quantity {intent.quantity!s} is not positive")
        if intent.side is not _BUY:
            return self._sell(intent, pair, v)
        reference = v.reference
        limit_pct = ctx.settings.risk.max_position_pct
        price = v.price
        if price is None:
            return Verdict.reject(self.name, f"no price for {intent.pair}: cannot value the order")
        if v.rate is None:
            return Verdict.reject(self.name, f"no {pair.quote}{reference} mark to value the order")
        equity = v.equity
        if equity <= ZERO:
            if empty_account(ctx):
                return Verdict.accept(self.name, EMPTY_ACCOUNT)
            return Verdict.reject(
                self.name, f"equity is {decimal_text(equity)} {reference}: nothing to size against"
            )
        unit_value = v.unit_value
        pending = v.pending
        # held + pending buys + this order, valued (post = held + this order).
        if pending.buy_quantity:
            pending_value = pending.buy_quantity * unit_value
            if pending.buy_value > pending_value:
                pending_value = pending.buy_value
            exposure = abs(v.post * unit_value + pending_value)
        else:
            pending_value = ZERO
            exposure = abs(v.post) * unit_value
        budget = equity * limit_pct
        # Compare by multiplication (exact, and cheaper than dividing on every order).
        if exposure * _HUNDRED <= budget:
            return self._within
        held_value = v.held * unit_value
        order_value = intent.quantity * unit_value
        # Room left for this order: the budget less what is held and already pending.
        room = (budget / _HUNDRED - held_value - pending_value) / unit_value
        allowed = pair.round_quantity(room) if room > ZERO else ZERO
        requested_pct = _pct(exposure / equity * _HUNDRED)
        # Each Decimal's text is made once, with str(), and reused in the reason: a Decimal
        # in an f-string goes through Decimal.__format__ (~160 ns against str's ~75 ns) to
        # the same text.
        requested = str(intent.quantity)
        allowed_text = str(allowed)
        equity_text = self._equity_text(equity)
        held_text = _fixed2(held_value)
        pending_text = _fixed2(pending_value)
        order_text = _fixed2(order_value)
        details = {
            "requested": requested,
            "allowed": allowed_text,
            "equity": equity_text,
            "price": str(price),
            "limit_pct": str(limit_pct),
            "requested_pct": requested_pct,
            "held": held_text,
            "pending_buys": pending_text,
            "pending_orders": str(pending.orders),
            "order": order_text,
        }
        head = (
            f"position {intent.pair} would be {requested_pct}% of equity "
            f"(limit {self._limit_text(limit_pct)}%): held {held_text} + pending buys "
            f"{pending_text} + this order {order_text} = {_fixed2(exposure)} {reference} "
            f"of equity {_fixed2(equity)} {reference}"
        )
        if allowed <= ZERO:
            return Verdict.reject(self.name, f"{head}; no room left", details)
        if allowed < pair.min_base or allowed * price < pair.min_quote:
            return Verdict.reject(
                self.name,
                f"{head}; the allowed {allowed_text} is below the {intent.pair} minimum order "
                f"({pair.min_base!s} base, {pair.min_quote!s} {pair.quote})",
                details,
            )
        # The constructor, not Verdict.cap: the same verdict without the extra call.
        return Verdict(
            self.name, _CAP, f"{head}; capped {requested} -> {allowed_text}", allowed, details
        )

    def _sell(self, intent: OrderIntent, pair: PairInfo, v: OrderValuation) -> Verdict:
        """A SELL beyond the free holding: capped to it, rejected when none is left."""
        free = v.free
        base = pair.base
        sells = v.pending.sell_quantity
        requested = str(intent.quantity)
        details = {
            "requested": requested,
            "held": decimal_text(v.held),
            "pending_sells": decimal_text(sells),
            "free": decimal_text(free if free > ZERO else ZERO),
        }
        venue = ""
        if v.reserved > ZERO:  # named only when the venue holds something back
            details["reserved_at_venue"] = decimal_text(v.reserved)
            venue = f", reserved at the venue {details['reserved_at_venue']}"
        head = (
            f"SELL {requested} {base} exceeds the free {details['free']} {base} "
            f"(held {details['held']}, in open and in-flight sells {details['pending_sells']}"
            f"{venue})"
        )
        if free <= ZERO:
            return Verdict.reject(
                self.name, f"{head}: nothing left to sell; no spot shorts", details
            )
        allowed = pair.round_quantity(free)
        details["allowed"] = str(allowed)
        if allowed <= ZERO or allowed < pair.min_base:
            return Verdict.reject(
                self.name,
                f"{head}: the free {allowed} is below the {intent.pair} minimum order "
                f"({pair.min_base!s} base); no spot shorts",
                details,
            )
        return Verdict(
            self.name, _CAP, f"{head}: capped {requested} -> {allowed}; no spot shorts",
            allowed, details,
        )  # fmt: skip


class LeverageLimit:
    """Post-trade gross notional of all positions / equity <= ``risk.max_leverage``.

    Above the limit the order is rejected (not capped: leverage is a whole-account limit and
    a silent cap would surprise more than a refusal).
    """

    name = "leverage_limit"

    def __init__(self) -> None:
        self._reduces = Verdict.accept(self.name, "reduces the position")
        self._within = Verdict.accept(self.name, "within the leverage limit")
        self._sell = Verdict.accept(
            self.name, "a sell adds no exposure (no spot shorts: the position limit caps it)"
        )
        self._equity_text = _LastText()
        self._limit_text = _LastText()

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        v = order_valuation(intent, ctx)
        if v.reduces:
            return self._reduces
        pair = v.pair
        if pair is None:
            return Verdict.reject(self.name, f"unknown pair {intent.pair}")
        if intent.side is not _BUY:
            return self._sell
        reference = v.reference
        max_leverage = ctx.settings.risk.max_leverage
        price = v.price
        if price is None:
            return Verdict.reject(self.name, f"no price for {intent.pair}: cannot value the order")
        rate = v.rate
        if rate is None:
            return Verdict.reject(self.name, f"no {pair.quote}{reference} mark to value the order")
        equity = v.equity
        if equity <= ZERO:
            if empty_account(ctx):
                return Verdict.accept(self.name, EMPTY_ACCOUNT)
            return Verdict.reject(
                self.name, f"equity is {decimal_text(equity)} {reference}: leverage undefined"
            )
        # Replace this asset's share of the gross (at mark) by what it would be (at price):
        # held, plus its pending BUYs, plus this order; other assets' pending BUYs add too.
        position = v.position
        mark = ctx.market.mark(intent.pair)
        current = abs(position) * (mark if mark is not None else price) * rate
        unit_value = v.unit_value
        account = ctx.account
        pending_value = others = ZERO
        if account is not None and account.ready:
            rest = account.gross_exposure - current
            if account.pending_buy_value:
                pending = v.pending
                if pending.buy_quantity:
                    pending_value = pending.buy_quantity * unit_value
                    if pending.buy_value > pending_value:
                        pending_value = pending.buy_value
                others = account.pending_buy_value - pending.buy_value
                rest += others
                gross = rest + abs(v.post * unit_value + pending_value)
            else:
                gross = rest + abs(v.post) * unit_value
        else:
            rest = ctx.ledger.gross_exposure() - current
            gross = rest + abs(v.post) * unit_value
        if gross > equity * max_leverage:
            leverage = _fixed2(gross / equity)
            held_value = v.held * unit_value
            order_value = intent.quantity * unit_value
            numbers = f"gross {_fixed2(gross)} {reference}, equity {_fixed2(equity)} {reference}"
            parts = (
                f"held {_fixed2(held_value)} + pending buys {_fixed2(pending_value)} + this "
                f"order {_fixed2(order_value)} + the rest of the account {_fixed2(rest)}"
            )
            return Verdict.reject(
                self.name,
                f"leverage {leverage}x would exceed the "
                f"{self._limit_text(max_leverage)}x limit ({numbers}: {parts})",
                {
                    "leverage": leverage,
                    "limit": str(max_leverage),
                    "gross": decimal_text(gross),
                    "equity": self._equity_text(equity),
                    "held": _fixed2(held_value),
                    "pending_buys": _fixed2(pending_value),
                    "order": _fixed2(order_value),
                    "rest": _fixed2(rest),
                },
            )
        return self._within
