"""The paper exchange (``paper``): a rehearsal of VALR that moves no money.

It is meant to behave like the live venue wherever an operator could notice: the same pair
limits (from the market view, i.e. VALR's ``/v1/public/pairs`` once loaded), VALR's error
texts and codes, VALR's fee currencies, balances with reservations, and fills at real market
prices. What it cannot know (depth, queue position) it models pessimistically.

Execution model
---------------
* Requests are checked as VALR and the VALR client check them: quantity truncated to the
  base decimals, a limit price rounded to the tick never against the trader (BUY down,
  SELL up), min/max base and quote amounts (a market order valued at the touch).
* MARKET orders fill at once and in full at the touch (best ask for a BUY, best bid for a
  SELL) worsened by ``slippage_pct`` and rounded to the tick *against* the trader. The
  quantity is VALR's ``baseAmount``: for a BUY that is the base credited *after* the taker
  fee, so the fill is grossed up (0.01 BTC asked, 0.01001002 filled at 0.1 %).
* A LIMIT order that crosses the touch fills at once as taker, at the touch worsened by
  slippage but never beyond its limit (with no slippage: the better of limit and touch).
* Any other LIMIT order rests, reserving quote (BUY) or base (SELL), and fills in full as
  maker at its limit price when a quote crosses it: a BUY when the ask is at or below the
  limit (or, with no ask known, a trade strictly below it); a SELL symmetrically.
* Stale prices: a quote older than ``max_quote_age_s`` is no market price. A MARKET order, or
  a LIMIT order that would take, is refused with the pair and the quote's age; a resting
  order is not matched against such a quote. The age is ``now - Quote.at``, and ``Quote.at``
  is when heliosd *received* the quote (the VALR client stamps it with heliosd's clock on
  arrival, never with VALR's timestamp): a dead feed is what makes a price stale, and a
  receive time shows it without depending on the exchange's clock. A quote dated in the
  future by more than the limit (heliosd's clock stepped back) has no knowable age and is
  stale too. A non-marketable LIMIT order still rests on a stale quote: it fills only when
  a fresh quote crosses it.
* Fees (percent, as VALR reports them): a taker pays in the currency it receives (BUY: base,
  SELL: quote); a maker pays in the currency it pays (BUY: quote, SELL: base), and a negative
  maker fee is a rebate in that currency (VALR's fee currency rule). Fees are
  quantised to the base decimals (base fees) or to max(2, tick decimals) (quote fees, so ZAR
  fees are whole cents) with ROUND_CEILING: rounding never flatters the rehearsal.

Events
------
``place``/``cancel`` change state synchronously and return; what a venue would push on its
account stream (fills, order statuses, open-order snapshots, balance rows) is queued and
delivered in order by one task started in :meth:`PaperExchange.start`, so it always arrives
*after* the call that caused it has returned, exactly once.

Restart
-------
The paper venue keeps no state of its own: the core stores its fills and orders. At startup
the core calls :meth:`PaperExchange.restore` with every stored paper fill and open order
*before* ``start``; balances are starting balances plus those fills, and open orders rest
again with their reservations.

Modules
-------
The code is split by what each part owns: ``paper_texts`` (VALR's texts and codes),
``paper_funds`` (balances and fee arithmetic), ``paper_book`` (orders, fills, the event
queue), ``paper_matching`` (takes, rests, matching against quotes, staleness) and
``paper_restore`` (restart). This module holds the venue's public face, ``PaperExchange``
and its hookimpl, and re-exports every name it had before the split.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import heliosd.core.types as htypes

# The `X as X` imports below re-export, so that every name importable from this module before
# it was split (private ones included: tests and plugins reach for some) still is.
from heliosd.builtin.paper.book import _V4_CLEAR as _V4_CLEAR
from heliosd.builtin.paper.book import _V4_SET as _V4_SET
from heliosd.builtin.paper.book import MAX_FINISHED_ORDERS as MAX_FINISHED_ORDERS
from heliosd.builtin.paper.book import _Delivery as _Delivery
from heliosd.builtin.paper.book import _ids as _ids
from heliosd.builtin.paper.book import _Resting as _Resting
from heliosd.builtin.paper.book import _uuid4 as _uuid4
from heliosd.builtin.paper.book import _uuid4_hex as _uuid4_hex
from heliosd.builtin.paper.funds import _BUY as _BUY
from heliosd.builtin.paper.funds import _FILLED as _FILLED
from heliosd.builtin.paper.funds import _HUNDRED as _HUNDRED
from heliosd.builtin.paper.funds import _LIMIT as _LIMIT
from heliosd.builtin.paper.funds import _MARKET as _MARKET
from heliosd.builtin.paper.funds import _SELL as _SELL
from heliosd.builtin.paper.funds import _fee as _fee
from heliosd.builtin.paper.funds import _Funds as _Funds
from heliosd.builtin.paper.funds import _quanta as _quanta
from heliosd.builtin.paper.funds import _to_tick as _to_tick
from heliosd.builtin.paper.matching import _Matching
from heliosd.builtin.paper.matching import logger as logger
from heliosd.builtin.paper.restore import _QUOTE_CURRENCIES as _QUOTE_CURRENCIES
from heliosd.builtin.paper.restore import _Restoring
from heliosd.builtin.paper.texts import _CUSTOMER_ID as _CUSTOMER_ID
from heliosd.builtin.paper.texts import _E as _E
from heliosd.builtin.paper.texts import _TENTH as _TENTH
from heliosd.builtin.paper.texts import DUPLICATE_CUSTOMER_ID as DUPLICATE_CUSTOMER_ID
from heliosd.builtin.paper.texts import INSUFFICIENT_BALANCE as INSUFFICIENT_BALANCE
from heliosd.builtin.paper.texts import INVALID_ORDER as INVALID_ORDER
from heliosd.builtin.paper.texts import INVALID_REQUEST as INVALID_REQUEST
from heliosd.builtin.paper.texts import PAIR_INACTIVE as PAIR_INACTIVE
from heliosd.builtin.paper.texts import UNSUPPORTED_PAIR as UNSUPPORTED_PAIR
from heliosd.builtin.paper.texts import _max_size as _max_size
from heliosd.builtin.paper.texts import _min_size as _min_size
from heliosd.builtin.paper.texts import _parse_enum as _parse_enum
from heliosd.builtin.paper.texts import _plain as _plain
from heliosd.builtin.paper.texts import _seconds as _seconds
from heliosd.core.errors import ExchangeRejected, HeliosError, TransientError
from heliosd.core.types import ZERO as ZERO
from heliosd.core.types import (
    ApiKeyInfo,
    Balance,
    Fill,
    Flow,
    FuturesPosition,
    OpenOrder,
    OrderStatus,
    OrderType,
    PairInfo,
    PlaceRequest,
    PlaceResult,
    Quote,
    Side,
)
from heliosd.core.types import OrderState as OrderState
from heliosd.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from heliosd.core.config import PaperSettings, Settings
    from heliosd.core.protocols import ExchangeContext, ExchangeEvents, ExchangeFactory, MarketView

_DELIVERY_DRAIN_S = 5.0


@runtime_checkable
class QuoteSource(Protocol):
    """A market view that can push quotes (``heliosd.trading.marketdata.MarketData`` is one)."""

    def subscribe(self, callback: Callable[[Quote], None]) -> Callable[[], None]: ...


class PaperExchange(_Restoring, _Matching):
    """The paper venue (implements ``heliosd.core.protocols.ExchangeClient``; see module doc)."""

    name = "paper"
    # Placement is one synchronous step after the permit check (see ``place``).
    honours_permits = True

    def __init__(self, market: MarketView, settings: PaperSettings) -> None:
        self._market = market
        self._maker_pct = settings.maker_fee_pct
        self._taker_pct = settings.taker_fee_pct
        self._max_age_s = settings.max_quote_age_s
        self._max_age = timedelta(microseconds=int(settings.max_quote_age_s * 1_000_000))
        # Pairs whose stale quotes were already logged; cleared by the next fresh one.
        self._stale_logged: set[str] = set()
        slip = settings.slippage_pct / _HUNDRED
        self._slipping = bool(slip)
        self._buy_factor = 1 + slip
        self._sell_factor = 1 - slip
        self._funds: dict[str, _Funds] = {
            cur: _Funds(Decimal(amount)) for cur, amount in settings.starting_balances.items()
        }
        self._open: dict[str, _Resting] = {}  # by exchange id, in creation order
        self._open_by_customer: dict[str, _Resting] = {}
        self._resting: dict[str, dict[str, _Resting]] = {}  # pair -> exchange id -> order
        self._finished: OrderedDict[str, OrderStatus] = OrderedDict()
        self._finished_by_customer: dict[str, str] = {}  # customer id -> newest exchange id
        self._fills: list[Fill] = []
        self._trade_ids: set[str] = set()
        self._quanta: dict[str, tuple[PairInfo, Decimal, Decimal]] = {}
        self._outbox: deque[_Delivery | None] = deque()
        self._wakeup = asyncio.Event()
        self._events: ExchangeEvents | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False

    @classmethod
    def from_context(cls, ctx: ExchangeContext) -> PaperExchange:
        """The factory registered as ``paper``: settings from ``[paper]``, prices from the core."""
        return cls(ctx.market, ctx.settings.paper)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, events: ExchangeEvents) -> None:
        """Subscribe to prices and start delivering events (snapshots first, like VALR)."""
        if self._closed:
            raise HeliosError("paper exchange is closed")
        if self._events is not None:
            raise HeliosError("paper exchange already started")
        if not isinstance(self._market, QuoteSource):
            # Resting orders would never fill: refuse to run rather than pretend.
            raise HeliosError("the paper exchange needs a market view that publishes quotes")
        self._events = events
        rows = [Balance(c, f.available, f.reserved) for c, f in self._funds.items()]
        snapshot = self._open_snapshot()
        self._outbox.appendleft(lambda ev: ev.on_open_orders(snapshot))
        self._outbox.appendleft(lambda ev: ev.on_balances(rows, snapshot=True))
        self._task = asyncio.get_running_loop().create_task(
            self._deliver(events), name="paper-exchange-events"
        )
        self._unsubscribe = self._market.subscribe(self._on_quote)
        # Prices may have crossed restored orders while the daemon was down.
        for pair in list(self._resting):
            quote = self._market.quote(pair)
            if quote is not None:
                self._on_quote(quote)
        self._wakeup.set()

    async def close(self) -> None:
        """Stop matching, deliver what is queued (bounded wait), stop the delivery task."""
        if self._closed:
            return
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task = self._task
        if task is not None:
            self._push(None)
            try:
                await asyncio.wait_for(task, _DELIVERY_DRAIN_S)
            except TimeoutError:
                logger.warning("paper exchange: %d events undelivered at close", len(self._outbox))

    async def _deliver(self, events: ExchangeEvents) -> None:
        outbox = self._outbox
        while True:
            while outbox:
                item = outbox.popleft()
                if item is None:
                    return
                try:
                    await item(events)
                except Exception:
                    # The core's handlers are expected not to raise; if one does, the others
                    # must still get their events.
                    logger.exception("paper exchange: delivering an event failed")
            self._wakeup.clear()
            await self._wakeup.wait()

    # ------------------------------------------------------------------ orders

    async def place(self, request: PlaceRequest) -> PlaceResult:
        """Place one order; raises ExchangeRejected with VALR's text when refused.

        With a send permit, ``begin_send`` comes first and the whole placement (checks and
        matching) runs after it without an await, so a revoked permit raises PermitRevoked
        and nothing is matched, reserved or booked."""
        permit = request.permit
        if permit is None:
            return self._place(request)
        permit.begin_send()
        try:
            return self._place(request)
        finally:
            permit.end_send()

    def _place(self, request: PlaceRequest) -> PlaceResult:
        if self._closed:
            raise TransientError("paper exchange is closed")
        info = self._market.pair(request.pair)
        if info is None:
            raise ExchangeRejected(UNSUPPORTED_PAIR, venue_code=-21)
        if not info.active:
            raise ExchangeRejected(PAIR_INACTIVE, venue_code=-32)
        cid = request.customer_order_id
        if not _CUSTOMER_ID.fullmatch(cid):
            raise ExchangeRejected(INVALID_REQUEST, venue_code=-11)
        if cid in self._open_by_customer:
            raise ExchangeRejected(DUPLICATE_CUSTOMER_ID, venue_code=-11502)
        side = request.side
        if side is not _BUY and side is not _SELL:
            # A plain "BUY" string must not be mistaken for a SELL by the identity checks.
            side = _parse_enum(Side, side)
        buy = side is _BUY
        order_type = request.type
        if order_type is not _MARKET and order_type is not _LIMIT:
            order_type = _parse_enum(OrderType, order_type)
        touch = self._market.price_for(info.symbol, side)
        if touch is None:
            raise ExchangeRejected(f"No market price for {info.symbol}")
        quantity = info.round_quantity(request.quantity)
        if order_type is _MARKET:
            # Before sizing: a size judged at a stale price would be a second wrong answer.
            stale = self._stale(info.symbol, self._market.quote(info.symbol))
            if stale is not None:
                raise ExchangeRejected(stale)
            # Sized at the touch, as the VALR client estimates a market order's value.
            self._check_size(info, quantity, touch)
            price = self._slipped(info, buy, touch)
            if buy:
                quantity = self._gross_up(info, quantity)
            return self._take(info, cid, side, quantity, price)
        if request.price is None or request.price <= 0:
            raise ExchangeRejected(INVALID_REQUEST, venue_code=-11)
        # Rounded to the tick never against the trader, as the VALR client sends it.
        limit = _to_tick(request.price, info.tick_size, ROUND_FLOOR if buy else ROUND_CEILING)
        if limit <= 0:
            raise ExchangeRejected(INVALID_REQUEST, venue_code=-11)
        self._check_size(info, quantity, limit)
        if (limit >= touch) if buy else (limit <= touch):
            stale = self._stale(info.symbol, self._market.quote(info.symbol))
            if stale is not None:
                raise ExchangeRejected(stale)
            slipped = self._slipped(info, buy, touch)
            price = min(limit, slipped) if buy else max(limit, slipped)
            return self._take(info, cid, side, quantity, price)
        return self._rest(info, cid, side, quantity, limit)

    async def cancel(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> None:
        """Cancel one open order; ExchangeRejected("Invalid Order. ") if none is open."""
        if exchange_order_id is None and customer_order_id is None:
            raise ExchangeRejected(INVALID_REQUEST, venue_code=-11)
        order = self._find_open(exchange_order_id, customer_order_id)
        if order is None or order.info.symbol != pair:
            raise ExchangeRejected(INVALID_ORDER, venue_code=-1)
        now = htypes.utcnow()
        self._cancel(order, now)
        self._push_book_change({order.reserved_currency})

    async def cancel_all(self) -> int:
        """Cancel every open order, release every reservation; returns how many."""
        orders = list(self._open.values())
        if not orders:
            return 0
        now = htypes.utcnow()
        for order in orders:
            self._cancel(order, now)
        self._push_book_change({o.reserved_currency for o in orders})
        return len(orders)

    async def open_orders(self) -> list[OpenOrder]:
        return self._open_snapshot()

    async def order_status(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> OrderStatus | None:
        """Open orders first, then finished ones still remembered; None when unknown."""
        status: OrderStatus | None = None
        order = self._find_open(exchange_order_id, customer_order_id)
        if order is not None:
            status = order.status(self._open_state(order), order.created_at)
        elif exchange_order_id is not None:
            status = self._finished.get(exchange_order_id)
        elif customer_order_id is not None:
            eid = self._finished_by_customer.get(customer_order_id)
            status = None if eid is None else self._finished.get(eid)
        if status is None or status.pair != pair:
            return None
        return status

    # ------------------------------------------------------------------ account

    async def balances(self) -> list[Balance]:
        return [Balance(c, f.available, f.reserved) for c, f in self._funds.items()]

    async def positions(self) -> list[FuturesPosition]:
        return []  # spot only

    async def trade_history(self, *, since: datetime | None = None) -> list[Fill]:
        fills = self._fills if since is None else [f for f in self._fills if f.traded_at >= since]
        return sorted(fills, key=lambda f: f.traded_at)

    async def transaction_history(self, since: datetime | None = None) -> list[Flow]:
        """Always empty: money enters the paper account only as its starting balances."""
        return []

    async def check_credentials(self) -> ApiKeyInfo:
        return ApiKeyInfo("paper", frozenset({"View access", "Trade"}))

    async def server_time(self) -> datetime:
        return htypes.utcnow()

    def clock_skew(self) -> float:
        """Always 0.0: the paper venue is its own clock (``server_time()`` is local time)."""
        return 0.0

    async def pairs(self) -> Mapping[str, PairInfo]:
        return self._market.pairs()


@hookimpl
def heliosd_register_exchanges(
    register: Callable[[str, ExchangeFactory], None], config: Settings
) -> None:
    """Register the paper venue as ``paper``."""
    register("paper", PaperExchange.from_context)
