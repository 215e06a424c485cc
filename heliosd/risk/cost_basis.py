"""Cost basis: the per-pair books, driven by fills only, and their views.

**Cost basis.** Fills alone drive the per-pair book: quantity, average cost, realized P&L and
fees. We use the **average-cost method** because VALR reports average entry prices and
operators reason in them. Realized P&L on a reducing trade is ``(price - avg_cost) * qty``
for a long (mirror for a short).

**Cost basis when holdings change outside heliosd.** The books are driven by fills only and
are never rewritten; what the views show is reconciled to the venue's holding of the base
currency when read (:meth:`Ledger.book_rows`):

* holding below the books' quantity (coins sold or withdrawn outside heliosd): only the held
  part counts, at the books' average cost, with no realized P&L for the part that is gone;
  a holding of zero has no unrealized P&L;
* holding above the books' quantity (a deposit, coins held before heliosd): the excess is
  inventory without a cost basis: valued at mark in equity, no unrealized P&L.

Being a function of (fills, holding), the rule gives the same figures whatever order the
venue's fills and balance updates arrive in, and the same figures after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.types import ZERO, PairInfo
from heliosd.risk.ledger_common import decimal_text

_COST_PLACES = Decimal("1e-12")


@dataclass(slots=True)
class _Book:
    """Cost basis of one pair, driven by fills only.

    ``cost`` is the signed total cost of ``quantity`` in the quote currency (``quantity *
    average_cost``). Keeping the total rather than the average keeps the arithmetic exact:
    only the share of cost removed by a partial close is a division, and it is rounded once
    and booked on both sides (realized P&L and remaining cost).
    """

    info: PairInfo
    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO  # reference currency
    fees: Decimal = ZERO  # reference currency
    last_price: Decimal | None = None

    @property
    def average_cost(self) -> Decimal:
        return self.cost / self.quantity if self.quantity else ZERO

    def trade(self, delta: Decimal, price: Decimal) -> Decimal:
        """Apply a signed base quantity at ``price``; return realized P&L in the quote currency."""
        q = self.quantity
        if not delta:
            return ZERO
        if not q or (q > 0) == (delta > 0):
            self.quantity = q + delta
            self.cost += delta * price
            return ZERO
        closed = min(abs(delta), abs(q))
        # The cost share of a partial close is the only division: round it to a fixed
        # 1e-12 so every later sum stays exact in 28 digits (the books always balance).
        removed = (
            self.cost
            if closed == abs(q)
            else (self.cost * closed / abs(q)).quantize(_COST_PLACES, rounding=ROUND_HALF_EVEN)
        )
        realized = (closed * price if q > 0 else -closed * price) - removed
        self.cost -= removed
        self.quantity = q + delta
        if abs(delta) > closed:  # flipped through zero: the remainder opens at this price
            self.cost = self.quantity * price
        elif not self.quantity:
            self.cost = ZERO
        return realized


class CostBasisViews:
    """The books' views of :class:`heliosd.risk.ledger.Ledger` (one of its base classes)."""

    # Set by Ledger.__init__ (heliosd.risk.ledger).
    reference_currency: str
    traded: frozenset[str]
    _books: dict[str, _Book]

    if TYPE_CHECKING:  # defined by Ledger, LedgerPairs and LedgerValuation
        from datetime import datetime

        @property
        def ready(self) -> bool: ...
        def position(self, pair: str) -> Decimal: ...
        def pair_info(self, pair: object) -> PairInfo | None: ...
        def _total(self, currency: str) -> Decimal: ...
        def _price(self, pair: str, book: _Book | None) -> Decimal | None: ...
        def _rate(self, currency: str, now: datetime | None = None) -> Decimal: ...

    def book_rows(self) -> list[dict[str, Any]]:
        """``GET /api/positions`` rows: every traded pair held and every pair with fills,
        reconciled to the venue's holding (see "Cost basis when holdings change outside
        heliosd"). Decimal values as strings. A pair heliosd does not trade (not in
        ``valr.pairs``: a hand trade on the venue's website) is ``"external": true``.
        """
        held_left: dict[str, Decimal] = {}
        rows = []
        for symbol in sorted(self.traded | set(self._books)):
            info = self.pair_info(symbol)
            book = self._books.get(symbol)
            qty = self.position(symbol)
            if info is None or (not qty and book is None):
                continue
            mark = self._price(symbol, book)
            rate = self._rate(info.quote)
            unrealized = ZERO
            if book is not None and book.quantity and mark is not None:
                counted, cost = self._reconciled(book, held_left)
                unrealized = (counted * mark - cost) * rate
            rows.append(
                {
                    "pair": symbol,
                    "asset": info.base,
                    "quantity": decimal_text(qty),
                    "average_cost": decimal_text(book.average_cost if book else ZERO),
                    "mark": None if mark is None else decimal_text(mark),
                    "notional": decimal_text(abs(qty) * (mark or ZERO) * rate),
                    "unrealized_pnl": decimal_text(unrealized),
                    "realized_pnl": decimal_text(book.realized if book else ZERO),
                    "fees": decimal_text(book.fees if book else ZERO),
                    "currency": self.reference_currency,
                    "external": symbol not in self.traded,
                }
            )
        return rows

    def positions_json(self) -> list[dict[str, Any]]:
        """The rows of :meth:`book_rows` (kept under its old name for the gates' callers)."""
        return self.book_rows()

    def _reconciled(self, book: _Book, held_left: dict[str, Decimal]) -> tuple[Decimal, Decimal]:
        """(quantity, cost) of ``book`` that the venue's holding still covers.

        A long book counts ``min(book, what the holding has left for it)`` at its average
        cost; books of one base share the holding in pair order. Short books (only while
        balances are unknown, before the venue's first snapshot) count in full.
        """
        q = book.quantity
        if q < ZERO or not self.ready:
            return q, book.cost
        base = book.info.base
        if base not in held_left:
            held_left[base] = max(ZERO, self._total(base))
        covered = min(q, held_left[base])
        held_left[base] -= covered
        if covered == q:
            return q, book.cost
        return covered, book.cost * covered / q

    def reconciled_unrealized(self) -> Decimal:
        """Sum over books of the reconciled ``quantity * mark - cost`` (reference currency)."""
        held_left: dict[str, Decimal] = {}
        total = ZERO
        for symbol in sorted(self._books):
            book = self._books[symbol]
            if not book.quantity:
                continue
            mark = self._price(symbol, book)
            if mark is None:
                continue
            counted, cost = self._reconciled(book, held_left)
            total += (counted * mark - cost) * self._rate(book.info.quote)
        return total
