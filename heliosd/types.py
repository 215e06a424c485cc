"""Frozen value types shared by the core and every plugin.

Money and quantities are always :class:`decimal.Decimal`; times are timezone-aware UTC
``datetime``. These classes cross every boundary (plugins, store, control API), so they are
immutable and cheap (``slots=True``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

ZERO = Decimal(0)


def utcnow() -> datetime:
    """The one clock of the core (tests may monkeypatch ``heliosd.types.utcnow``)."""
    return datetime.now(UTC)


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
    """Lifecycle of an order as heliosd records it (contract: design.md section 11)."""

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
        return quantity.quantize(Decimal(1).scaleb(-self.base_decimals), rounding=ROUND_DOWN)

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
    """An order as sent to an exchange client, after risk rules."""

    customer_order_id: str
    pair: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """A risk rule's answer: Accept, Cap(quantity) or Reject. Stored with the order."""

    rule: str
    action: VerdictAction
    reason: str = ""
    quantity: Decimal | None = None  # the allowed quantity, for CAP
    details: Mapping[str, str] = field(default_factory=dict)

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
