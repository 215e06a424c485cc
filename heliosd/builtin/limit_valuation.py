"""The figures both size limits value an order with (:class:`OrderValuation`), computed once
per order and shared through ``ctx.memo``: the holding, the pending orders, whether the order
reduces, its price and the quote currency's rate (:func:`valuation_price`, :func:`quote_rate`).
"""

from __future__ import annotations

from decimal import Decimal

from heliosd.core.protocols import MarketView, RiskContext
from heliosd.core.types import ZERO, OrderIntent, OrderType, PairInfo, Side, VerdictAction
from heliosd.risk.exposure import NO_PENDING
from heliosd.risk.snapshot import Pending

_ONE = Decimal(1)
# Module constants, compared by identity: on 3.11 every ``Side.BUY`` is a ~100 ns class
# attribute lookup, and comparing a Decimal with the int 0 costs twice comparing with ZERO.
# These run several times per order.
_BUY = Side.BUY
_LIMIT = OrderType.LIMIT
_CAP = VerdictAction.CAP


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
