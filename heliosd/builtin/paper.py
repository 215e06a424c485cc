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
  maker fee is a rebate in that currency (valr-api.md section 4, fee currency rule). Fees are
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
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import heliosd.types as htypes
from heliosd.errors import ExchangeRejected, HeliosError, TransientError
from heliosd.hookspecs import hookimpl
from heliosd.types import (
    ZERO,
    ApiKeyInfo,
    Balance,
    Fill,
    FuturesPosition,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    PlaceRequest,
    PlaceResult,
    Quote,
    Side,
)

if TYPE_CHECKING:
    from heliosd.config import PaperSettings, Settings
    from heliosd.protocols import ExchangeContext, ExchangeEvents, ExchangeFactory, MarketView

logger = logging.getLogger(__name__)

_E = TypeVar("_E", bound=Enum)

# VALR's own texts and codes (valr-api.md section 6.2), so a paper refusal reads like a live one.
INSUFFICIENT_BALANCE = "Insufficient Balance"  # -6
DUPLICATE_CUSTOMER_ID = "Duplicate customer order id's are not allowed"  # -11502
UNSUPPORTED_PAIR = "Unsupported Currency Pair"  # -21
PAIR_INACTIVE = "The given currency pair is not active"  # -32
INVALID_REQUEST = "Invalid Request, please check your request and try again"  # -11
INVALID_ORDER = "Invalid Order. "  # -1, trailing space included

# VALR accepts customerOrderIds of up to 50 characters of [0-9A-Za-z-]; paper refuses the
# same ids so that a bad id generator is caught in rehearsal, not on the first LIVE order.
_CUSTOMER_ID = re.compile(r"[0-9A-Za-z-]{1,50}")
_HUNDRED = Decimal(100)
_TENTH = Decimal("0.1")
_DELIVERY_DRAIN_S = 5.0
# VALR's quote currencies, longest first so "USDC" wins over a hypothetical "DC"; used only
# to read a pair symbol that is not loaded yet (see PaperExchange._restore_pair).
_QUOTE_CURRENCIES = ("USDC", "USDT", "ZAR", "BTC", "ETH", "EUR", "USD")
# Finished orders kept for order_status lookups; older ones are forgotten (the store has them).
MAX_FINISHED_ORDERS = 10_000

# Enum class attributes cost ~150 ns each on 3.11; the order path uses these constants.
_BUY = Side.BUY
_SELL = Side.SELL
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_FILLED = OrderState.FILLED

_Delivery = Callable[["ExchangeEvents"], Awaitable[None]]


@runtime_checkable
class QuoteSource(Protocol):
    """A market view that can push quotes (``heliosd.marketdata.MarketData`` is one)."""

    def subscribe(self, callback: Callable[[Quote], None]) -> Callable[[], None]: ...


class _Funds:
    __slots__ = ("available", "reserved")

    def __init__(self, available: Decimal = ZERO, reserved: Decimal = ZERO) -> None:
        self.available = available
        self.reserved = reserved


@dataclass(slots=True, eq=False)
class _Resting:
    """An open (resting) limit order and the funds it holds."""

    exchange_order_id: str
    customer_order_id: str | None
    info: PairInfo
    side: Side
    price: Decimal
    quantity: Decimal
    remaining: Decimal
    created_at: datetime
    reserved_currency: str
    reserved_amount: Decimal
    # Built once: a resting order only ever fills in full, so its OpenOrder never changes
    # and open-order snapshots (one per book change) need not rebuild it.
    cached: OpenOrder | None = None

    def open_order(self) -> OpenOrder:
        if self.cached is not None:
            return self.cached
        self.cached = OpenOrder(
            exchange_order_id=self.exchange_order_id,
            pair=self.info.symbol,
            side=self.side,
            type=OrderType.LIMIT,
            price=self.price,
            original_quantity=self.quantity,
            remaining_quantity=self.remaining,
            customer_order_id=self.customer_order_id,
            created_at=self.created_at,
        )
        return self.cached

    def status(self, state: OrderState, now: datetime, reason: str = "") -> OrderStatus:
        executed = self.quantity - self.remaining
        return OrderStatus(
            pair=self.info.symbol,
            state=state,
            exchange_order_id=self.exchange_order_id,
            customer_order_id=self.customer_order_id,
            original_quantity=self.quantity,
            remaining_quantity=self.remaining,
            executed_quantity=executed,
            average_price=self.price if executed else None,
            failed_reason=reason,
            updated_at=now,
        )


# Ids need uniqueness, not secrecy: a private Mersenne Twister seeded from os.urandom gives
# 128 random bits in ~0.1 us, where uuid.uuid4() costs ~4 us (it builds a UUID object).
_ids = random.Random()
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _uuid4_hex() -> str:
    """32 hex digits of a random (version 4) UUID, as ``uuid.uuid4().hex``."""
    return f"{(_ids.getrandbits(128) & _V4_CLEAR) | _V4_SET:032x}"


