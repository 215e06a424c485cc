"""Orders, trades and the ids VALR gives them.

Status strings are VALR's display strings (its order status list); sides are stored lower case, the
way responses carry them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderKind = Literal["limit", "market"]

PLACED = "Placed"
PARTIALLY_FILLED = "Partially Filled"
FILLED = "Filled"
CANCELLED = "Cancelled"
FAILED = "Failed"

OPEN_STATUSES = frozenset({PLACED, PARTIALLY_FILLED})
ZERO = Decimal(0)

# VALR trade sequence ids are int64 above 2**53; starting there makes a client that parses
# them as floats fail loudly in tests instead of silently in production.
FIRST_SEQUENCE_ID = 1368928567986636114


class IdFactory:
    """UUIDv7-shaped ids (time-ordered, like VALR's newer ids) from a seeded RNG."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._sequence = FIRST_SEQUENCE_ID
        self._ms = -1
        self._prefix = ""

    def uuid(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:  # the time prefix changes at most once per millisecond
            hi = f"{ms:012x}"
            self._ms, self._prefix = ms, f"{hi[:8]}-{hi[8:]}-7"
        getrandbits = self._rng.getrandbits
        # 62 random bits under the RFC 4122 variant bits "10" give the last two groups.
        tail = f"{getrandbits(62) | (2 << 62):016x}"
        return f"{self._prefix}{getrandbits(12):03x}-{tail[:4]}-{tail[4:]}"

    def sequence(self) -> int:
        self._sequence += 1
        return self._sequence


@dataclass(slots=True, eq=False)
class Order:
    """One order, live or finished. Amounts are Decimal; times are aware UTC datetimes."""

    order_id: str
    account_id: str
    pair: str
    side: Side
    kind: OrderKind
    price: Decimal  # limit price; 0 for market orders (VALR's originalPrice "0")
    original_quantity: Decimal
    remaining: Decimal
    time_in_force: str
    post_only: bool
    customer_order_id: str | None
    created_at: datetime
    updated_at: datetime
    status: str = PLACED
    failed_reason: str = ""
    executed_quantity: Decimal = ZERO
    executed_quote: Decimal = ZERO
    executed_fee: Decimal = ZERO
    fee_currency: str = ""
    # What is still held in ``reserved`` for this order (released on fill or cancel).
    reserved_currency: str = ""
    reserved_amount: Decimal = ZERO
    allow_margin: bool = False

    @property
    def order_type(self) -> str:
        if self.kind == "market":
            return "market"
        return "post-only limit" if self.post_only else "limit"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def average_price(self) -> Decimal:
        if not self.executed_quantity:
            return ZERO
        return self.executed_quote / self.executed_quantity

    def touch(self, now: datetime | None = None) -> None:
        self.updated_at = now or datetime.now(UTC)


@dataclass(slots=True, eq=False)
class Trade:
    """One fill from one account's point of view (an account trade-history row)."""

    trade_id: str
    account_id: str
    order_id: str
    customer_order_id: str | None
    pair: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    traded_at: datetime
    sequence_id: int
    maker: bool
    # How a maker rebate (a negative fee) is written (FaultConfig.maker_reward_shape).
    reward_shape: str = "reward"


@dataclass(slots=True)
class PublicTrade:
    """A trade on the public tape (NEW_TRADE, ``/v1/public/:pair/trades``)."""

    trade_id: str
    pair: str
    price: Decimal
    quantity: Decimal
    taker_side: Side
    traded_at: datetime
    sequence_id: int


@dataclass(slots=True)
class ReceivedOrder:
    """A place request as the sim saw it, for "placed at most once" assertions."""

    route: str
    body: object
    received_at: datetime
    accepted: bool = False
    order_id: str | None = None
    customer_order_id: str | None = None
    error: dict[str, object] = field(default_factory=dict)
