"""What one unit of any asset is worth in the reference currency now, and how old that is.

:class:`Pricer` implements :class:`heliosd.risk.snapshot.AssetPricer`. Invariants:

* **P1 -- an answer always carries its age.** ``Price.age_s`` is the seconds since heliosd
  *received* the quote behind it (``Quote.at`` is stamped on arrival), never the venue's own
  timestamp. A reader decides freshness with ``Price.fresh(max_age)``; an unknown age is stale.
* **P2 -- the freshest source wins, in this order of preference:** the quote of
  ``ASSET+REF`` in :class:`~heliosd.trading.marketdata.MarketData` (from the trade stream, or a REST
  market summary the pricer fetched into it), the inverse pair ``REF+ASSET``, a cross rate
  through one intermediate currency (``ASSET+VIA`` times ``VIA+REF``, source
  ``cross:<VIA+REF>``), and last the price of heliosd's last fill in ``ASSET+REF`` (source
  ``last_fill``, always stale). A stale answer is still returned (a stale value is better
  than none for showing equity); only ``fresh`` says whether it may be trusted.
* **P3 -- REST is fetched in the background, never on the caller's path.** ``price()`` does
  no I/O: when the best quote is older than half of ``max_age_s`` it schedules a fetch of the
  pair's market summary (one in flight per pair; at most one per pair per
  ``REFETCH_S``; at most ``BUDGET_PER_MIN`` a minute in total, because VALR allows 30 public
  requests a minute per IP; a failing pair backs off exponentially up to 5 minutes). The
  answer goes into MarketData with :meth:`MarketData.offer` (never over a newer quote), so
  the limits, the ledger and the monitors value at it too. VALR caches that route for 10 s on
  its side, so a REST quote may be up to 10 s older than its fetch time says.
* **P4 -- dust never blocks.** A holding worth less than ``risk.dust_value`` (at any price
  known, fresh or stale) is dust: :func:`assess` never lists it as stale, and its price is
  refreshed only every ``DUST_REFRESH_S`` (it costs REST budget and decides nothing). A
  holding with no price at all cannot be shown to be dust and is listed (fail closed).
* **P5 -- what no market prices is outside measured equity.** A holding with no price at
  all *and* no route to one among the venue's pairs (no ``ASSET+REF``, ``REF+ASSET`` or
  ``ASSET+VIA`` with ``VIA+REF``: an airdropped token VALR does not list) is ``unvalued``:
  valued at 0 in equity, the peak and the baselines alike, so drawdown and daily loss are
  measured on the rest and stay right; it neither blocks a monitor pass nor puts the
  account in REDUCING (waiting for a price that cannot come would blind the stops for
  good). It is listed, never hidden (``GET /api/health``). A holding whose market exists
  but has no price yet stays unpriced under P4: its value is coming, and 0 meanwhile would
  set a baseline too low and hide a later loss.
* ``version`` moves on every quote, fill price and REST answer, and on every :meth:`sweep`
  (called about once a second by the service), because ages change with time alone.

Beside the pricer: :mod:`heliosd.risk.assessment` values every holding and applies the dust
rule (:func:`assess`, :func:`describe_stale`); :mod:`heliosd.risk.fresh_prices` has the
``fresh_prices`` risk rule (:class:`FreshPrices`), which this module, the plugin the manager
loads, registers. Every name imported from this module before the split still is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from heliosd.core.config import Settings
from heliosd.core.errors import ExchangeRejected
from heliosd.core.protocols import RiskRule
from heliosd.core.types import Quote, utcnow
from heliosd.plugins.hookspecs import hookimpl
from heliosd.risk.assessment import Assessment, assess, describe_stale
from heliosd.risk.fresh_prices import FreshPrices
from heliosd.risk.snapshot import NO_PRICE, REFERENCE, Price
from heliosd.trading.marketdata import MarketData

log = logging.getLogger(__name__)

ONE = Decimal(1)
# Currencies a cross rate may go through (VALR quotes most coins in one of these).
VIAS: tuple[str, ...] = ("USDC", "USDT", "BTC")
REFETCH_S = 2.0
BUDGET_PER_MIN = 24
BACKOFF_MAX_S = 300.0
UNKNOWN_PAIR_S = 3600.0
# A dust holding's price is refreshed this seldom (it never blocks anything; the look is
# only to notice that it stopped being dust).
DUST_REFRESH_S = 300.0


class Summary(Protocol):
    """The fields of a REST market summary the pricer reads (``parse.MarketSummary``)."""

    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None


Fetch = Callable[[str], Awaitable[Summary]]


def _mark(quote: Quote) -> Decimal | None:
    if quote.bid is not None and quote.ask is not None:
        return (quote.bid + quote.ask) / 2
    return quote.last


class Pricer:
    """Values any asset in ``reference`` (see the module docstring for the invariants)."""

    def __init__(
        self,
        market: MarketData,
        *,
        reference: str,
        max_age_s: float,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = 0
        self.market = market
        self.reference = reference
        self.max_age_s = max_age_s
        self._fetch = fetch
        self._clock = clock
        self._last_fill: dict[str, tuple[Decimal, datetime]] = {}
        # asset -> (quote, second-leg quote or None, value, source) of its last fresh answer
        # from quotes: valid while those quote objects are still the market's latest.
        self._memo: dict[str, tuple[Quote, Quote | None, Decimal, str, str, str]] = {}
        self._quotes = market.live_quotes()
        self._dust: dict[str, float] = {}  # asset -> when assess() last found it dust
        self._refresh_age = max_age_s / 2
        self._cut_for: datetime | None = None  # value(): the now its cutoff was computed for
        self._cutoff = datetime.min.replace(tzinfo=UTC)
        self._inflight: set[str] = set()
        self._next_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._spent: list[float] = []  # fetch start times within the last minute
        self._tasks: set[asyncio.Task[None]] = set()
        self.fetches = 0
        self._unsubscribe = market.subscribe(self._on_quote)

    def close(self) -> None:
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()

    def _on_quote(self, _quote: Quote) -> None:
        self.version += 1

    def note_fill(self, pair: str, price: Decimal, at: datetime) -> None:
        """Remember heliosd's last fill price in ``pair`` (the stale fallback of P2)."""
        self._last_fill[pair] = (price, at)
        self.version += 1

    def note_dust(self, asset: str) -> None:
        """``asset`` is held as dust: refresh its price only every ``DUST_REFRESH_S``."""
        if asset not in self._dust:
            self._dust[asset] = self._clock()

    def note_not_dust(self, asset: str) -> None:
        self._dust.pop(asset, None)

    def sweep(self) -> None:
        """Time passed: every age grew (readers caching on ``version`` must re-read)."""
        self.version += 1

    # ------------------------------------------------------------------ answers

    def quick(self, asset: str, now: datetime) -> tuple[Decimal, float, str] | None:
        """``(value, age_s, source)`` when the asset's last answer came from quotes that are
        still the market's latest and younger than half the limit; else None (ask
        :meth:`price`). The monitors' per-pass path: no search, no Price built."""
        memo = self._memo.get(asset)
        if memo is None:
            return None
        q1, q2, value, source, direct, inverse = memo
        quotes = self._quotes
        if quotes.get(q1.pair) is not q1:
            return None
        if q2 is None:
            at = q1.at
        else:
            # A cross answer stands only while both legs are unchanged and no quote of a
            # route P2 prefers (direct, inverse) exists: a pair listed since would win.
            if quotes.get(q2.pair) is not q2 or direct in quotes or inverse in quotes:
                return None
            at = q1.at if q1.at < q2.at else q2.at
        age = (now - at).total_seconds()
        if age > self._refresh_age:
            return None
        return value, age, source

    def value(self, asset: str, now: datetime) -> Decimal | None:
        """:meth:`quick`'s value alone, for a pass that values many holdings at one ``now``
        (assess() and the ledger's equity, after every tick): the age limit is one datetime
        comparison against a cutoff computed once per ``now``, and nothing is built."""
        memo = self._memo.get(asset)
        if memo is None:
            return None
        if now is not self._cut_for:
            self._cut_for = now
            self._cutoff = now - timedelta(seconds=self._refresh_age)
        q1, q2, value, _source, direct, inverse = memo
        quotes = self._quotes
        if quotes.get(q1.pair) is not q1:
            return None
        if q2 is None:
            return value if q1.at >= self._cutoff else None
        if quotes.get(q2.pair) is not q2 or direct in quotes or inverse in quotes:
            return None
        return value if q1.at >= self._cutoff and q2.at >= self._cutoff else None

    def price(self, asset: str, now: datetime | None = None) -> Price:
        ref = self.reference
        if asset == ref:
            return REFERENCE
        now = utcnow() if now is None else now
        hit = self.quick(asset, now)
        if hit is not None:
            return Price(*hit)
        max_age = self.max_age_s
        direct = asset + ref
        best = self._quoted(direct, now)
        if best is not None and best.age_s is not None and best.age_s <= max_age / 2:
            self._remember(asset, direct, None, best)
            return best
        # Older than half the limit (or none): refresh it before it goes stale (P3); a
        # holding last seen as dust needs no fresh price, only an occasional look.
        if self._clock() - self._dust.get(asset, -DUST_REFRESH_S) >= DUST_REFRESH_S:
            self._want(direct)
        if best is not None and best.fresh(max_age):
            return best
        candidates = [best] if best is not None else []
        inverse = self._quoted(ref + asset, now, invert=True)
        if inverse is not None:
            if inverse.fresh(max_age):
                return inverse
            candidates.append(inverse)
        for via in VIAS:
            if via in (asset, ref):
                continue
            leg1 = self._quoted(asset + via, now)
            if leg1 is None:
                continue
            leg2 = self._quoted(via + ref, now)
            if leg2 is None:
                self._want(via + ref)
                continue
            assert leg1.value is not None and leg2.value is not None
            ages = (leg1.age_s or 0.0, leg2.age_s or 0.0)
            cross = Price(leg1.value * leg2.value, max(ages), f"cross:{via}{ref}")
            if cross.fresh(max_age):
                self._remember(asset, asset + via, via + ref, cross)
                return cross
            candidates.append(cross)
        fill = self._last_fill.get(direct)
        if fill is not None:
            candidates.append(Price(fill[0], (now - fill[1]).total_seconds(), "last_fill"))
        if not candidates:
            return NO_PRICE
        return min(candidates, key=lambda p: p.age_s if p.age_s is not None else float("inf"))

    def has_market(self, asset: str) -> bool:
        """Whether any route of P2 exists for ``asset`` among the venue's pairs: direct,
        inverse, or a cross through a VIA. True while the pair list is not known yet (an
        unknown route is not an absent one: the monitors wait rather than value at 0)."""
        if not self.market.venue_pairs:
            return True
        pairs = self.market.pairs()
        ref = self.reference
        if asset + ref in pairs or ref + asset in pairs:
            return True
        return any(asset + via in pairs and via + ref in pairs for via in VIAS if via != asset)

    def _remember(self, asset: str, pair1: str, pair2: str | None, price: Price) -> None:
        q1 = self.market.quote(pair1)
        q2 = None if pair2 is None else self.market.quote(pair2)
        if q1 is not None and price.value is not None and (pair2 is None or q2 is not None):
            ref = self.reference
            self._memo[asset] = (q1, q2, price.value, price.source, asset + ref, ref + asset)

    def _quoted(self, pair: str, now: datetime, *, invert: bool = False) -> Price | None:
        quote = self.market.quote(pair)
        if quote is None:
            return None
        mark = _mark(quote)
        if mark is None or mark <= 0:
            return None
        value = ONE / mark if invert else mark
        source = self.market.source(pair) or "stream"
        return Price(value, (now - quote.at).total_seconds(), source)

    # ------------------------------------------------------------------ REST (P3)

    def _want(self, pair: str) -> None:
        if self._fetch is None or pair in self._inflight:
            return
        now = self._clock()
        if now < self._next_at.get(pair, 0.0):
            return
        self._spent = [t for t in self._spent if now - t < 60.0]
        if len(self._spent) >= BUDGET_PER_MIN:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller, a bench): answer from what we have
        self._spent.append(now)
        self._inflight.add(pair)
        self._next_at[pair] = now + REFETCH_S
        task = loop.create_task(self._refresh(pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, pair: str) -> None:
        assert self._fetch is not None
        try:
            summary = await asyncio.wait_for(self._fetch(pair), 10)
        except ExchangeRejected as exc:
            # Most likely no such pair at the venue: ask again much later, not every second.
            self._next_at[pair] = self._clock() + UNKNOWN_PAIR_S
            log.info("no market summary for %s (%s); not asked again for an hour", pair, exc)
            return
        except Exception as exc:
            n = self._failures.get(pair, 0) + 1
            self._failures[pair] = n
            self._next_at[pair] = self._clock() + min(BACKOFF_MAX_S, REFETCH_S * 2**n)
            log.warning("market summary of %s unavailable (%s: %s)", pair, type(exc).__name__,
                        exc)  # fmt: skip
            return
        finally:
            self._inflight.discard(pair)
        self._failures.pop(pair, None)
        self.fetches += 1
        quote = Quote(pair, summary.bid, summary.ask, summary.last, utcnow())
        if _mark(quote) is None:
            return
        self.market.offer(quote, source="rest")
        self.version += 1


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    """Register ``fresh_prices`` (essential: a LIVE BUY is never priced at a stale quote)."""
    register(FreshPrices())


def valr_fetch(client: Any) -> Fetch | None:
    """The LIVE client's ``market_summary`` as a :data:`Fetch`, when it has one."""
    summary = getattr(client, "market_summary", None)
    return summary if callable(summary) else None


__all__ = [
    "VIAS",
    "Assessment",
    "FreshPrices",
    "Pricer",
    "assess",
    "describe_stale",
    "valr_fetch",
]
