"""The shapes of the account risk model that every reader sees. Frozen; cheap to share.

Owned by :mod:`heliosd.risk.account`, which builds one :class:`RiskSnapshot` per change (a
fill, a balance, an order's reservation, a price) and hands the same object to every reader
until the next change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from heliosd.core.types import ZERO, Mode


@dataclass(frozen=True, slots=True)
class Price:
    """What one unit of an asset is worth in the reference currency, and how sure we are.

    ``value`` is None when no price exists at all. ``age_s`` is the seconds since the quote
    behind it was received (0 for the reference currency itself; None when unknown, which
    counts as stale). ``source`` is ``reference``, ``stream``, ``rest``, ``cross:<PAIR>``
    (through another currency, e.g. ``cross:USDCZAR``), ``last_fill`` or ``none``.
    """

    value: Decimal | None
    age_s: float | None
    source: str

    def fresh(self, max_age_s: float) -> bool:
        return self.value is not None and self.age_s is not None and self.age_s <= max_age_s


NO_PRICE = Price(None, None, "none")
REFERENCE = Price(Decimal(1), 0.0, "reference")


@dataclass(frozen=True, slots=True)
class Holding:
    """One asset the account holds, as the venue reports it, valued.

    ``external`` is true for an asset no configured pair trades (a hand trade in BTCUSDC, fee
    dust): it is valued when a price exists and counted in equity, never hidden.
    ``dust`` is true when its value is below ``risk.dust_value`` (it never blocks anything).
    ``unsettled`` is what fills applied since the venue last reported this asset changed it
    by (signed; LIVE only): the venue's balance update may come after the fill, and until
    then ``total`` does not show it. ``value`` is of ``total`` alone.
    """

    asset: str
    total: Decimal
    available: Decimal
    price: Price
    value: Decimal
    dust: bool
    fresh: bool
    external: bool
    unsettled: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Pending:
    """The open and in-flight orders on one base asset: what they would add or take away.

    ``buy_value`` values open BUYs at their limit price and market BUYs at a conservative
    price (the ask plus a margin), in the reference currency.
    """

    buy_quantity: Decimal = ZERO
    buy_value: Decimal = ZERO
    sell_quantity: Decimal = ZERO
    orders: int = 0
    # The part of ``sell_quantity`` in SELLs not yet acknowledged by the venue (stored or
    # sent): the venue's ``reserved`` cannot show them yet.
    sell_in_flight: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """An account's risk state at ``at``. Every limit, monitor, breaker and view reads this.

    ``equity`` is every holding valued (available + reserved). ``stale`` lists the assets
    above dust that cannot be valued fresh: while it is not empty the account is REDUCING
    (``stale_prices``). ``peak`` and ``day_start_equity`` are flow-adjusted baselines
    (a deposit or withdrawal moves them by its value), so ``daily_loss_pct`` and
    ``drawdown_pct`` measure trading only. ``pending_buy_value`` is the sum of every asset's
    ``Pending.buy_value``; ``realized_pnl``, ``unrealized_pnl`` (reconciled to the holdings:
    a holding of zero has none) and ``fees`` are the ledger's books.
    """

    mode: Mode
    at: datetime
    ready: bool
    reference: str
    equity: Decimal
    holdings: Mapping[str, Holding]
    pending: Mapping[str, Pending]
    gross_exposure: Decimal
    stale: tuple[str, ...]
    peak: Decimal
    day_start_equity: Decimal
    flows_today: Decimal
    daily_pnl: Decimal
    daily_loss_pct: Decimal
    drawdown_pct: Decimal
    pending_buy_value: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    fees: Decimal = ZERO


class AssetPricer(Protocol):
    """What one unit of an asset is worth now (:mod:`heliosd.risk.prices` implements it).

    Synchronous and without I/O: it answers from what it has and may schedule a background
    refresh (a REST market summary) for an asset it cannot value fresh. ``version`` changes
    whenever any answer may have changed, so callers can cache valuations on it.
    """

    @property
    def version(self) -> int:
        """Read-only to callers: an attribute or a property both satisfy it."""
        ...

    def price(self, asset: str, now: datetime | None = None) -> Price: ...

    def value(self, asset: str, now: datetime) -> Decimal | None:
        """The value from a memo of fresh answers, or None: ask :meth:`price`. A value here
        is the one :meth:`price` would give."""
        ...


__all__ = [
    "NO_PRICE",
    "REFERENCE",
    "AssetPricer",
    "Holding",
    "Pending",
    "Price",
    "RiskSnapshot",
]
