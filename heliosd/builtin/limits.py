"""The four essential risk rules (design.md section 4): position, leverage, daily loss, drawdown.

Each rule is an object with a ``name`` and a synchronous ``check(intent, ctx) -> Verdict``: no
I/O, so the router calls it directly on the order path. Limits are read from
``ctx.settings.risk`` on every call, so the rules always apply the settings the order is
checked under.

Shared semantics:

* An order **reduces** when it is on the opposite side of the current position and its
  quantity is at most the position's size (a spot SELL of base currency held). Reducing
  orders always pass: refusing them would trap an operator in a position.
* Anything the rule cannot value (no price, equity <= 0, unknown pair) is a REJECT with the
  reason: fail closed. One exception, on purpose: an account whose balances are *known* and
  all zero (the normal state of a fresh LIVE account before funding, seed Phase 2) holds
  nothing that can be lost, so its orders pass to the venue, which refuses them with its own
  "Insufficient Balance" -- the operator then sees the real venue answer, not a sizing error.
  heliosd never sends ``allowMargin``, so an empty account cannot borrow.
* Notional is valued in the reference currency: ``quantity * price * rate(quote)``, where
  ``rate`` is 1 for pairs quoted in the reference currency and otherwise the mark of
  ``QUOTE + reference``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from heliosd.config import Settings
from heliosd.hookspecs import hookimpl
from heliosd.ledger import decimal_text
from heliosd.protocols import MarketView, RiskContext, RiskRule
from heliosd.types import ZERO, OrderIntent, OrderType, PairInfo, Side, Verdict, VerdictAction
from heliosd.types import reduces_position as reduces_position

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
EMERGENCY = "emergency"

_HUNDRED = Decimal(100)
_ONE = Decimal(1)
# Module constants, compared by identity: on 3.11 every ``Side.BUY`` is a ~100 ns class
# attribute lookup, and comparing a Decimal with the int 0 costs twice comparing with ZERO.
# These run several times per order.
_BUY = Side.BUY
_LIMIT = OrderType.LIMIT
_CAP = VerdictAction.CAP


EMPTY_ACCOUNT = "account holds nothing (all balances known and zero): the venue decides"


def empty_account(ctx: RiskContext) -> bool:
    """Balances are known (the ledger is ready) and every one of them is zero."""
    ledger = ctx.ledger
    if not getattr(ledger, "ready", False):
        return False
    return all(not b.total for b in ledger.balances().values())


def valuation_price(intent: OrderIntent, market: MarketView) -> Decimal | None:
    """The price that values the order: the market price it would trade at, or its own
    LIMIT price when that is higher.

    For a BUY this is exactly "best ask, or the limit price if worse". For a SELL we also
    take the higher of bid and limit price: a resting sell above the bid fills at its limit,
    and a higher price never understates the exposure.
    """
    price = market.price_for(intent.pair, intent.side)
    limit = intent.price
    # The higher of the two, as max(price, limit) without the builtin's call (~60 ns): on a
    # tie both keep the market price (equal Decimals may differ in exponent).
    if (
        limit is not None
        and intent.type is _LIMIT
        and limit > ZERO
        and (price is None or limit > price)
    ):
        price = limit
    if price is None or price <= ZERO:
        return None
    return price


def quote_rate(pair: PairInfo, reference: str, market: MarketView) -> Decimal | None:
    """Reference-currency value of one unit of the pair's quote currency (None: unknown)."""
    if pair.quote == reference:
        return _ONE
    rate = market.mark(pair.quote + reference)
    return rate if rate is not None and rate > ZERO else None


def _pair(intent: OrderIntent, ctx: RiskContext) -> PairInfo | None:
    if ctx.pair is not None and ctx.pair.symbol == intent.pair:
        return ctx.pair
    return ctx.market.pair(intent.pair)


_MEMO_KEY = "heliosd.builtin.limits.valuation"


class OrderValuation:
    """The figures both size limits value an order with, computed once per order.

    Computed in the order the rules check them, stopping at the first one that is missing:
    ``position``; ``reduces`` (when true nothing else is computed); ``pair`` (None: unknown);
    ``price`` (None: no price); ``rate`` (None: no mark for the quote currency); then
    ``equity``, ``unit_value`` (``price * rate``) and ``post`` (the signed position after the
    order). ``equity``, ``unit_value`` and ``post`` are meaningful only when ``rate`` is set.
    Pure reads of the ledger and the market: computing one changes nothing.
    """

    __slots__ = (
        "equity", "intent", "pair", "position", "post", "price", "rate", "reduces",
        "reference", "unit_value",
    )  # fmt: skip

    intent: OrderIntent
    reference: str
    position: Decimal
    reduces: bool
    pair: PairInfo | None
    price: Decimal | None
    rate: Decimal | None
    equity: Decimal
    unit_value: Decimal
    post: Decimal

    def __init__(self, intent: OrderIntent, ctx: RiskContext) -> None:
        self.intent = intent
        self.reference = reference = ctx.settings.risk.reference_currency
        self.position = position = ctx.ledger.position(intent.pair)
        self.reduces = reduces_position(intent, position)
        self.pair = self.price = self.rate = None
        self.equity = self.unit_value = self.post = ZERO
        if self.reduces:
            return
        self.pair = pair = _pair(intent, ctx)
        if pair is None:
            return
        self.price = price = valuation_price(intent, ctx.market)
        if price is None:
            return
        self.rate = rate = quote_rate(pair, reference, ctx.market)
        if rate is None:
            return
        self.equity = ctx.ledger.equity()
        self.unit_value = price * rate
        quantity = intent.quantity
        self.post = position + quantity if intent.side is _BUY else position - quantity


