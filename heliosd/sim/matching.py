"""The matching engine: places, matches and cancels orders and moves the money.

Everything here is synchronous and single-threaded (it runs on the event loop), so each
public method is atomic with respect to clients: a WS snapshot taken between two calls is
always consistent.

Matching rules (sim choices where VALR documents none):

* Price-time priority. At one price, resting client orders come before the market maker
  (the market maker re-quotes constantly, so it is always the newest).
* Self-trade prevention: an order that would reach one of the account's own resting
  orders fails as a whole with VALR's self-trade ``failedReason``.
* Post-only orders fail if they would match anything; FOK orders fail unless fully
  fillable; IOC remainders are cancelled; market orders are IOC.
* Fees: taker ``taker_fee_pct`` (default 0.1 %), maker ``maker_fee_pct`` (default 0 %),
  or, while ``FaultConfig.maker_rebate_bps`` is above 0, a maker *rebate* of that many
  basis points (a negative maker fee, written as ``makerReward``; see ``wire``).
  The fee is charged in the currency the taker *receives* and the maker *pays*
  (VALR's fee rules): a taker buying BTC pays its fee in BTC; a taker selling BTC pays in
  ZAR; a maker buying pays in ZAR; a maker selling pays in BTC. Fees are rounded half-up
  to the currency's decimal places.
* A buy limit reserves ``quantity × price`` (+ a positive maker fee) of quote, a sell
  reserves the base quantity; the reservation shrinks with each fill and the rest is
  released when the order finishes.
* When the market maker moves through a resting client order (``set_price`` or a tick),
  the order fills completely at its own limit price, as maker.
* Market ``baseAmount`` on a BUY and ``quoteAmount`` on a SELL are amounts credited after
  the fee (VALR's order placement docs); the sim grosses them up by the taker fee.
* Cancel-all is one operation: an ``ORDER_STATUS_UPDATE`` Cancelled per order, then one
  ``BALANCE_UPDATE`` per released currency and one ``OPEN_ORDERS_UPDATE`` (VALR does not
  document its sequence; see ``Exchange.cancel_all``).

``Exchange`` keeps the accounts, placement, cancels and price moves; its base classes own
the rest: ``matching_plan`` (the book walk), ``matching_fills`` (settling fills, terminal
transitions, the public tape) and ``matching_events`` (the event sink and the pushes).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_UP, Decimal

from heliosd.sim import wire
from heliosd.sim.accounts import Account, ApiKey
from heliosd.sim.config import FaultConfig, PairSpec, SimConfig
from heliosd.sim.errors import (
    REASON_FOK,
    REASON_INSUFFICIENT_BALANCE,
    REASON_NO_LIQUIDITY,
    REASON_POST_ONLY,
    REASON_SELF_TRADE,
)
from heliosd.sim.market import Market
from heliosd.sim.matching_events import EventSink as EventSink
from heliosd.sim.matching_events import NullSink as NullSink
from heliosd.sim.matching_fills import ExchangeFills
from heliosd.sim.matching_plan import Fill as Fill
from heliosd.sim.matching_plan import MatchPlanner, _other
from heliosd.sim.matching_plan import Plan as Plan
from heliosd.sim.orders import CANCELLED, ZERO, IdFactory, Order, Side, Trade
from heliosd.sim.validation import LimitRequest, MarketRequest, OrderRequest

HUNDRED = Decimal(100)


class Exchange(ExchangeFills, MatchPlanner):
    """Accounts, keys, books and the rules that connect them."""

    def __init__(
        self, config: SimConfig, sink: EventSink | None = None, faults: FaultConfig | None = None
    ) -> None:
        self.config = config
        self.sink: EventSink = sink or NullSink()
        # Read on every maker fill: a test may switch maker rebates on and off while running.
        self.faults = faults or FaultConfig()
        self.ids = IdFactory(config.seed)
        self.rng = random.Random(config.seed * 7919 + 1)
        self.specs: dict[str, PairSpec] = {p: config.pair_spec(p) for p in config.pairs}
        self.markets: dict[str, Market] = {
            p: Market(spec, config, config.start_prices[p]) for p, spec in self.specs.items()
        }
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}
        self.taker_rate = config.taker_fee_pct / HUNDRED
        self.maker_rate = config.maker_fee_pct / HUNDRED
        self._dirty: set[str] = set()

    @property
    def maker_fee_rate(self) -> Decimal:
        """The maker fee as a fraction now: negative (a rebate) in ``maker_rebate_bps`` mode."""
        bps = self.faults.maker_rebate_bps
        return -Decimal(bps) / 10_000 if bps > 0 else self.maker_rate

    # -- accounts -----------------------------------------------------------------------

    def add_account(self, account_id: str = "0", label: str = "") -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id, label)
        return account

    def account(self, account_id: str) -> Account:
        return self.accounts[account_id]

    def add_api_key(self, key: ApiKey) -> None:
        self.add_account(key.account_id)
        self.keys[key.key] = key

    def fund(self, account_id: str, currency: str, amount: Decimal) -> None:
        acct = self.add_account(account_id)
        acct.credit(currency, amount, datetime.now(UTC))
        self._emit_balance(acct, currency)

    def trade_rows(self, account_id: str, pair: str | None = None) -> Iterable[Trade]:
        """Newest first, as the trade-history endpoints return them."""
        for trade in reversed(self.accounts[account_id].trades):
            if pair is None or trade.pair == pair:
                yield trade

    # -- orders -------------------------------------------------------------------------

    def new_order(self, account_id: str, req: OrderRequest) -> Order:
        """Create the order and claim its customerOrderId; nothing is matched yet."""
        acct = self.accounts[account_id]
        now = datetime.now(UTC)
        if isinstance(req, LimitRequest):
            order = Order(
                order_id=self.ids.uuid(),
                account_id=account_id,
                pair=req.pair,
                side=req.side,
                kind="limit",
                price=req.price,
                original_quantity=req.quantity,
                remaining=req.quantity,
                time_in_force=req.time_in_force,
                post_only=req.post_only,
                customer_order_id=req.customer_order_id,
                created_at=now,
                updated_at=now,
                allow_margin=req.allow_margin,
            )
        else:
            amount = req.base_amount or ZERO
            order = Order(
                order_id=self.ids.uuid(),
                account_id=account_id,
                pair=req.pair,
                side=req.side,
                kind="market",
                price=ZERO,
                original_quantity=amount,
                remaining=amount,
                time_in_force="IOC",
                post_only=False,
                customer_order_id=req.customer_order_id,
                created_at=now,
                updated_at=now,
            )
        if order.customer_order_id is not None:
            acct.live_customer_ids[order.customer_order_id] = order.order_id
        return order

    def execute(self, order: Order, req: OrderRequest) -> str:
        """Run an order created by ``new_order``; return its failedReason ("" if none)."""
        acct = self.accounts[order.account_id]
        acct.orders[order.order_id] = order
        if isinstance(req, LimitRequest):
            reason = self._execute_limit(acct, order)
        else:
            reason = self._execute_market(acct, order, req)
        self.flush()
        return reason

    def _execute_limit(self, acct: Account, order: Order) -> str:
        market = self.markets[order.pair]
        spec = market.spec
        best = market.best_ask() if order.side == "buy" else market.best_bid()
        crosses = best is not None and (
            best <= order.price if order.side == "buy" else best >= order.price
        )
        if order.post_only and crosses:
            return self._fail(acct, order, REASON_POST_ONLY)
        plan = self._plan(market, order.side, acct.account_id, order.price, order.remaining)
        if plan.self_trade:
            return self._fail(acct, order, REASON_SELF_TRADE)
        if order.time_in_force == "FOK" and plan.base < order.remaining:
            return self._fail(acct, order, REASON_FOK)
        currency = spec.quote if order.side == "buy" else spec.base
        needed = self._reservation(spec, order.side, order.remaining, order.price)
        if acct.balance(currency).available < needed:
            return self._fail(acct, order, REASON_INSUFFICIENT_BALANCE)
        now = datetime.now(UTC)
        acct.reserve(currency, needed, now)
        order.reserved_currency, order.reserved_amount = currency, needed
        self._emit(acct, wire.order_processed(order))
        self._emit_balance(acct, currency)
        for fill in plan.fills:
            self._apply_fill(market, order, fill)
        if order.remaining and order.time_in_force == "GTC":
            market.resting[order.order_id] = order
            acct.open_orders[order.order_id] = order
            market.changed()
            self._dirty.add(order.pair)
            if not plan.fills:
                self._emit(acct, wire.order_status_update(order))
            self._emit_open_orders(acct)
        elif order.remaining:  # IOC remainder
            self._finish(acct, order, CANCELLED)
        return ""

    def _execute_market(self, acct: Account, order: Order, req: MarketRequest) -> str:
        market = self.markets[order.pair]
        spec = market.spec
        base_amount, quote_amount = req.base_amount, req.quote_amount
        if order.side == "buy" and base_amount is not None:
            base_amount = (base_amount / (1 - self.taker_rate)).quantize(
                spec.base_quantum, rounding=ROUND_UP
            )
        if order.side == "sell" and quote_amount is not None:
            quote_amount = quote_amount / (1 - self.taker_rate)
        plan = self._plan(market, order.side, acct.account_id, None, base_amount, quote_amount)
        if plan.self_trade:
            return self._fail(acct, order, REASON_SELF_TRADE)
        if not plan.fills:
            return self._fail(acct, order, REASON_NO_LIQUIDITY)
        if order.side == "buy":
            currency = spec.quote
            needed = req.quote_amount if req.quote_amount is not None else plan.quote
        else:
            currency = spec.base
            needed = req.base_amount if req.base_amount is not None else plan.base
        if acct.balance(currency).available < needed:
            return self._fail(acct, order, REASON_INSUFFICIENT_BALANCE)
        # The whole plan's cost is reserved for the instant it executes, so the fills below
        # go through the same reservation path as limit orders.
        cost = plan.quote if order.side == "buy" else plan.base
        acct.reserve(currency, cost, datetime.now(UTC))
        order.reserved_currency, order.reserved_amount = currency, cost
        # The order's size is what it asked for when it named a base amount, otherwise what
        # the book gave it; a shortfall leaves a remainder that is cancelled (IOC).
        requested = base_amount if base_amount is not None and plan.exhausted else plan.base
        order.original_quantity = order.remaining = requested
        self._emit(acct, wire.order_processed(order))
        for fill in plan.fills:
            self._apply_fill(market, order, fill)
        if order.remaining:  # the book ran out before the amount was reached
            self._finish(acct, order, CANCELLED)
        return ""

    def _reservation(self, spec: PairSpec, side: Side, qty: Decimal, price: Decimal) -> Decimal:
        maker_extra = max(self.maker_fee_rate, ZERO)
        if side == "buy":
            cost = qty * price
            fee = (cost * maker_extra).quantize(wire.currency_spec(spec.quote).quantum, ROUND_UP)
            return cost + fee
        fee = (qty * maker_extra).quantize(wire.currency_spec(spec.base).quantum, ROUND_UP)
        return qty + fee

    # -- cancels ------------------------------------------------------------------------

    def cancel(
        self, account_id: str, pair: str, order_id: str | None, customer_order_id: str | None
    ) -> Order | None:
        """Cancel one open order; None if it is unknown, on another pair, or finished."""
        acct = self.accounts[account_id]
        order = acct.find_order(order_id, customer_order_id)
        if order is None or order.pair != pair or not order.is_open:
            return None
        self._finish(acct, order, CANCELLED)
        self.flush()
        return order

    def cancel_all(self, account_id: str, pair: str | None = None) -> list[Order]:
        """Cancel every open order of the account (or of one pair), as one operation.

        Events (a sim choice: VALR does not document the sequence for cancel-all):
        one ``ORDER_STATUS_UPDATE`` Cancelled per order, in the
        order the orders were placed, then one ``BALANCE_UPDATE`` per currency released
        and one ``OPEN_ORDERS_UPDATE`` with what is left -- not one balance and one full
        open-order list per cancelled order, which is O(n^2) bytes for n open orders
        (500 orders took the REST answer from 8 ms to 2.1 s) and says nothing more: each
        of those snapshots is superseded before the answer is sent.
        """
        acct = self.accounts[account_id]
        victims = [o for o in acct.open_orders.values() if pair is None or o.pair == pair]
        released: set[str] = set()
        now = datetime.now(UTC)
        for order in victims:
            if order.reserved_amount:
                released.add(order.reserved_currency)
            self._close(acct, order, CANCELLED, "", now)
            self._emit(acct, wire.order_status_update(order))
        for currency in sorted(released):
            self._emit_balance(acct, currency)
        if victims:
            self._emit_open_orders(acct)
        self.flush()
        return victims

    # -- prices -------------------------------------------------------------------------

    def set_price(self, pair: str, price: Decimal, *, trade: bool = False) -> None:
        """Move the mid: re-quote, fill every resting order the new quotes cross."""
        market = self.markets[pair]
        market.requote(price)
        self._dirty.add(pair)
        ask = market.mm_asks[0].price if market.mm_asks else None
        bid = market.mm_bids[0].price if market.mm_bids else None
        crossed = [
            o
            for o in market.resting.values()
            if (o.side == "buy" and ask is not None and o.price >= ask)
            or (o.side == "sell" and bid is not None and o.price <= bid)
        ]
        # Best prices first, as the market maker would sweep them.
        crossed.sort(key=lambda o: -o.price if o.side == "buy" else o.price)
        now = datetime.now(UTC)
        for order in crossed:
            qty = order.remaining
            self._settle(market, order, order.price, qty, maker=True, now=now)
            self._public_trade(market, order.price, qty, _other(order.side), now)
        if trade and not crossed and market.mm_asks and market.mm_bids:
            # A tick's synthetic print keeps the public tape and lastTradedPrice moving.
            side: Side = "buy" if self.rng.random() < 0.5 else "sell"
            level = market.mm_asks[0] if side == "buy" else market.mm_bids[0]
            qty = market.spec.min_base * self.rng.randint(1, 10)
            self._public_trade(market, level.price, qty, side, now)
        self.flush()