def _uuid4() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())``."""
    h = _uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _parse_enum(enum: type[_E], value: object) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise ExchangeRejected(INVALID_REQUEST, venue_code=-11) from None


def _plain(value: Decimal) -> str:
    """Decimal as VALR prints it in messages: no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


def _fee(amount: Decimal, pct: Decimal, quantum: Decimal) -> Decimal:
    if not pct:
        return ZERO
    return (amount * pct / _HUNDRED).quantize(quantum, rounding=ROUND_CEILING)


def _quanta(info: PairInfo) -> tuple[Decimal, Decimal]:
    """(base fee quantum, quote fee quantum) for a pair."""
    exponent = info.tick_size.normalize().as_tuple().exponent
    tick_decimals = -exponent if isinstance(exponent, int) else 0
    return Decimal(1).scaleb(-info.base_decimals), Decimal(1).scaleb(-max(2, tick_decimals))


def _seconds(age: timedelta) -> str:
    """An age in seconds to the tenth, rounded up so that an age over a limit never reads
    as equal to it (Decimal from whole microseconds: no float text like 30.000001)."""
    micros = (age.days * 86_400 + age.seconds) * 1_000_000 + age.microseconds
    return f"{(Decimal(micros) / 1_000_000).quantize(_TENTH, rounding=ROUND_CEILING)} s"


def _min_size(info: PairInfo) -> ExchangeRejected:
    # VALR's wording, stray space before the full stop included (valr-api.md -12007).
    return ExchangeRejected(
        f"Minimum order size not met . Minimum amount: {_plain(info.min_base)} {info.base}, "
        f"minimum total: {_plain(info.min_quote)} {info.quote}",
        venue_code=-12007,
    )


def _max_size(info: PairInfo) -> ExchangeRejected:
    # VALR documents no text for this; the simulator's (and so the client's) wording.
    return ExchangeRejected(
        f"Maximum order size exceeded . Maximum amount: {_plain(info.max_base)} {info.base}, "
        f"maximum total: {_plain(info.max_quote)} {info.quote}",
        venue_code=-11,
    )


