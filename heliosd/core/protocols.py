"""The object protocols plugins implement, and the contexts the core hands them.

pluggy cannot await, so hooks *register objects*; the core drives these objects' methods.
Everything a rule or gate needs arrives in its context: plugins never reach into the core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from heliosd.core.types import (
    Action,
    ApiKeyInfo,
    Balance,
    Fill,
    FuturesPosition,
    GateResult,
    Mode,
    OpenOrder,
    OrderIntent,
    OrderStatus,
    PairInfo,
    PlaceRequest,
    PlaceResult,
    Quote,
    Side,
    Verdict,
)

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.risk.snapshot import RiskSnapshot


# --------------------------------------------------------------------------- exchanges


class ExchangeEvents(Protocol):
    """Where an exchange client delivers what its streams say. One sink per client.

    Every method may be called concurrently with orders being placed; the core makes each
    idempotent (a fill is keyed by its venue trade id).
    """

    async def on_fill(self, fill: Fill) -> None: ...

    async def on_order_status(self, status: OrderStatus) -> None: ...

    async def on_open_orders(self, orders: Sequence[OpenOrder]) -> None:
        """A full snapshot of the venue's open orders (after connect and on every change)."""
        ...

    async def on_balances(self, balances: Sequence[Balance], *, snapshot: bool) -> None:
        """Balance rows; ``snapshot`` says the rows are the whole account, not a delta."""
        ...

    async def on_quote(self, quote: Quote) -> None: ...

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        """A stream ("account", "trade") went up or down; ``detail`` says why."""
        ...

    def fill_watermark(self) -> datetime | None:
        """The newest fill time already durable for this client's mode (for reconciliation)."""
        ...


