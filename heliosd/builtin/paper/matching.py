"""Execution on the paper venue: taking at the touch, resting with a reservation, matching
resting orders against quotes, and when a quote is too old to trade on (see
``heliosd.builtin.paper``, section Execution model)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import heliosd.core.types as htypes
from heliosd.builtin.paper.book import _Book, _Resting, _uuid4, _uuid4_hex
from heliosd.builtin.paper.funds import _BUY, _FILLED, _fee, _to_tick
from heliosd.builtin.paper.texts import INSUFFICIENT_BALANCE, _max_size, _min_size, _seconds
from heliosd.core.errors import ExchangeRejected
from heliosd.core.types import (
    ZERO,
    Fill,
    OrderState,
    OrderStatus,
    PairInfo,
    PlaceResult,
    Quote,
    Side,
)

# One logger for the whole venue, whichever module logs: operators (and tests) filter on
# "heliosd.builtin.paper", the name it had before the venue was split into modules.
logger = logging.getLogger("heliosd.builtin.paper")


class _Matching(_Book):
    """Takes, rests and matches; the state is set up by ``PaperExchange.__init__``."""

    _max_age_s: Decimal
    _max_age: timedelta
    _stale_logged: set[str]
    _slipping: bool
    _buy_factor: Decimal
    _sell_factor: Decimal

    def _stale(self, pair: str, quote: Quote | None) -> str | None:
        """Why ``quote`` is no market price for ``pair`` now (too old, undatable), or None."""
        if quote is None:
            # A view that prices the pair without a quote cannot say how old the price is.
            return f"No market price for {pair}: no quote, so its age is unknown"
        try:
            age = htypes.utcnow() - quote.at
        except TypeError:  # a naive ``at`` from a feed plugin: the age cannot be known
            return f"No market price for {pair}: the quote's time has no time zone"
        limit = self._max_age
        if age > limit:
            return (
                f"Stale market price for {pair}: the last quote is {_seconds(age)} old, "
                f"more than paper.max_quote_age_s ({self._max_age_s} s)"
            )
        if age < -limit:
            return (
                f"Stale market price for {pair}: the last quote is dated {_seconds(-age)} in "
                f"the future (clock stepped back?), more than paper.max_quote_age_s "
                f"({self._max_age_s} s)"
            )
        return None

    def _slipped(self, info: PairInfo, buy: bool, touch: Decimal) -> Decimal:
        """The touch worsened by slippage, rounded to the tick against the trader."""
        if not self._slipping:
            return touch
        tick = info.tick_size
        if buy:
            return _to_tick(touch * self._buy_factor, tick, ROUND_CEILING)
        return max(tick, _to_tick(touch * self._sell_factor, tick, ROUND_FLOOR))

    @staticmethod
    def _check_size(info: PairInfo, quantity: Decimal, price: Decimal) -> None:
        total = quantity * price
        if quantity < info.min_base or total < info.min_quote:
            raise _min_size(info)
        if quantity > info.max_base or total > info.max_quote:
            raise _max_size(info)

    def _take(
        self, info: PairInfo, cid: str, side: Side, quantity: Decimal, price: Decimal
    ) -> PlaceResult:
        """Fill at once as taker; the fee is in the currency received."""
        base_q, quote_q = self._fee_quanta(info)
        notional = quantity * price
        if side is _BUY:
            pay_cur, pay, get_cur, get = info.quote, notional, info.base, quantity
            fee = _fee(quantity, self._taker_pct, base_q)
        else:
            pay_cur, pay, get_cur, get = info.base, quantity, info.quote, notional
            fee = _fee(notional, self._taker_pct, quote_q)
        funds = self._funds.get(pay_cur)
        if funds is None or funds.available < pay:
            raise ExchangeRejected(INSUFFICIENT_BALANCE, venue_code=-6)
        funds.available -= pay
        self._add(get_cur, get - fee)
        now = htypes.utcnow()
        eid = _uuid4()
        fill = Fill(
            trade_id="paper-" + _uuid4_hex(),
            pair=info.symbol,
            side=side,
            price=price,
            quantity=quantity,
            fee=fee,
            fee_currency=get_cur,
            traded_at=now,
            exchange_order_id=eid,
            customer_order_id=cid,
        )
        status = OrderStatus(
            pair=info.symbol,
            state=_FILLED,
            exchange_order_id=eid,
            customer_order_id=cid,
            original_quantity=quantity,
            remaining_quantity=ZERO,
            executed_quantity=quantity,
            average_price=price,
            updated_at=now,
        )
        self._record_fill(fill, status)
        self._push_balances((pay_cur, get_cur))
        return PlaceResult(_FILLED, eid)

    def _rest(
        self, info: PairInfo, cid: str, side: Side, quantity: Decimal, limit: Decimal
    ) -> PlaceResult:
        """Rest on the book, reserving what a maker fill will cost (fee included)."""
        currency, reserve = self._reservation(info, side, quantity, limit)
        funds = self._funds.get(currency)
        if funds is None or funds.available < reserve:
            raise ExchangeRejected(INSUFFICIENT_BALANCE, venue_code=-6)
        funds.available -= reserve
        funds.reserved += reserve
        now = htypes.utcnow()
        order = _Resting(
            exchange_order_id=_uuid4(),
            customer_order_id=cid,
            info=info,
            side=side,
            price=limit,
            quantity=quantity,
            remaining=quantity,
            created_at=now,
            reserved_currency=currency,
            reserved_amount=reserve,
        )
        self._add_open(order)
        status = order.status(OrderState.PLACED, now)
        self._push(lambda ev: ev.on_order_status(status))
        self._push_book_change({currency})
        return PlaceResult(OrderState.PLACED, order.exchange_order_id)

    def _on_quote(self, quote: Quote) -> None:
        """MarketData subscriber: fill every resting order of the pair this quote crosses,
        unless the quote is stale (then they wait for a fresh one)."""
        book = self._resting.get(quote.pair)
        if not book:
            return
        stale = self._stale(quote.pair, quote)
        if stale is not None:
            pair = quote.pair
            if pair not in self._stale_logged:
                self._stale_logged.add(pair)
                logger.warning("paper: resting %s orders not matched: %s", pair, stale)
            return
        self._stale_logged.discard(quote.pair)
        ask = quote.ask
        bid = quote.bid
        last = quote.last
        crossed = []
        for order in book.values():
            if order.side is _BUY:
                hit = (
                    ask <= order.price
                    if ask is not None
                    else last is not None and last < order.price
                )
            else:
                hit = (
                    bid >= order.price
                    if bid is not None
                    else last is not None and last > order.price
                )
            if hit:
                crossed.append(order)
        if not crossed:
            return
        now = htypes.utcnow()
        currencies: set[str] = set()
        for order in crossed:
            self._fill_resting(order, now)
            currencies.add(order.info.base)
            currencies.add(order.info.quote)
        self._push_book_change(currencies)

    def _fill_resting(self, order: _Resting, now: datetime) -> None:
        """Fill a resting order in full as maker at its limit price."""
        info = order.info
        quantity = order.remaining
        pay_cur, pay = self._maker_cost(info, order.side, quantity, order.price)
        fee = pay - (quantity * order.price if order.side is _BUY else quantity)
        get_cur, get = (
            (info.base, quantity) if order.side is _BUY else (info.quote, quantity * order.price)
        )
        funds = self._funds[order.reserved_currency]
        funds.reserved -= order.reserved_amount
        # Returns the unused part of the reservation (a rebate, or nothing).
        funds.available += order.reserved_amount - pay
        self._add(get_cur, get)
        order.remaining = ZERO
        self._remove_open(order)
        fill = Fill(
            trade_id="paper-" + _uuid4_hex(),
            pair=info.symbol,
            side=order.side,
            price=order.price,
            quantity=quantity,
            fee=fee,
            fee_currency=pay_cur,
            traded_at=now,
            exchange_order_id=order.exchange_order_id,
            customer_order_id=order.customer_order_id,
        )
        self._record_fill(fill, order.status(_FILLED, now))