class PaperExchange:
    """The paper venue (implements ``heliosd.protocols.ExchangeClient``; see module doc)."""

    name = "paper"

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

    def restore(self, fills: Iterable[Fill], open_orders: Iterable[OpenOrder]) -> None:
        """Continue where the last run stopped. Call once, before :meth:`start`.

        Balances become starting balances plus every fill (a fill's fee is taken from its
        ``fee_currency``; a trade id seen twice counts once). Open LIMIT orders rest again and
        re-reserve their funds; one that can no longer rest (unknown pair, not a limit order,
        funds missing) is reported CANCELLED with the reason once started, never silently
        dropped. Raises HeliosError for a fill of an unknown pair: balances would be wrong.
        """
        if self._events is not None:
            raise HeliosError("PaperExchange.restore() must be called before start()")
        for fill in sorted(fills, key=lambda f: f.traded_at):
            if fill.trade_id in self._trade_ids:
                continue
            info = self._restore_pair(fill.pair)
            if info is None:
                raise HeliosError(
                    f"cannot restore paper fill {fill.trade_id}: unknown pair {fill.pair}"
                )
            notional = fill.quantity * fill.price
            if Side(fill.side) is _BUY:
                self._add(info.quote, -notional)
                self._add(info.base, fill.quantity)
            else:
                self._add(info.base, -fill.quantity)
                self._add(info.quote, notional)
            self._add(fill.fee_currency, -fill.fee)
            self._fills.append(fill)
            self._trade_ids.add(fill.trade_id)
            self._remember_fill(fill)
        for order in open_orders:
            if not order.exchange_order_id:
                # Never acknowledged by this venue (the daemon stopped between sending and
                # recording): the core's reconciliation fails it when the venue does not
                # list it, which is the truth.
                logger.info(
                    "paper order %s was never placed; not restored", order.customer_order_id
                )
                continue
            if order.exchange_order_id in self._open:
                continue
            self._restore_open(order)
        for currency, funds in self._funds.items():
            if funds.available < 0:
                logger.warning(
                    "paper balance of %s is negative after restore (%s): starting balances "
                    "changed since these fills?",
                    currency,
                    funds.available,
                )

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

    def _push(self, item: _Delivery | None) -> None:
        self._outbox.append(item)
        if not self._wakeup.is_set():
            self._wakeup.set()

    # ------------------------------------------------------------------ orders

    async def place(self, request: PlaceRequest) -> PlaceResult:
        """Place one order; raises ExchangeRejected with VALR's text when refused."""
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

    async def check_credentials(self) -> ApiKeyInfo:
        return ApiKeyInfo("paper", frozenset({"View access", "Trade"}))

    async def server_time(self) -> datetime:
        return htypes.utcnow()

    def clock_skew(self) -> float:
        """Always 0.0: the paper venue is its own clock (``server_time()`` is local time)."""
        return 0.0

    async def pairs(self) -> Mapping[str, PairInfo]:
        return self._market.pairs()

    # ------------------------------------------------------------------ execution

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

    def _fee_quanta(self, info: PairInfo) -> tuple[Decimal, Decimal]:
        cached = self._quanta.get(info.symbol)
        if cached is None or cached[0] is not info:
            base_q, quote_q = _quanta(info)
            cached = self._quanta[info.symbol] = (info, base_q, quote_q)
        return cached[1], cached[2]

    def _gross_up(self, info: PairInfo, net: Decimal) -> Decimal:
        """The gross base quantity a market BUY fills so that ``net`` is credited after the
        taker fee: VALR's ``baseAmount`` on a market BUY is the amount received after the
        fee (valr-api.md section 4.3), and the VALR client sends the quantity as it."""
        pct = self._taker_pct
        if not pct:
            return net
        base_q = self._fee_quanta(info)[0]
        gross = (net * _HUNDRED / (_HUNDRED - pct)).quantize(base_q, rounding=ROUND_CEILING)
        # The fee rounds up too, which can cost one quantum of the net: add it back.
        while gross - _fee(gross, pct, base_q) < net:
            gross += base_q
        return gross

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

    def _reservation(
        self, info: PairInfo, side: Side, quantity: Decimal, price: Decimal
    ) -> tuple[str, Decimal]:
        """(currency, amount) a resting order holds: the trade plus any maker fee. A rebate
        (negative maker fee) is paid after the fill, so then only the trade is held."""
        currency, cost = self._maker_cost(info, side, quantity, price)
        return currency, max(cost, quantity * price if side is _BUY else quantity)

    def _maker_cost(
        self, info: PairInfo, side: Side, quantity: Decimal, price: Decimal
    ) -> tuple[str, Decimal]:
        """(currency paid, amount paid incl. the maker fee) for a maker fill."""
        base_q, quote_q = self._fee_quanta(info)
        if side is _BUY:
            notional = quantity * price
            return info.quote, notional + _fee(notional, self._maker_pct, quote_q)
        return info.base, quantity + _fee(quantity, self._maker_pct, base_q)

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

    def _cancel(self, order: _Resting, now: datetime) -> None:
        funds = self._funds[order.reserved_currency]
        funds.reserved -= order.reserved_amount
        funds.available += order.reserved_amount
        self._remove_open(order)
        status = order.status(OrderState.CANCELLED, now)
        self._finish(status)
        self._push(lambda ev: ev.on_order_status(status))

    # ------------------------------------------------------------------ bookkeeping

    def _add(self, currency: str, amount: Decimal) -> None:
        funds = self._funds.get(currency)
        if funds is None:
            self._funds[currency] = _Funds(amount)
        else:
            funds.available += amount

    def _add_open(self, order: _Resting) -> None:
        self._open[order.exchange_order_id] = order
        if order.customer_order_id is not None:
            self._open_by_customer[order.customer_order_id] = order
        self._resting.setdefault(order.info.symbol, {})[order.exchange_order_id] = order

    def _remove_open(self, order: _Resting) -> None:
        del self._open[order.exchange_order_id]
        if order.customer_order_id is not None:
            self._open_by_customer.pop(order.customer_order_id, None)
        book = self._resting[order.info.symbol]
        del book[order.exchange_order_id]
        if not book:
            del self._resting[order.info.symbol]

    def _find_open(
        self, exchange_order_id: str | None, customer_order_id: str | None
    ) -> _Resting | None:
        if exchange_order_id is not None:
            return self._open.get(exchange_order_id)
        if customer_order_id is not None:
            return self._open_by_customer.get(customer_order_id)
        return None

    @staticmethod
    def _open_state(order: _Resting) -> OrderState:
        return (
            OrderState.PARTIALLY_FILLED if order.remaining < order.quantity else OrderState.PLACED
        )

    def _finish(self, status: OrderStatus) -> None:
        eid = status.exchange_order_id
        assert eid is not None
        self._finished[eid] = status
        self._finished.move_to_end(eid)
        if status.customer_order_id is not None:
            self._finished_by_customer[status.customer_order_id] = eid
        while len(self._finished) > MAX_FINISHED_ORDERS:
            old_eid, old = self._finished.popitem(last=False)
            cid = old.customer_order_id
            if cid is not None and self._finished_by_customer.get(cid) == old_eid:
                del self._finished_by_customer[cid]

    def _record_fill(self, fill: Fill, status: OrderStatus) -> None:
        self._fills.append(fill)
        self._trade_ids.add(fill.trade_id)
        self._finish(status)
        self._push(lambda ev: ev.on_fill(fill))
        self._push(lambda ev: ev.on_order_status(status))

    def _remember_fill(self, fill: Fill) -> None:
        """Fold a restored fill into its order's status (so lookups survive a restart)."""
        eid = fill.exchange_order_id
        if eid is None:
            return
        prior = self._finished.get(eid)
        executed = fill.quantity + (prior.executed_quantity if prior else ZERO)
        value = fill.quantity * fill.price
        if prior is not None and prior.average_price is not None:
            value += prior.executed_quantity * prior.average_price
        self._finish(
            OrderStatus(
                pair=fill.pair,
                state=_FILLED,
                exchange_order_id=eid,
                customer_order_id=fill.customer_order_id,
                original_quantity=executed,
                remaining_quantity=ZERO,
                executed_quantity=executed,
                average_price=value / executed,
                updated_at=fill.traded_at,
            )
        )

    def _restore_pair(self, symbol: str) -> PairInfo | None:
        """The pair's info, or a provisional one read from the symbol.

        The core restores before the venue's pair list is loaded, so a pair beyond the
        defaults is not known yet; its base and quote are still plain in the symbol (VALR
        concatenates them), and that is all a restored fill needs. Restored orders of such a
        pair keep the provisional info: fees in base decimals 8 and quote cents.
        """
        info = self._market.pair(symbol)
        if info is not None:
            return info
        for quote in _QUOTE_CURRENCIES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                logger.info(
                    "paper restore: %s not loaded yet; read as %s/%s",
                    symbol,
                    symbol[: -len(quote)],
                    quote,
                )
                return PairInfo(
                    symbol=symbol,
                    base=symbol[: -len(quote)],
                    quote=quote,
                    min_base=ZERO,
                    max_base=Decimal("Infinity"),
                    min_quote=ZERO,
                    max_quote=Decimal("Infinity"),
                    tick_size=Decimal(1),
                    base_decimals=8,
                )
        return None

    def _restore_open(self, order: OpenOrder) -> None:
        info = self._restore_pair(order.pair)
        try:
            side = Side(order.side)
            is_limit = OrderType(order.type) is _LIMIT
        except ValueError:
            is_limit = False
        reason = ""
        if info is None:
            reason = UNSUPPORTED_PAIR
        elif not is_limit or order.price is None or order.remaining_quantity <= 0:
            reason = INVALID_ORDER.strip()
        else:
            currency, reserve = self._reservation(info, side, order.remaining_quantity, order.price)
            funds = self._funds.get(currency)
            if funds is None or funds.available < reserve:
                reason = INSUFFICIENT_BALANCE
            else:
                funds.available -= reserve
                funds.reserved += reserve
                self._add_open(
                    _Resting(
                        exchange_order_id=order.exchange_order_id,
                        customer_order_id=order.customer_order_id,
                        info=info,
                        side=side,
                        price=order.price,
                        quantity=order.original_quantity,
                        remaining=order.remaining_quantity,
                        created_at=order.created_at or htypes.utcnow(),
                        reserved_currency=currency,
                        reserved_amount=reserve,
                    )
                )
                return
        logger.warning(
            "paper order %s (%s) cannot rest again after restart: %s",
            order.exchange_order_id,
            order.pair,
            reason,
        )
        status = OrderStatus(
            pair=order.pair,
            state=OrderState.CANCELLED,
            exchange_order_id=order.exchange_order_id,
            customer_order_id=order.customer_order_id,
            original_quantity=order.original_quantity,
            remaining_quantity=order.remaining_quantity,
            executed_quantity=order.original_quantity - order.remaining_quantity,
            failed_reason=reason,
            updated_at=htypes.utcnow(),
        )
        self._finish(status)
        self._push(lambda ev: ev.on_order_status(status))

    def _open_snapshot(self) -> list[OpenOrder]:
        return [order.open_order() for order in self._open.values()]

    def _push_balances(self, currencies: Iterable[str]) -> None:
        funds = self._funds
        rows = [Balance(c, funds[c].available, funds[c].reserved) for c in currencies]
        self._push(lambda ev: ev.on_balances(rows, snapshot=False))

    def _push_book_change(self, currencies: Iterable[str]) -> None:
        snapshot = self._open_snapshot()
        self._push(lambda ev: ev.on_open_orders(snapshot))
        self._push_balances(sorted(currencies))


@hookimpl
def heliosd_register_exchanges(
    register: Callable[[str, ExchangeFactory], None], config: Settings
) -> None:
    """Register the paper venue as ``paper``."""
    register("paper", PaperExchange.from_context)
