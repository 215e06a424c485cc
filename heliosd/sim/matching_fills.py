"""Fills: the money each one moves, its fee, its events, and the public tape.

Also an order's terminal transitions (filled, cancelled, failed) with what they release.
``ExchangeFills`` is a base class of :class:`heliosd.sim.matching.Exchange`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from heliosd.sim import wire
from heliosd.sim.accounts import Account
from heliosd.sim.config import FaultConfig
from heliosd.sim.market import Market
from heliosd.sim.matching_events import ExchangeEvents
from heliosd.sim.matching_plan import Fill
from heliosd.sim.orders import (
    FAILED,
    FILLED,
    PARTIALLY_FILLED,
    ZERO,
    IdFactory,
    Order,
    PublicTrade,
    Side,
    Trade,
)


class ExchangeFills(ExchangeEvents):
    """Settling the fills of :class:`heliosd.sim.matching.Exchange` (one of its base classes)."""

    # Set by Exchange.__init__ (heliosd.sim.matching).
    ids: IdFactory
    faults: FaultConfig
    taker_rate: Decimal

    if TYPE_CHECKING:  # defined by Exchange

        @property
        def maker_fee_rate(self) -> Decimal: ...

    # -- fills --------------------------------------------------------------------------

    def _apply_fill(self, market: Market, taker: Order, fill: Fill) -> None:
        now = datetime.now(UTC)
        self._settle(market, taker, fill.price, fill.quantity, maker=False, now=now)
        if isinstance(fill.maker, Order):
            self._settle(market, fill.maker, fill.price, fill.quantity, maker=True, now=now)
        else:
            fill.maker.quantity -= fill.quantity
        self._public_trade(market, fill.price, fill.quantity, taker.side, now)

    def _settle(
        self,
        market: Market,
        order: Order,
        price: Decimal,
        qty: Decimal,
        *,
        maker: bool,
        now: datetime,
    ) -> None:
        """Move one account's money for one fill and tell it (trade, balances, status)."""
        acct = self.accounts[order.account_id]
        spec = market.spec
        base_q = wire.currency_spec(spec.base).quantum
        quote_q = wire.currency_spec(spec.quote).quantum
        rate = self.maker_fee_rate if maker else self.taker_rate
        notional = qty * price
        if order.side == "buy":
            # Taker receives base -> fee in base; maker pays quote -> fee in quote.
            fee_currency = spec.quote if maker else spec.base
            fee = (notional if maker else qty) * rate
            fee = fee.quantize(quote_q if maker else base_q, ROUND_HALF_UP)
            self._consume(acct, order, notional + (fee if maker else ZERO), now)
            acct.credit(spec.base, qty - (ZERO if maker else fee), now)
        else:
            fee_currency = spec.base if maker else spec.quote
            fee = (qty if maker else notional) * rate
            fee = fee.quantize(base_q if maker else quote_q, ROUND_HALF_UP)
            self._consume(acct, order, qty + (fee if maker else ZERO), now)
            acct.credit(spec.quote, notional - (ZERO if maker else fee), now)
        order.remaining -= qty
        order.executed_quantity += qty
        order.executed_quote += notional
        order.executed_fee += fee
        order.fee_currency = fee_currency
        order.status = PARTIALLY_FILLED if order.remaining else FILLED
        order.updated_at = now
        trade = Trade(
            self.ids.uuid(),
            acct.account_id,
            order.order_id,
            order.customer_order_id,
            order.pair,
            order.side,
            price,
            qty,
            fee,
            fee_currency,
            now,
            self.ids.sequence(),
            maker,
            self.faults.maker_reward_shape,
        )
        acct.trades.append(trade)
        was_open = False if order.remaining else self._close(acct, order, FILLED, "", now)
        self._emit(acct, wire.new_account_trade(trade))
        self._emit_balance(acct, spec.base)
        self._emit_balance(acct, spec.quote)
        if self.sink.wants_account(acct.account_id):
            record = wire.new_account_history_record(
                trade, spec.base, spec.quote, market=order.kind == "market"
            )
            self.sink.account(acct.account_id, record)
        self._emit(acct, wire.order_status_update(order))
        if was_open or order.order_id in acct.open_orders:
            self._emit_open_orders(acct)

    def _consume(self, acct: Account, order: Order, amount: Decimal, now: datetime) -> None:
        """Pay for a fill out of the order's reservation, then shrink it to what is left."""
        currency = order.reserved_currency
        from_reserved = min(amount, order.reserved_amount)
        bal = acct.balance(currency)
        bal.reserved -= from_reserved
        order.reserved_amount -= from_reserved
        if amount > from_reserved:  # rounding of a positive maker fee; never more than dust
            acct.debit(currency, amount - from_reserved, now)
        bal.updated_at = now

    def _close(self, acct: Account, order: Order, status: str, reason: str, now: datetime) -> bool:
        """Terminal transition without telling anyone: release what is still reserved and
        take the order off the book. Returns whether it was open."""
        order.status, order.failed_reason, order.updated_at = status, reason, now
        was_open = acct.open_orders.pop(order.order_id, None) is not None
        market = self.markets[order.pair]
        if market.resting.pop(order.order_id, None) is not None:
            market.changed()
            self._dirty.add(order.pair)
        cid = order.customer_order_id
        if cid is not None and acct.live_customer_ids.get(cid) == order.order_id:
            del acct.live_customer_ids[cid]
        if order.reserved_amount:
            acct.release(order.reserved_currency, order.reserved_amount, now)
            order.reserved_amount = ZERO
        return was_open

    def _finish(self, acct: Account, order: Order, status: str, reason: str = "") -> None:
        """Terminal transition plus its events: status, the released balance, open orders."""
        had_reservation = bool(order.reserved_amount)
        was_open = self._close(acct, order, status, reason, datetime.now(UTC))
        self._emit(acct, wire.order_status_update(order))
        if had_reservation:
            self._emit_balance(acct, order.reserved_currency)
        if was_open:
            self._emit_open_orders(acct)

    def _fail(self, acct: Account, order: Order, reason: str) -> str:
        self._emit(acct, wire.order_processed(order, reason))
        self._finish(acct, order, FAILED, reason)
        return reason

    def print_trade(self, pair: str, price: Decimal, qty: Decimal, taker_side: Side) -> None:
        """Put a trade between other parties on the public tape (and push it)."""
        self._public_trade(self.markets[pair], price, qty, taker_side, datetime.now(UTC))
        self.flush()

    def _public_trade(
        self, market: Market, price: Decimal, qty: Decimal, taker_side: Side, now: datetime
    ) -> None:
        trade = PublicTrade(
            self.ids.uuid(), market.spec.symbol, price, qty, taker_side, now, self.ids.sequence()
        )
        market.record_public_trade(trade)
        self._dirty.add(market.spec.symbol)
        if self.sink.wants_market("NEW_TRADE", trade.pair):
            self.sink.market("NEW_TRADE", trade.pair, wire.ws_new_trade(trade))
