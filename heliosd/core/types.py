"""Frozen value types shared by the core and every plugin.

Money and quantities are always :class:`decimal.Decimal`; times are timezone-aware UTC
``datetime``. These classes cross every boundary (plugins, store, control API), so they are
immutable and cheap (``slots=True``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from heliosd.core import clock

if TYPE_CHECKING:
    from heliosd.trading.permits import Permit

ZERO = Decimal(0)


def utcnow() -> datetime:
    """The one wall clock of the core: :func:`heliosd.core.clock.now` (a test holds and moves
    it with ``clock.use(ManualClock(...))``, never by patching this name)."""
    return clock.now()


class TradingState(enum.StrEnum):
    """What may trade now (persisted with the mode; :mod:`heliosd.risk.state` owns it).

    ACTIVE: the limits apply. REDUCING: only orders that reduce a holding pass (emergency
    stop, daily-loss halt, stale prices, venue read-only, a monitor's or plugin's breaker).
    HALTED: nothing but cancels (an unclean exit until reconciled, an operator's halt).
    """

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Mode(enum.StrEnum):
    PAPER = "PAPER"
    LIVE = "LIVE"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


_BUY = Side.BUY  # a module constant: Side.BUY is an attribute lookup on every call (hot path)


def reduces_position(intent: OrderIntent, position: Decimal) -> bool:
    """True when the order is opposite the position and no larger than it.

    The one definition the router's latch check, the built-in limits and drop-in rules share:
    reducing orders always pass, since refusing them would trap an operator in a position.
    """
    if not position or intent.quantity <= ZERO:
        return False
    opposite = (position > ZERO) != (intent.side is _BUY)
    return opposite and intent.quantity <= abs(position)


class OrderState(enum.StrEnum):
    """Lifecycle of an order as heliosd records it (contract: docs/api.md, "Orders")."""

    NEW = "new"  # stored, not yet sent
    SENT = "sent"  # request sent, outcome not yet known
    PLACED = "placed"  # accepted by the venue, resting
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the venue refused or failed it
    REJECTED = "rejected"  # a risk rule refused it; never sent

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATES

    @property
    def is_terminal(self) -> bool:
        return self not in _OPEN_STATES


_OPEN_STATES = frozenset(
    {OrderState.NEW, OrderState.SENT, OrderState.PLACED, OrderState.PARTIALLY_FILLED}
)


# ``1E-n`` for the base decimals pairs use (VALR's go up to 8; 18 covers any venue's).
_QUANTA: Mapping[int, Decimal] = {n: Decimal(1).scaleb(-n) for n in range(19)}


@dataclass(frozen=True, slots=True)
class PairInfo:
    """A tradable pair and its venue limits (VALR ``/v1/public/pairs``)."""

    symbol: str
    base: str
    quote: str
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    max_quote: Decimal
    tick_size: Decimal
    base_decimals: int
    active: bool = True

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Truncate to the pair's base decimals (VALR truncates too; never round up)."""
        decimals = self.base_decimals
        # The quantum is looked up, not built: ``Decimal(1).scaleb(-n)`` is ~0.2 us, half the
        # cost of a cap on the order path. Same value either way, so the same result.
        quantum = _QUANTA.get(decimals) or Decimal(1).scaleb(-decimals)
        return quantity.quantize(quantum, rounding=ROUND_DOWN)

    def round_price(self, price: Decimal) -> Decimal:
        """Round a price to a multiple of the tick size."""
        ticks = (price / self.tick_size).to_integral_value(rounding=ROUND_HALF_EVEN)
        # quantize, not normalize: normalize turns 1000000 into 1E+6.
        return (ticks * self.tick_size).quantize(self.tick_size) if ticks else self.tick_size


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy or an operator wants; the router turns it into an order."""

    pair: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    reason: str = ""
    source: str = "manual"  # "manual", "engine:<strategy>", "smoke", "emergency"


@dataclass(frozen=True, slots=True)
class PlaceRequest:
    """An order as sent to an exchange client, after risk rules.

    ``permit`` is the right to send it (:class:`heliosd.trading.permits.Permit`): the mode and epoch
    the order was checked under. A client calls ``permit.begin_send()`` immediately before
    every request that could execute the order (the first send and every resend after a 429
    or a backoff) and ``permit.end_send()`` once that request has answered; every wait it
    makes before a send (Retry-After, stream ready, pair refresh) goes through
    ``permit.sleep`` / ``permit.guard`` so a revocation ends it at once. A revoked permit
    raises :class:`heliosd.core.errors.PermitRevoked`: the order was never sent. None only for
    requests built outside the router (tests, tools), which no stop can revoke.
    """

    customer_order_id: str
    pair: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    permit: Permit | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """The immediate outcome of a placement.

    ``state`` is SENT when the venue only acknowledged (outcome follows on the stream),
    PLACED when it rests, FILLED when it filled at once, FAILED when refused (``reason`` holds
    the venue's message verbatim).
    """

    state: OrderState
    exchange_order_id: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderStatus:
    """The venue's view of one order (status lookups and stream updates)."""

    pair: str
    state: OrderState
    exchange_order_id: str | None = None
    customer_order_id: str | None = None
    original_quantity: Decimal = ZERO
    remaining_quantity: Decimal = ZERO
    executed_quantity: Decimal = ZERO
    average_price: Decimal | None = None
    failed_reason: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenOrder:
    exchange_order_id: str
    pair: str
    side: Side
    type: OrderType
    price: Decimal | None
    original_quantity: Decimal
    remaining_quantity: Decimal
    customer_order_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``trade_id`` is the venue's id: a fill is applied at most once."""

    trade_id: str
    pair: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    traded_at: datetime
    exchange_order_id: str | None = None
    customer_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    available: Decimal
    reserved: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved


@dataclass(frozen=True, slots=True)
class FuturesPosition:
    pair: str
    side: Side
    quantity: Decimal
    average_entry_price: Decimal
    unrealised_pnl: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    label: str
    permissions: frozenset[str]
    is_subaccount: bool = False


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and last trade for a pair, from the market feed."""

    pair: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    at: datetime

    @property
    def mid(self) -> Decimal | None:
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.last


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    ok: bool
    reason: str = ""


class VerdictAction(enum.StrEnum):
    ACCEPT = "accept"
    CAP = "cap"
    REJECT = "reject"


# The default ``details`` of ``Verdict(...)``: a marker replaced by a fresh ``{}`` per verdict.
_NO_DETAILS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Verdict:
    """A risk rule's answer: Accept, Cap(quantity) or Reject. Stored with the order.

    A frozen slots dataclass like the other value types (the same fields, equality, repr,
    ``dataclasses.replace``; assigning a field raises ``FrozenInstanceError``), with its own
    ``__init__``: the generated one sets each field through ``object.__setattr__`` (~0.7 us
    per verdict, a tenth of a capped order's whole risk path); this one calls the fields'
    slot descriptors directly (~0.3 us). Keyword and positional construction are unchanged.
    """

    rule: str
    action: VerdictAction
    reason: str = ""
    quantity: Decimal | None = None  # the allowed quantity, for CAP
    details: Mapping[str, str] = field(default_factory=dict)

    def __init__(
        self,
        rule: str,
        action: VerdictAction,
        reason: str = "",
        quantity: Decimal | None = None,
        details: Mapping[str, str] = _NO_DETAILS,
    ) -> None:
        _set_rule(self, rule)
        _set_action(self, action)
        _set_reason(self, reason)
        _set_quantity(self, quantity)
        _set_details(self, {} if details is _NO_DETAILS else details)

    @classmethod
    def accept(cls, rule: str, reason: str = "") -> Verdict:
        return cls(rule, VerdictAction.ACCEPT, reason)

    @classmethod
    def cap(
        cls, rule: str, quantity: Decimal, reason: str, details: Mapping[str, str] | None = None
    ) -> Verdict:
        return cls(rule, VerdictAction.CAP, reason, quantity, details or {})

    @classmethod
    def reject(cls, rule: str, reason: str, details: Mapping[str, str] | None = None) -> Verdict:
        return cls(rule, VerdictAction.REJECT, reason, None, details or {})

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "action": str(self.action), "reason": self.reason}
        if self.quantity is not None:
            out["quantity"] = str(self.quantity)
        if self.details:
            out["details"] = dict(self.details)
        return out


# The slot descriptors of Verdict's fields (a frozen class's fields can only be set through
# them or object.__setattr__); taken once the dataclass has made the slots class.
_SlotSet = Callable[[Verdict, Any], None]
_set_rule: _SlotSet = Verdict.__dict__["rule"].__set__
_set_action: _SlotSet = Verdict.__dict__["action"].__set__
_set_reason: _SlotSet = Verdict.__dict__["reason"].__set__
_set_quantity: _SlotSet = Verdict.__dict__["quantity"].__set__
_set_details: _SlotSet = Verdict.__dict__["details"].__set__


class ActionKind(enum.StrEnum):
    HALT = "halt"  # daily-loss style: stop engine, cancel orders, refuse risk-increasing orders
    EMERGENCY_STOP = "emergency_stop"  # drawdown style: full emergency stop, latched


@dataclass(frozen=True, slots=True)
class Action:
    """What a monitor asks the core to do."""

    kind: ActionKind
    breaker: str
    reason: str
    until: datetime | None = None  # HALT: cleared automatically at this time (next day)


@dataclass(frozen=True, slots=True)
class Flow:
    """Money that entered or left an account without a trade: a deposit, a withdrawal, a
    transfer between accounts. Never profit or loss: the risk model moves its baselines
    (start-of-day equity, peak) by the flow's value instead.

    ``flow_id`` is the venue's transaction id, or ``inferred:<currency>:<iso time>:<8 hex>`` for a
    balance change that no fill explains. ``amount`` is signed: positive into the account.
    ``kind`` is ``deposit``, ``withdrawal``, ``transfer_in``, ``transfer_out`` or
    ``inferred``.
    """

    flow_id: str
    currency: str
    amount: Decimal
    kind: str
    at: datetime