def order_valuation(intent: OrderIntent, ctx: RiskContext) -> OrderValuation:
    """The order's valuation, shared through ``ctx.memo`` by every rule of this order.

    Without a memo (a context not built by the router) it is computed for each call.
    """
    memo = ctx.memo
    if memo is None:
        return OrderValuation(intent, ctx)
    valuation: OrderValuation | None = memo.get(_MEMO_KEY)
    # The intent check keeps a context reused for another order from seeing stale figures.
    if valuation is None or valuation.intent is not intent:
        valuation = memo[_MEMO_KEY] = OrderValuation(intent, ctx)
    return valuation


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
        reference = v.reference
        limit_pct = ctx.settings.risk.max_position_pct
        price = v.price
        if price is None:
            return Verdict.reject(self.name, f"no price for {intent.pair}: cannot value the order")
        if v.rate is None:
            return Verdict.reject(self.name, f"no {pair.quote}{reference} mark to value the order")
        position = v.position
        equity = v.equity
        if equity <= ZERO:
            if empty_account(ctx):
                return Verdict.accept(self.name, EMPTY_ACCOUNT)
            return Verdict.reject(
                self.name, f"equity is {decimal_text(equity)} {reference}: nothing to size against"
            )
        unit_value = v.unit_value
        post = v.post
        exposure = abs(post) * unit_value
        budget = equity * limit_pct
        # Compare by multiplication (exact, and cheaper than dividing on every order).
        if exposure * _HUNDRED <= budget:
            return self._within
        max_size = budget / _HUNDRED / unit_value  # largest |position| allowed
        requested_pct = _pct(exposure / equity * _HUNDRED)
        # Room left on this side: BUY may take the position up to +max, SELL down to -max.
        room = max_size - position if intent.side is _BUY else max_size + position
        allowed = pair.round_quantity(room) if room > ZERO else ZERO
        # Each Decimal's text is made once, with str(), and reused in the reason: a Decimal
        # in an f-string goes through Decimal.__format__ (~160 ns against str's ~75 ns) to
        # the same text.
        requested = str(intent.quantity)
        allowed_text = str(allowed)
        details = {
            "requested": requested,
            "allowed": allowed_text,
            "equity": self._equity_text(equity),
            "price": str(price),
            "limit_pct": str(limit_pct),
            "requested_pct": requested_pct,
        }
        head = (
            f"position {intent.pair} would be {requested_pct}% of equity "
            f"(limit {self._limit_text(limit_pct)}%)"
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
            self.name, _CAP, f"{head}: capped {requested} -> {allowed_text}", allowed, details
        )


class LeverageLimit:
    """Post-trade gross notional of all positions / equity <= ``risk.max_leverage``.

    Above the limit the order is rejected (not capped: leverage is a whole-account limit and
    a silent cap would surprise more than a refusal).
    """

    name = "leverage_limit"

    def __init__(self) -> None:
        self._reduces = Verdict.accept(self.name, "reduces the position")
        self._within = Verdict.accept(self.name, "within the leverage limit")
        self._equity_text = _LastText()
        self._limit_text = _LastText()

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        v = order_valuation(intent, ctx)
        if v.reduces:
            return self._reduces
        pair = v.pair
        if pair is None:
            return Verdict.reject(self.name, f"unknown pair {intent.pair}")
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
        # Replace this pair's share of the gross (at mark) by its post-trade size (at price).
        position = v.position
        mark = ctx.market.mark(intent.pair)
        current = abs(position) * (mark if mark is not None else price) * rate
        gross = ctx.ledger.gross_exposure() - current + abs(v.post) * price * rate
        if gross > equity * max_leverage:
            leverage = _fixed2(gross / equity)
            numbers = f"gross {_fixed2(gross)} {reference}, equity {_fixed2(equity)} {reference}"
            return Verdict.reject(
                self.name,
                f"leverage {leverage}x would exceed the "
                f"{self._limit_text(max_leverage)}x limit ({numbers})",
                {
                    "leverage": leverage,
                    "limit": str(max_leverage),
                    "gross": decimal_text(gross),
                    "equity": self._equity_text(equity),
                },
            )
        return self._within


class _BreakerRule:
    """Rejects risk-increasing orders while its breaker is tripped.

    The breaker's ``tripped`` flag is the truth: clearing it (at ``until`` or on a resume)
    is the core's job, so an expired-but-still-tripped breaker still blocks (fail closed).
    """

    name: str
    breaker: str
    what: str

    def __init__(self) -> None:
        # Verdicts are immutable: the common answer is built once, not per order.
        self._clear = Verdict.accept(self.name, f"{self.what} not reached")
        self._reduces = Verdict.accept(self.name, f"{self.what} reached; the order reduces")

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        state = ctx.breakers.get(self.breaker)
        if state is None or not state.tripped:
            return self._clear
        if reduces_position(intent, ctx.ledger.position(intent.pair)):
            return self._reduces
        until = f" until {state.until.isoformat()} or a resume" if state.until else ""
        because = f" ({state.reason})" if state.reason else ""
        return Verdict.reject(
            self.name,
            f"{self.what} reached{because}: only position-reducing orders are accepted{until}",
        )


class DailyLossLimit(_BreakerRule):
    name = "daily_loss_limit"
    breaker = DAILY_LOSS
    what = "daily loss limit"


class DrawdownLimit(_BreakerRule):
    name = "drawdown_limit"
    breaker = DRAWDOWN
    what = "drawdown limit"


def essential_rules() -> list[RiskRule]:
    """Fresh instances of the four rules, in the order they are registered."""
    return [PositionLimit(), LeverageLimit(), DailyLossLimit(), DrawdownLimit()]


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    """Register the four essential limits; their thresholds come from ``[risk]``."""
    for rule in essential_rules():
        register(rule)