@runtime_checkable
class ExchangeClient(Protocol):
    """A venue (or the paper venue). Every method raises only ``heliosd.core.errors`` types.

    Optional members (not part of the structural check; look them up with ``getattr``):

    * ``honours_permits: bool`` -- True when ``place`` honours ``PlaceRequest.permit`` as
      :class:`heliosd.core.types.PlaceRequest` describes (check before every send, revocable
      waits, PermitRevoked when revoked).
    * ``async def transaction_history(since: datetime | None = None) -> list[Flow]`` --
      the account's external flows (deposits, withdrawals, transfers in and out) since
      ``since`` (inclusive; the whole history when None), oldest first, amounts signed
      positive into the account (:class:`heliosd.core.types.Flow`). Never trades or fees. A venue
      without external money (paper) returns ``[]``.
    * ``cancel_on_disconnect_armed: bool`` -- the venue confirmed it will cancel the
      account's open orders if the client's connection drops (VALR's dead-man's switch).
    """

    name: str

    async def start(self, events: ExchangeEvents) -> None:
        """Open streams and deliver to ``events``; return once started (not connected)."""
        ...

    async def close(self) -> None: ...

    async def pairs(self) -> Mapping[str, PairInfo]: ...

    async def place(self, request: PlaceRequest) -> PlaceResult:
        """Place one order. Raises ExchangeRejected (refused), AuthError, TransientError,
        OutcomeUnknownError (sent, outcome unknown: the caller looks it up by
        customer_order_id, never resends blindly)."""
        ...

    async def cancel(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> None: ...

    async def cancel_all(self) -> int:
        """Cancel every open order of the account; returns how many were cancelled."""
        ...

    async def open_orders(self) -> list[OpenOrder]: ...

    async def balances(self) -> list[Balance]: ...

    async def positions(self) -> list[FuturesPosition]: ...

    async def order_status(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> OrderStatus | None:
        """None when the venue does not know the order."""
        ...

    async def trade_history(self, *, since: datetime | None = None) -> list[Fill]:
        """The account's fills since ``since`` (inclusive), oldest first."""
        ...

    async def check_credentials(self) -> ApiKeyInfo:
        """Raises AuthError when the credentials are missing or refused."""
        ...

    async def server_time(self) -> datetime:
        """The venue's clock now (UTC, aware). A client that tracks its offset from the venue
        measures it afresh here."""
        ...

    def clock_skew(self) -> float:
        """Seconds the venue's clock is ahead of ours (venue time minus local time; negative
        when ours runs ahead), as last measured, e.g. by ``server_time()``.

        ``inf`` while unknown (nothing measured yet), never a guess: the clock gate then
        compares the two clocks itself. Synchronous and cheap, no I/O. A venue that is its own
        clock (the paper venue) returns ``0.0``. The pre-LIVE clock gate compares its size
        with ``valr.max_clock_skew_s``.
        """
        ...


class MarketView(Protocol):
    """Prices and pair limits as the feed last saw them.

    ``version`` increases on every change, so views derived from prices (equity, exposure)
    can be cached and recomputed only when it moves.
    """

    version: int

    def pair(self, symbol: str) -> PairInfo | None: ...

    def pairs(self) -> Mapping[str, PairInfo]: ...

    def quote(self, pair: str) -> Quote | None: ...

    def price_for(self, pair: str, side: Side) -> Decimal | None:
        """The price an order would trade at: best ask for a BUY, best bid for a SELL."""
        ...

    def mark(self, pair: str) -> Decimal | None:
        """Mid (or last) price used for valuation."""
        ...


@dataclass(frozen=True, slots=True)
class ExchangeContext:
    """What an exchange factory gets to build its client."""

    settings: Settings
    mode: Mode
    market: MarketView


ExchangeFactory = Callable[[ExchangeContext], ExchangeClient]


# --------------------------------------------------------------------------- ledger views


class LedgerView(Protocol):
    """Read-only view of one mode's ledger, valued in the reference currency at mark."""

    def position(self, pair: str) -> Decimal:
        """Signed base quantity held for ``pair`` (spot: the base currency balance)."""
        ...

    def positions(self) -> Mapping[str, Decimal]: ...

    def equity(self) -> Decimal: ...

    def gross_exposure(self) -> Decimal:
        """Sum over pairs of |position| x mark, in the reference currency."""
        ...

    def balances(self) -> Mapping[str, Balance]: ...


# --------------------------------------------------------------------------- risk rules


@dataclass(frozen=True, slots=True)
class BreakerState:
    name: str
    tripped: bool
    reason: str = ""
    until: datetime | None = None


@dataclass(slots=True)
class RiskContext:
    """Everything a risk rule may look at. Built once per order; rules must not do I/O."""

    mode: Mode
    settings: Settings
    pair: PairInfo | None
    ledger: LedgerView
    market: MarketView
    breakers: Mapping[str, BreakerState]
    now: datetime
    order_stats: OrderStats
    # Scratch space for work several rules share within this one order (the built-in limits
    # keep the order's valuation here, so it is computed once, not once per rule). The router
    # gives every order a fresh dict; None (a context built elsewhere) means "no sharing:
    # compute it". Keys are owned by the module that writes them; values are only valid for
    # this order, so a rule that keeps one must also check it was computed for its intent.
    memo: dict[str, Any] | None = None
    # The account's risk state (heliosd.risk.account.AccountRisk.snapshot): holdings of every
    # asset, the open and in-flight orders' reserved exposure, equity. The router always
    # gives one; None (a context built elsewhere) means only the ledger is known: no
    # pending orders are counted.
    account: RiskSnapshot | None = None


class OrderStats(Protocol):
    """Counters drop-in rules commonly need (rate limits, open-order caps)."""

    def orders_since(self, since: datetime, mode: Mode | None = None) -> int: ...

    def open_orders(self, pair: str | None = None, mode: Mode | None = None) -> int: ...


class RiskRule(Protocol):
    """Pre-trade check. ``check`` returns a Verdict, or an awaitable of one.

    Return the Verdict directly when no I/O is needed (the fast path: no task, no timeout
    machinery). An awaitable is run under the core's timeout. Raising or timing out counts as
    Reject (fail closed).
    """

    name: str

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict | Awaitable[Verdict]: ...


# --------------------------------------------------------------------------- gates


class OrderQuery(Protocol):
    async def open_orders(self, mode: Mode | None = None) -> Sequence[Mapping[str, Any]]:
        """Orders the store holds in an open state (ORDER dicts of the control API)."""
        ...


@dataclass(frozen=True, slots=True)
class GateContext:
    """Everything a pre-LIVE safety gate may look at."""

    settings: Settings
    live: ExchangeClient
    paper: ExchangeClient
    paper_ledger: LedgerView
    live_ledger: LedgerView
    market: MarketView
    orders: OrderQuery
    pairs: Mapping[str, PairInfo]
    engine_running: bool
    extra: Mapping[str, Any] = field(default_factory=dict)


class Gate(Protocol):
    name: str

    async def check(self, ctx: GateContext) -> GateResult: ...


# ------------------------------------------- monitors, strategies, notifiers


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """A mode's ledger figures at one instant (reference currency)."""

    mode: Mode
    at: datetime
    equity: Decimal
    peak_equity: Decimal
    day_start_equity: Decimal
    day_start: datetime
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    daily_pnl: Decimal
    drawdown_pct: Decimal
    daily_loss_pct: Decimal
    positions: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class MonitorContext:
    settings: Settings
    breakers: Mapping[str, BreakerState]


class Monitor(Protocol):
    name: str

    def on_update(self, snapshot: LedgerSnapshot, ctx: MonitorContext) -> Action | None: ...


@dataclass(frozen=True, slots=True)
class StrategyContext:
    settings: Settings
    mode: Mode
    ledger: LedgerView
    market: MarketView
    pairs: Mapping[str, PairInfo]
    now: datetime


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    at: datetime
    quotes: Mapping[str, Quote]


class Strategy(Protocol):
    name: str

    def on_market(
        self, snapshot: MarketSnapshot, ctx: StrategyContext
    ) -> Sequence[OrderIntent] | Awaitable[Sequence[OrderIntent]]: ...


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling an operator. ``kind`` names it (see heliosd.notify.EVENT_KINDS)."""

    kind: str
    title: str
    body: str
    at: datetime
    urgent: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    name: str

    async def send(self, event: Event) -> None:
        """Deliver one event; raise on failure (the outbox retries)."""
        ...
