"""The four essential risk rules: position, leverage, daily loss, drawdown (their keys:
docs/configuration.md, [risk]).

Each rule is an object with a ``name`` and a synchronous ``check(intent, ctx) -> Verdict``: no
I/O, so the router calls it directly on the order path. Limits are read from
``ctx.settings.risk`` on every call, so the rules always apply the settings the order is
checked under.

Shared semantics:

* **Exposure counts open and in-flight orders.** What an asset's position would be is its
  holding (the venue's balance, plus bought coins of fills the venue's balance does not show
  yet) plus every open or in-flight BUY of that asset (from the moment the order is stored
  until it is terminal, remaining quantity; :mod:`heliosd.risk.exposure`) plus this order.
  The position cap and the leverage limit both count that sum, read from the account's risk
  snapshot (``ctx.account``); the verdict's reason shows each part (held, pending buys, this
  order, equity). A pending BUY counts at the larger of its reserved value (its LIMIT price,
  or the ask plus a margin for a MARKET BUY) and its quantity at this order's price. The
  order being checked is charged at the price it would trade at (the ask, or its LIMIT
  price when higher), as the cap always has; the margin only weighs on the orders after it.
* **No spot shorts.** heliosd never trades on margin: a SELL may sell what is held minus
  what is already promised to other SELLs (and minus sold coins the venue's balance does not
  show yet). Promised is heliosd's own SELLs not yet acknowledged by the venue (which its
  ``reserved`` cannot show) plus the larger of its acknowledged open SELLs and what the
  venue reports reserved (``total - available``, which also holds orders heliosd does not
  know: placed on VALR's site, or with another key). A SELL the venue has acknowledged but
  whose reservation has not reached heliosd yet counts through the first term of that
  maximum; one it has reserved but not acknowledged yet counts twice for a moment, which
  errs towards refusing. Above that it is capped to it; when nothing is left it is
  rejected, never capped to a short.
* An order **reduces** when it is a SELL within that free holding (or a BUY within a short,
  which only a ledger whose balances are still unknown can show). Reducing orders always
  pass: refusing them would trap an operator in a position.
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

from heliosd.core.config import Settings
from heliosd.core.protocols import MarketView, RiskContext, RiskRule
from heliosd.core.types import ZERO, OrderIntent, OrderType, PairInfo, Side, Verdict, VerdictAction
from heliosd.core.types import reduces_position as reduces_position
from heliosd.plugins.hookspecs import hookimpl
from heliosd.risk.exposure import NO_PENDING
from heliosd.risk.ledger import decimal_text
from heliosd.risk.snapshot import Pending

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
    ``position`` (the ledger's, of the pair's base currency); ``pair`` (None: unknown, and
    then only the legacy ``reduces`` is known); the holding and the pending orders of the
    base asset (``held``, ``free``, ``pending``); ``reduces`` (when true nothing else is
    computed); for a BUY ``price`` (None: no price) and ``rate`` (None: no mark for the quote
    currency); then ``equity``, ``unit_value`` (``price * rate``) and ``post`` (the signed
    holding after the order, pending BUYs not included). ``equity``, ``unit_value`` and
    ``post`` are meaningful only when ``rate`` is set.

    ``held`` is what the position cap counts as held (the holding plus bought coins the
    venue's balance does not show yet); ``free`` what a SELL may still sell (the holding,
    less sold coins not shown yet, less the larger of the open and in-flight SELLs and the
    venue's ``reserved``; set for SELLs only). Without an account
    snapshot (a context not built by the router) the ledger's position is both, and nothing
    is pending. Pure reads: computing one changes nothing.
    """

    __slots__ = (
        "equity", "free", "held", "intent", "pair", "pending", "position", "post", "price",
        "rate", "reduces", "reference", "reserved", "unit_value",
    )  # fmt: skip

    intent: OrderIntent
    reference: str
    position: Decimal
    reduces: bool
    pair: PairInfo | None
    held: Decimal
    free: Decimal
    reserved: Decimal  # what the venue reports reserved of the base (total - available)
    pending: Pending
    price: Decimal | None
    rate: Decimal | None
    equity: Decimal
    unit_value: Decimal
    post: Decimal

    def __init__(self, intent: OrderIntent, ctx: RiskContext) -> None:
        self.intent = intent
        self.reference = reference = ctx.settings.risk.reference_currency
        self.price = self.rate = None
        self.equity = self.unit_value = self.post = ZERO
        self.pair = pair = _pair(intent, ctx)
        pending = NO_PENDING
        account = ctx.account
        if pair is not None and account is not None and account.ready:
            # The snapshot's holding is the ledger's position (the base currency's balance),
            # read without the ledger's lookups; plus the fills not in a balance yet.
            holding = account.holdings.get(pair.base)
            if holding is None:
                position = held = free = reserved = ZERO
            else:
                position = held = free = holding.total
                reserved = holding.total - holding.available
                unsettled = holding.unsettled
                if unsettled:
                    if unsettled > ZERO:
                        held = position + unsettled
                    else:
                        free = position + unsettled
            if account.pending:
                pending = account.pending.get(pair.base, NO_PENDING)
            equity = account.equity
        else:
            account = None
            position = held = free = ctx.ledger.position(intent.pair)
            reserved = ZERO
            equity = None
        self.position = position
        self.pending = pending
        self.held = held
        quantity = intent.quantity
        if intent.side is not _BUY:
            promised = ZERO
            if pending.orders:
                # Acknowledged SELLs are in the venue's reservation (or will be); the ones
                # still on their way are not.
                acked = pending.sell_quantity - pending.sell_in_flight
                promised = (acked if acked > reserved else reserved) + pending.sell_in_flight
            elif reserved > ZERO:
                promised = reserved
            free -= promised
            self.reserved = reserved
            self.free = free
            # No spot shorts: a SELL reduces when it fits in the free holding. One that does
            # not is capped or rejected by the position limit, never priced as a short.
            self.reduces = ZERO < quantity <= free
            return
        self.free = free
        # A BUY reduces only a short, which only a ledger with unknown balances can show.
        self.reduces = reduces = held < ZERO and ZERO < quantity <= -held
        if reduces or pair is None:
            return
        self.price = price = valuation_price(intent, ctx.market)
        if price is None:
            return
        self.rate = rate = quote_rate(pair, reference, ctx.market)
        if rate is None:
            return
        self.equity = ctx.ledger.equity() if equity is None else equity
        self.unit_value = price * rate
        self.post = held + quantity


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
