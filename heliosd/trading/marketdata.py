"""Market data: the latest quote per pair, pair limits, and how old each price is.

:class:`MarketData` implements :class:`heliosd.core.protocols.MarketView`. The feed (the VALR trade
stream, the simulator, a test) calls :meth:`MarketData.update` with whole quotes; everything
else reads. Readers sit on the order path (risk rules call ``price_for``/``mark`` per order),
so every read is one dict lookup: the derived prices are computed once per update, not per
read.

A quote is stored exactly as given: a ``None`` field means "unknown now", never "keep the
previous value". Merging partial updates is the feed's job, because only the feed knows
whether a missing book side is stale or empty.

Each quote's ``at`` is when heliosd received it (the feed stamps it on arrival), so its age is
how long we have not heard from the market, whatever the venue's own timestamps say. A quote
also records where it came from (:meth:`MarketData.source`): ``stream`` (the trade stream)
or ``rest`` (a market summary fetched by :mod:`heliosd.risk.prices` when the stream is
silent). A REST quote never replaces a newer one (:meth:`MarketData.offer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from heliosd.core.types import PairInfo, Quote, Side

logger = logging.getLogger(__name__)

QuoteCallback = Callable[[Quote], None]

_BUY = Side.BUY
_SELL = Side.SELL


def _pair(symbol: str, base: str, quote: str, min_base: str, max_base: str) -> PairInfo:
    return PairInfo(
        symbol=symbol,
        base=base,
        quote=quote,
        min_base=Decimal(min_base),
        max_base=Decimal(max_base),
        min_quote=Decimal(10),
        max_quote=Decimal(5000000),
        tick_size=Decimal(1),
        base_decimals=8,
    )


# VALR's published limits for the two pairs heliosd trades by default. Used until the
# venue's own ``/v1/public/pairs`` answer replaces them (set_pairs), so that orders are
# checked against real-looking limits from the first second, never against none.
DEFAULT_PAIRS: Mapping[str, PairInfo] = MappingProxyType(
    {
        "BTCZAR": _pair("BTCZAR", "BTC", "ZAR", "0.0001", "2"),
        "ETHZAR": _pair("ETHZAR", "ETH", "ZAR", "0.001", "50"),
    }
)


class MarketData:
    """Latest quote per pair and the pairs' limits (implements ``MarketView``).

    Contract:

    * ``version`` increases by one on every :meth:`update` and :meth:`set_pairs`, so derived
      views (equity, exposure) may cache on it.
    * ``price_for(pair, BUY)`` is the best ask, ``SELL`` the best bid; either falls back to
      the last trade price; ``None`` when nothing is known.
    * ``mark`` is the mid when both sides are known, else the last trade price.
    * Subscribers are called synchronously, in subscription order, after the quote is
      stored. A subscriber that raises is logged and skipped: one broken consumer must not
      starve the others of prices.
    """

    def __init__(self, pairs: Mapping[str, PairInfo] | None = None) -> None:
        self.version = 0
        self._quotes: dict[str, Quote] = {}
        self._quotes_view: Mapping[str, Quote] = MappingProxyType(self._quotes)
        # Derived prices, precomputed per update so reads are a single dict lookup.
        self._buy: dict[str, Decimal] = {}
        self._sell: dict[str, Decimal] = {}
        self._mark: dict[str, Decimal] = {}
        self._source: dict[str, str] = {}
        self._subscribers: tuple[QuoteCallback, ...] = ()
        self._pairs: dict[str, PairInfo] = {}
        self.venue_pairs = False  # set_pairs(from_venue=True) has been called
        self._pairs_view: Mapping[str, PairInfo] = MappingProxyType(self._pairs)
        self.set_pairs(DEFAULT_PAIRS if pairs is None else pairs)

    # ------------------------------------------------------------------ pairs

    def set_pairs(self, pairs: Mapping[str, PairInfo], *, from_venue: bool = False) -> None:
        """Replace the known pairs (the venue's list replaces the defaults wholesale).
        ``from_venue``: this is the venue's whole list, so a pair absent from it does not
        exist there (``venue_pairs`` becomes true; the pricer's P5 relies on it)."""
        self.venue_pairs = self.venue_pairs or from_venue
        self._pairs = dict(pairs)
        self._pairs_view = MappingProxyType(self._pairs)
        self.version += 1

    def pair(self, symbol: str) -> PairInfo | None:
        return self._pairs.get(symbol)

    def pairs(self) -> Mapping[str, PairInfo]:
        """A read-only view of the current pairs (replaced, not mutated, by set_pairs)."""
        return self._pairs_view

    # ------------------------------------------------------------------ quotes

    def update(self, quote: Quote, *, source: str = "stream") -> None:
        """Store ``quote`` as the pair's latest, bump ``version``, notify subscribers."""
        pair = quote.pair
        self._quotes[pair] = quote
        self._source[pair] = source
        last = quote.last
        bid = quote.bid
        ask = quote.ask
        _put(self._buy, pair, ask if ask is not None else last)
        _put(self._sell, pair, bid if bid is not None else last)
        _put(self._mark, pair, (bid + ask) / 2 if bid is not None and ask is not None else last)
        self.version += 1
        for callback in self._subscribers:
            try:
                callback(quote)
            except Exception:
                logger.exception("market data subscriber %r failed on %s", callback, pair)

    def offer(self, quote: Quote, *, source: str) -> bool:
        """Store ``quote`` only if it is newer than the pair's latest (a REST answer that
        raced a stream update must not roll the price back); True when stored."""
        current = self._quotes.get(quote.pair)
        if current is not None and current.at >= quote.at:
            return False
        self.update(quote, source=source)
        return True

    def source(self, pair: str) -> str | None:
        """Where the pair's latest quote came from (``stream`` or ``rest``); None: no quote."""
        return self._source.get(pair)

    def subscribe(self, callback: QuoteCallback) -> Callable[[], None]:
        """Call ``callback(quote)`` after every update; returns an idempotent unsubscribe."""
        self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            subs = list(self._subscribers)
            if callback in subs:
                subs.remove(callback)
                self._subscribers = tuple(subs)

        return unsubscribe

    def quote(self, pair: str) -> Quote | None:
        return self._quotes.get(pair)

    def live_quotes(self) -> Mapping[str, Quote]:
        """A read-only view of the latest quotes that follows every update (no copy: for
        readers that look up many pairs per call, like the pricer's per-pass path)."""
        return self._quotes_view

    def quotes(self) -> Mapping[str, Quote]:
        """Every pair's latest quote (a copy: safe to keep while updates continue)."""
        return dict(self._quotes)

    def price_for(self, pair: str, side: Side) -> Decimal | None:
        """Best ask for a BUY, best bid for a SELL, else the last trade price."""
        # Identity against module constants: on 3.11 ``Side.BUY`` (an Enum class attribute)
        # and Enum equality each cost more than the dict lookup itself.
        if side is _BUY:
            return self._buy.get(pair)
        if side is _SELL:
            return self._sell.get(pair)
        return (self._buy if Side(side) is _BUY else self._sell).get(pair)

    def mark(self, pair: str) -> Decimal | None:
        """Mid when both sides are known, else the last trade price."""
        return self._mark.get(pair)

    # ------------------------------------------------------------------ staleness

    def age(self, pair: str, now: datetime) -> timedelta | None:
        """How old the pair's latest quote is at ``now``; None when there is none."""
        quote = self._quotes.get(pair)
        return None if quote is None else now - quote.at

    def is_stale(self, pair: str, max_age: timedelta, now: datetime) -> bool:
        """True when there is no quote or it is older than ``max_age`` (fail closed)."""
        quote = self._quotes.get(pair)
        return quote is None or now - quote.at > max_age


def _put(prices: dict[str, Decimal], pair: str, price: Decimal | None) -> None:
    # A price that became unknown must disappear, not linger from an older quote.
    if price is None:
        prices.pop(pair, None)
    else:
        prices[pair] = price
