"""Reserved exposure: what the open and in-flight orders of one mode would add or take away.

Invariant: an order reserves from the moment it is stored (state ``new``) until what it
does is in the ledger. That is its quantity less the fills of it the ledger has applied
while it is open, and once it is terminal, what it executed (its whole quantity when
``filled``; the venue's executed quantity otherwise) less those fills: a market order that
VALR reports filled before its fills (or its balance update) arrive still counts. Fills
applied but not yet in a venue balance are the ledger's ``unsettled`` figures, so from
the order's storing until the venue's balance shows it, its quantity is counted once and
never dropped (it may count twice for a moment: a balance update that comes before its
fill; that errs on the side of caution and ends with the next balance update).

An order first seen already open (loaded at startup) counts its ``filled_quantity`` as
applied (its stored fills were rebuilt into the ledger); one first seen terminal reserves
nothing (an old order: whatever it did is in the stored fills).

Every change of an order row reaches :meth:`Exposure.track` (through
``orders.OrderCounters.track``, which sees every row the router, the venue sink and startup
produce), every fill the ledger applies reaches :meth:`Exposure.fill_applied`, and the totals
per base asset are kept incrementally: the order's previous contribution is taken out and
its new one put in, so a check on the order path is one dict lookup, never a scan of the
order table.

Values: a BUY reserves ``remaining * price * rate(quote)`` in the reference currency, priced
at its LIMIT price, or for a MARKET BUY at the best ask plus :data:`MARKET_BUY_MARGIN` (the
price it may really pay; a market order walks the book). The price is fixed when the order is
first seen and kept while it stays open. A price or rate unknown at that moment counts as 0
here: the limits also value every pending quantity at the order's own current price and take
the larger, so a missing figure never understates the exposure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from heliosd.core.types import ZERO, OrderState, PairInfo, Side
from heliosd.risk.snapshot import Pending

# A MARKET BUY may walk the book: it is reserved at the ask plus this share of it.
MARKET_BUY_MARGIN = Decimal("0.02")
NO_PENDING = Pending()

_OPEN = frozenset(s.value for s in OrderState if s.is_open)
_FILLED = OrderState.FILLED.value
_UNACKED = frozenset((OrderState.NEW.value, OrderState.SENT.value))


@dataclass(frozen=True, slots=True)
class _Reservation:
    asset: str
    buy: bool
    quantity: Decimal
    value: Decimal  # reference currency; 0 for sells
    unit_value: Decimal  # what one unit was valued at (reference currency), kept while open
    in_flight: bool = False  # a SELL the venue has not acknowledged yet (new, sent)


@dataclass(slots=True)
class _Totals:
    buy_quantity: Decimal = ZERO
    buy_value: Decimal = ZERO
    sell_quantity: Decimal = ZERO
    orders: int = 0
    sell_in_flight: Decimal = ZERO

    def add(self, r: _Reservation, sign: int) -> None:
        if r.buy:
            self.buy_quantity += sign * r.quantity
            self.buy_value += sign * r.value
        else:
            self.sell_quantity += sign * r.quantity
            if r.in_flight:
                self.sell_in_flight += sign * r.quantity
        self.orders += sign


class Exposure:
    """Open and in-flight orders of one mode, summed per base asset.

    ``pair_info(symbol)`` resolves a pair's currencies (None: unknown, then the pair symbol
    itself stands for the asset, so the order still counts somewhere and is never dropped);
    ``buy_price(symbol)`` is the best ask now; ``rate(currency)`` the reference value of one
    unit of a quote currency (None: unknown).
    """

    def __init__(
        self,
        pair_info: Callable[[str], PairInfo | None],
        buy_price: Callable[[str], Decimal | None],
        rate: Callable[[str], Decimal | None],
    ) -> None:
        self._pair_info = pair_info
        self._buy_price = buy_price
        self._rate = rate
        self._orders: dict[int, _Reservation] = {}
        self._rows: dict[int, Mapping[str, Any]] = {}  # last row of each tracked order
        self._applied: dict[int, Decimal] = {}  # tracked order -> quantity in the ledger
        self._totals: dict[str, _Totals] = {}
        self._view: Mapping[str, Pending] | None = None
        self.version = 0
        self.buy_value = ZERO  # every asset's pending BUY value, reference currency

    def track(self, row: Mapping[str, Any]) -> None:
        """Take in the current state of one order row (any state; idempotent)."""
        order_id = row["id"]
        is_open = row["state"] in _OPEN
        applied = self._applied.get(order_id)
        if applied is None:
            if not is_open:
                return  # first seen terminal: an old order, nothing outstanding
            # First seen open: born here (nothing filled yet) or loaded at startup (its
            # stored fills are in the ledger already).
            applied = self._applied[order_id] = Decimal(row["filled_quantity"] or 0)
        quantity = Decimal(row["quantity"])
        if is_open:
            outstanding = quantity - applied
        else:
            executed = quantity if row["state"] == _FILLED else Decimal(row["filled_quantity"] or 0)
            outstanding = executed - applied
        self._rows[order_id] = row
        self._set(order_id, row, outstanding)
        if not is_open and outstanding <= ZERO:
            # Done, and all of it is in the ledger: forget the order.
            del self._applied[order_id]
            del self._rows[order_id]

    def fill_applied(self, order_id: int, quantity: Decimal) -> None:
        """The ledger applied a fill of ``order_id`` (a tracked order; others are ignored)."""
        applied = self._applied.get(order_id)
        if applied is None:
            return
        self._applied[order_id] = applied + quantity
        row = self._rows.get(order_id)
        if row is not None:
            self.track(row)

    def _set(self, order_id: int, row: Mapping[str, Any], outstanding: Decimal) -> None:
        old = self._orders.get(order_id)
        new = self._reservation(row, outstanding, old) if outstanding > ZERO else None
        if new == old:
            return
        if old is not None:
            self._apply(old, -1)
            del self._orders[order_id]
        if new is not None:
            self._apply(new, 1)
            self._orders[order_id] = new
        self._view = None
        self.version += 1

    def _reservation(
        self, row: Mapping[str, Any], remaining: Decimal, old: _Reservation | None
    ) -> _Reservation:
        pair = row["pair"]
        info = self._pair_info(pair)
        asset = info.base if info is not None else pair
        if row["side"] != Side.BUY.value:
            return _Reservation(asset, False, remaining, ZERO, ZERO, row["state"] in _UNACKED)
        # Priced once, when first seen; kept while the order stays open.
        unit = old.unit_value if old is not None and old.buy else self._unit_value(row, info)
        return _Reservation(asset, True, remaining, remaining * unit, unit)

    def _unit_value(self, row: Mapping[str, Any], info: PairInfo | None) -> Decimal:
        price: Decimal | None = None
        if row["type"] == "LIMIT" and row["price"]:
            price = Decimal(row["price"])
        else:
            ask = self._buy_price(row["pair"])
            if ask is not None:
                price = ask * (1 + MARKET_BUY_MARGIN)
        if price is None or info is None:
            return ZERO
        rate = self._rate(info.quote)
        return price * rate if rate is not None else ZERO

    def _apply(self, r: _Reservation, sign: int) -> None:
        totals = self._totals.get(r.asset)
        if totals is None:
            totals = self._totals[r.asset] = _Totals()
        totals.add(r, sign)
        if r.buy:
            self.buy_value += sign * r.value
        if not totals.orders:
            del self._totals[r.asset]

    def pending(self) -> Mapping[str, Pending]:
        """Per base asset, the open and in-flight orders' totals (a read-only mapping,
        replaced, never mutated, when an order changes)."""
        view = self._view
        if view is None:
            view = self._view = MappingProxyType({
                asset: Pending(t.buy_quantity, t.buy_value, t.sell_quantity, t.orders,
                               t.sell_in_flight)
                for asset, t in self._totals.items()
            })  # fmt: skip
        return view

    def forget(self) -> None:
        """Drop every reservation (a rebuild from the store follows)."""
        self._orders.clear()
        self._rows.clear()
        self._applied.clear()
        self._totals.clear()
        self.buy_value = ZERO
        self._view = None
        self.version += 1


__all__ = ["MARKET_BUY_MARGIN", "NO_PENDING", "Exposure"]
