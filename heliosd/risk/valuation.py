"""What the ledger's holdings are worth in the reference currency: equity, gross exposure,
unrealized P&L.

Valuation: currency ``C`` is worth ``mark(C + reference)`` (``BTC`` via ``BTCZAR``); without a
mark, the last fill price of that pair; otherwise 0 (nothing we can value honestly).

Cost: ``position()``, ``equity()`` and ``gross_exposure()`` run on every order. Valuations are
cached and recomputed only when a fill, a balance or the market's ``version`` changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.protocols import MarketView
from heliosd.core.types import ZERO, utcnow
from heliosd.risk.cost_basis import _Book
from heliosd.risk.snapshot import AssetPricer

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class _Valuation:
    equity: Decimal
    gross: Decimal
    unrealized: Decimal


class LedgerValuation:
    """Valuation of :class:`heliosd.risk.ledger.Ledger` (one of its base classes)."""

    # Set by Ledger.__init__ and Ledger._changed (heliosd.risk.ledger).
    reference_currency: str
    _market: MarketView
    _pricer: AssetPricer | None
    _books: dict[str, _Book]
    _realized: Decimal
    _fees: Decimal
    _cache_key: int | None
    _cache: _Valuation | None

    if TYPE_CHECKING:  # defined by Ledger and CostBasisViews

        @property
        def ready(self) -> bool: ...
        def totals(self) -> tuple[tuple[str, Decimal], ...]: ...
        def reconciled_unrealized(self) -> Decimal: ...

    def equity(self) -> Decimal:
        """Balances (available + reserved) valued at mark; 0 while balances are unknown."""
        return self._valuation().equity

    def gross_exposure(self) -> Decimal:
        """Sum of |holding| x value of every currency but the reference currency.

        Counted per currency, not per pair, so a coin traded in two pairs counts once.
        """
        return self._valuation().gross

    def unrealized_pnl(self) -> Decimal:
        """Sum over books of ``quantity * mark - cost``, in the reference currency."""
        return self._valuation().unrealized

    def realized_pnl(self) -> Decimal:
        return self._realized

    def fees_paid(self) -> Decimal:
        return self._fees

    def _price(self, pair: str, book: _Book | None) -> Decimal | None:
        mark = self._market.mark(pair)
        if mark is None and book is not None:
            return book.last_price
        return mark

    def _rate(self, currency: str, now: datetime | None = None) -> Decimal:
        """Value of one unit of ``currency`` in the reference currency (0 when unknown)."""
        if currency == self.reference_currency:
            return ONE
        pricer = self._pricer
        if pricer is not None:
            # The pricer's memo first: after every tick the monitor pass values each holding
            # here, and building a Price per asset was a third of the pass
            # (bench/monitor_pass.py). Same value as price() gives: the memo holds it.
            now = utcnow() if now is None else now
            value = pricer.value(currency, now)
            if value is not None:
                return value
            value = pricer.price(currency, now).value
            return value if value is not None else ZERO
        symbol = currency + self.reference_currency
        price = self._price(symbol, self._books.get(symbol))
        return price if price is not None else ZERO

    def _valuation(self) -> _Valuation:
        # Valuations move with prices: cache on the pricer's version (or the market's). A
        # source without a version counter cannot tell us when prices move: no caching.
        source: Any = self._pricer if self._pricer is not None else self._market
        key: int | None = getattr(source, "version", None)
        if key is not None and self._cache is not None and self._cache_key == key:
            return self._cache
        equity = gross = ZERO
        if self.ready:
            now = utcnow()
            ref = self.reference_currency
            value = pricer.value if (pricer := self._pricer) is not None else None
            for currency, total in self.totals():
                if currency == ref:
                    equity += total
                    continue
                # The pricer's memo first (what assess() just read after the same tick),
                # else the full search.
                rate = value(currency, now) if value is not None else None
                if rate is None:
                    rate = self._rate(currency, now)
                equity += total * rate
                gross += abs(total) * rate
        unrealized = self.reconciled_unrealized()
        self._cache = _Valuation(equity, gross, unrealized)
        self._cache_key = key
        return self._cache
