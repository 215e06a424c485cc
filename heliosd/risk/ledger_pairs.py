"""The ledger's pairs: which currencies a pair symbol names, and which assets are external.

**Any pair, any asset.** A fill in a pair no configured pair names (a hand trade in BTCUSDC
on VALR's website) is booked like any other: the pair's currencies come from the venue's
pair list (every pair is loaded into the market, only the configured ones are streamed), or,
while that list is not there yet, are inferred from the symbol's ending (a known quote
currency: the reference currency, any pair's quote, then ZAR, USDC, USDT, BTC, ETH, EUR,
USD). A fill that still cannot be read never raises out of :meth:`Ledger.rebuild`: it is
recorded in :attr:`Ledger.errors` (the service reports it and trips ``ledger_error``) and
the rest are applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heliosd.core.protocols import MarketView
from heliosd.core.types import ZERO, PairInfo
from heliosd.risk.ledger_common import _MONEY_PLACES

if TYPE_CHECKING:
    from decimal import Decimal

    from heliosd.risk.cost_basis import _Book

# Quote currencies a pair symbol may end in, besides the reference currency and the quotes
# of the venue's pairs (used only while the venue's pair list is not there).
_COMMON_QUOTES = ("ZAR", "USDC", "USDT", "BTC", "ETH", "EUR", "USD")


class LedgerPairs:
    """Pair lookups of :class:`heliosd.risk.ledger.Ledger` (one of its base classes)."""

    # Set by Ledger.__init__ (heliosd.risk.ledger).
    reference_currency: str
    traded: frozenset[str]
    _pairs: dict[str, PairInfo]
    _market: MarketView
    _books: dict[str, _Book]

    def pair_info(self, pair: object) -> PairInfo | None:
        """The pair's currencies and limits: the venue's (through the market), else inferred
        from the symbol (see "Any pair, any asset"); None when neither can tell."""
        if not isinstance(pair, str):  # a malformed fill: the store refuses it, we say None
            return None
        return self._pair_info(pair) or self._inferred_pair(pair)

    def last_price(self, pair: str) -> Decimal | None:
        """The price of the last fill in ``pair`` (None: none)."""
        book = self._books.get(pair)
        return None if book is None else book.last_price

    def _is_traded_base(self, asset: str) -> bool:
        if asset == self.reference_currency:
            return True
        for symbol in self.traded:
            info = self.pair_info(symbol)
            if info is not None and asset in (info.base, info.quote):
                return True
        return False

    def is_external(self, asset: str) -> bool:
        """True for an asset no traded pair has (neither base nor quote)."""
        return not self._is_traded_base(asset)

    # ------------------------------------------------------------------ internals

    def _pair_info(self, pair: str) -> PairInfo | None:
        info = self._pairs.get(pair)
        if info is None:
            info = self._market.pair(pair)
            if info is not None:
                self._pairs[pair] = info
        return info

    def _inferred_pair(self, symbol: str) -> PairInfo | None:
        """A stand-in for a pair the venue's list has not delivered (yet).

        Stored fills can name a pair the list has not delivered yet (a restart rebuilds
        before pairs load, or the venue is unreachable): ``BTCUSDC`` is read as BTC quoted
        in USDC when it ends in a known quote currency (longest first) and something is left
        for the base. Limits of an inferred pair are unknown (0); it only books fills.
        """
        quotes = {self.reference_currency, *_COMMON_QUOTES}
        quotes.update(info.quote for info in self._market.pairs().values())
        for quote in sorted(quotes, key=len, reverse=True):
            if symbol.endswith(quote) and len(symbol) > len(quote) and symbol.isalnum():
                info = PairInfo(
                    symbol=symbol,
                    base=symbol[: -len(quote)],
                    quote=quote,
                    min_base=ZERO,
                    max_base=ZERO,
                    min_quote=ZERO,
                    max_quote=ZERO,
                    tick_size=_MONEY_PLACES,
                    base_decimals=8,
                )
                self._pairs[symbol] = info
                return info
        return None

    def _known_pairs(self) -> set[str]:
        # The traded pairs only (``valr.pairs``: what an open position is, by contract). Not
        # the market's whole list: with every venue pair loaded, BTC would show once per BTC
        # pair. Holdings and books outside them are in book_rows() and the account model's
        # snapshot, marked external.
        return set(self.traded)
