"""One mode's money: balances, positions, cost basis, P&L, fees, equity, peak and day start.

Pure in-memory arithmetic on :class:`~decimal.Decimal`; no I/O. The core persists fills and
the equity marks (peak, day start) and feeds them back after a restart
(:meth:`Ledger.rebuild`, :meth:`Ledger.restore_marks`), so the figures are a function of the
stored fills, the balances the venue reports and the current marks.

Two sources of truth, on purpose:

* **Balances.** In PAPER (``starting_balances`` given) they are the starting balances plus every
  fill. As soon as a venue balance snapshot arrives (:meth:`Ledger.set_balances`, always the
  case in LIVE) the venue is the truth for balances and fills no longer touch them: the venue
  knows about deposits, withdrawals and fills we have not seen yet. A LIVE ledger before its
  first snapshot has *unknown* balances: :attr:`Ledger.ready` is false and equity is 0, so the
  risk rules (which refuse when equity <= 0) fail closed.
* **Cost basis.** Fills alone drive the per-pair book: quantity, average cost, realized P&L and
  fees. We use the **average-cost method** because VALR reports average entry prices and
  operators reason in them. Realized P&L on a reducing trade is ``(price - avg_cost) * qty``
  for a long (mirror for a short). The books and their rules: :mod:`heliosd.risk.cost_basis`.

**Unsettled fills (the one rule).** Equity -- and so the peak, the day start, the drawdown
and the daily loss -- comes only from the venue's reported balances, never from fills not yet
reflected in them: a fill counted both in a balance update and as unsettled would raise a
persisted peak that no real gain made. The limits count a fill the balances do not show yet
(:meth:`Ledger.unsettled`, read by the account risk model), so a holding is counted as
``reported + unsettled`` per currency. A report settles a fill only by showing it: the
currency's reported total must have moved, since the fill arrived (:meth:`Ledger.report_mark`,
taken by the caller then and passed as ``seen``), by the fill's amount in the fill's
direction; movement already attributed to another fill (``_consumed``) is not counted twice.
What the movement does not cover stays unsettled, and each later balance row of that
currency settles as much of it as its movement covers. VALR does not document whether a
balance update comes before or after the trade event, so a balance row that predates the
trade (an order placement's reserve update) settles nothing. A full snapshot (a REST read on
connect or reconciliation) clears what is unsettled and shows every fill traded at or before
the time it arrived (a fill the stream replays after a reconnect is in it already); the
arrival time is on our clock and after VALR's read, so a fill traded within that latency
may be taken as shown.
A deposit arriving with a fill may settle it early; the coins are then counted as held.

``position(pair)`` is the base currency's balance (what is really held, as
:class:`~heliosd.core.protocols.LedgerView` says for spot), so the risk limits see the truth even
when the account held coins before heliosd saw a fill. Such opening inventory has no cost
basis: it is valued at mark in equity and carries no unrealized P&L.

Fees: a fee charged in the **base** currency is base that leaves the account at the fill
price (a BUY nets ``quantity - fee`` into the position at the fill price; a SELL gives up
``quantity + fee``); its value, ``fee * price``, counts as a fee. A fee in the **quote**
currency counts at face value. Everything is converted to the reference currency with the
quote currency's rate at the time of the fill (1 when the quote is the reference currency).
A **maker rebate** (VALR's ``makerReward``) is a negative fee under the same rules: in the
quote currency it is cash received, so ``fees`` goes down and the net P&L (``realized -
fees``) goes up by it; in the base currency it is coins received at the fill price (a BUY
nets ``quantity + rebate``, a SELL gives up ``quantity - rebate``). Realized P&L itself stays
the trading result before fees, so a rebate is never counted twice.
With these rules, at unchanged marks, ``realized + unrealized - fees`` equals the change in
equity exactly (the property test checks it, rebates included).

The rest of the ledger lives in its base classes, each beside the rules it keeps:
:mod:`heliosd.risk.cost_basis` (the books; cost basis when holdings change outside heliosd),
:mod:`heliosd.risk.ledger_pairs` (any pair, any asset), :mod:`heliosd.risk.valuation`
(valuation and its cache), :mod:`heliosd.risk.ledger_figures` (peak, day start, the JSON
figures); :mod:`heliosd.risk.ledger_common` has :class:`LedgerError` and
:func:`decimal_text`. Every name imported from this module before the split still is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

from heliosd.core.protocols import MarketView
from heliosd.core.types import ZERO, Balance, Fill, Mode, PairInfo, utcnow
from heliosd.risk.cost_basis import CostBasisViews, _Book
from heliosd.risk.ledger_common import LedgerError, decimal_text
from heliosd.risk.ledger_figures import LedgerFigures, day_start, next_day_start
from heliosd.risk.ledger_pairs import LedgerPairs
from heliosd.risk.marks import EquityMarks
from heliosd.risk.snapshot import AssetPricer
from heliosd.risk.valuation import LedgerValuation, _Valuation

log = logging.getLogger(__name__)


class Ledger(LedgerFigures, CostBasisViews, LedgerValuation, LedgerPairs):
    """Balances, positions and P&L of one mode, valued in the reference currency.

    Implements :class:`heliosd.core.protocols.LedgerView`. Not thread-safe: call it from the loop.
    """

    def __init__(
        self,
        mode: Mode,
        reference_currency: str,
        tz: ZoneInfo,
        pairs: Mapping[str, PairInfo],
        market: MarketView,
        starting_balances: Mapping[str, Decimal] | None = None,
        *,
        traded: Iterable[str] | None = None,
    ) -> None:
        self.mode = mode
        # Pairs heliosd trades (``valr.pairs``): their base currencies are not external.
        self.traded: frozenset[str] = frozenset(pairs if traded is None else traded)
        self.version = 0  # +1 on every change of balances or books (snapshots cache on it)
        self.errors: list[LedgerError] = []
        self._pricer: AssetPricer | None = None
        self.reference_currency = reference_currency
        self.tz = tz
        self._pairs: dict[str, PairInfo] = dict(pairs)
        self._market = market
        self._starting = dict(starting_balances) if starting_balances is not None else None
        self._venue: dict[str, Balance] | None = None
        self._snapshot_at: datetime | None = None  # when the last full snapshot arrived
        # Peak and start-of-day equity, flow-adjusted (heliosd.risk.marks owns the rules).
        self.equity_marks = EquityMarks()
        self._reset_fill_state()

    def _reset_fill_state(self) -> None:
        self._fill_balances: dict[str, Decimal] = dict(self._starting or {})
        self._unsettled: dict[str, Decimal] = {}
        # Per currency, the reported movement already attributed to fills (signed, summed):
        # what a later fill may not claim again (see "Unsettled fills").
        self._consumed: dict[str, Decimal] = {}
        self._books: dict[str, _Book] = {}
        self._realized = ZERO
        self._fees = ZERO
        self._changed()

    def _changed(self) -> None:
        # Any change to balances or books invalidates cached valuations and balance views.
        self._cache_key: int | None = None
        self._cache: _Valuation | None = None
        self._balance_view: Mapping[str, Balance] | None = None
        self._totals: tuple[tuple[str, Decimal], ...] | None = None
        self.version += 1

    def set_pricer(self, pricer: AssetPricer | None) -> None:
        """Value every currency through ``pricer`` (the account risk model's; one valuation
        for the ledger, the limits and the views). None: marks, then last fills."""
        self._pricer = pricer
        self._changed()

    # ------------------------------------------------------------------ inputs

    def set_pairs(self, pairs: Mapping[str, PairInfo]) -> None:
        """Add or update pair definitions (pairs are often loaded after the ledger exists)."""
        self._pairs.update(pairs)
        self._changed()

    def set_balances(self, balances: Iterable[Balance], *, snapshot: bool) -> None:
        """Take balances from the venue, which from now on is the truth for balances.

        ``snapshot`` replaces every balance; otherwise each row replaces that currency only.
        A delta before the first snapshot is ignored: clients send a snapshot on connect,
        and a partial view would misstate equity.
        """
        if snapshot:
            self._venue = {b.currency: b for b in balances}
            self._unsettled.clear()
            self._snapshot_at = utcnow()
        elif self._venue is None:
            log.debug("%s ledger: balance delta before the first snapshot ignored", self.mode)
            return
        else:
            venue, uns, consumed = self._venue, self._unsettled, self._consumed
            for b in balances:
                old = venue.get(b.currency)
                venue[b.currency] = b
                owed = uns.get(b.currency)
                if owed:
                    moved = b.total - (old.total if old is not None else ZERO)
                    shown = _covered(owed, moved)
                    if shown:
                        consumed[b.currency] = consumed.get(b.currency, ZERO) + shown
                        if shown == owed:
                            del uns[b.currency]
                        else:
                            uns[b.currency] = owed - shown
        self._changed()

    def report_mark(self, currency: str) -> tuple[Decimal, Decimal]:
        """``(reported total, movement consumed)`` of ``currency`` now: taken when a fill
        arrives and passed back as ``seen`` when it is applied (see "Unsettled fills")."""
        venue = self._venue
        b = venue.get(currency) if venue is not None else None
        return (b.total if b is not None else ZERO, self._consumed.get(currency, ZERO))

    def apply_fill(
        self,
        fill: Fill,
        *,
        settled: Collection[str] = (),
        seen: Mapping[str, tuple[Decimal, Decimal]] | None = None,
    ) -> None:
        """Apply one new fill (the store guarantees each trade id is applied once).

        A negative fee is a maker rebate and is booked as such. Raises ValueError for a fill
        that cannot be right (a pair whose currencies cannot be told, a non-positive quantity
        or price) rather than booking nonsense; nothing of such a fill is applied.
        """
        info = self.pair_info(fill.pair)
        if info is None:
            raise ValueError(f"fill {fill.trade_id}: unknown pair {fill.pair}")
        if not all(v.is_finite() for v in (fill.quantity, fill.price, fill.fee)):
            raise ValueError(
                f"fill {fill.trade_id}: quantity {fill.quantity}, price {fill.price} and fee "
                f"{fill.fee} must be finite"
            )
        if fill.quantity <= 0 or fill.price <= 0:
            raise ValueError(
                f"fill {fill.trade_id}: quantity {fill.quantity} and price {fill.price} "
                "must be positive"
            )
        book = self._books.get(fill.pair)
        if book is None:
            book = self._books[fill.pair] = _Book(info)
        sign = fill.side.sign
        base_fee = fill.fee if fill.fee_currency == info.base else ZERO
        quote_fee = fill.fee if fill.fee_currency == info.quote else ZERO
        quote_rate = self._rate(info.quote)
        if fill.fee_currency == info.base:
            fee_value = base_fee * fill.price * quote_rate
        elif fill.fee_currency == info.quote:
            fee_value = quote_fee * quote_rate
        else:
            fee_value = fill.fee * self._rate(fill.fee_currency)

        realized = book.trade(sign * fill.quantity - base_fee, fill.price) * quote_rate
        book.realized += realized
        book.fees += fee_value
        book.last_price = fill.price
        self._realized += realized
        self._fees += fee_value

        bal = self._fill_balances
        notional = fill.quantity * fill.price
        bal[info.base] = bal.get(info.base, ZERO) + sign * fill.quantity - base_fee
        bal[info.quote] = bal.get(info.quote, ZERO) - sign * notional - quote_fee
        if fill.fee_currency not in (info.base, info.quote):
            bal[fill.fee_currency] = bal.get(fill.fee_currency, ZERO) - fill.fee
        snapshot_at = self._snapshot_at
        if self._venue is not None and (snapshot_at is None or fill.traded_at > snapshot_at):
            # Venue balances rule: until the venue reports these currencies again, the
            # fill's effect is known only from the fill (see "Unsettled fills").
            self._unsettle(info.base, sign * fill.quantity - base_fee, settled, seen)
            self._unsettle(info.quote, -sign * notional - quote_fee, settled, seen)
        self._changed()

    def _unsettle(
        self,
        currency: str,
        effect: Decimal,
        settled: Collection[str],
        seen: Mapping[str, tuple[Decimal, Decimal]] | None,
    ) -> None:
        """Count what of ``effect`` the reported total of ``currency`` does not show yet."""
        if not effect or currency in settled:
            return
        mark = seen.get(currency) if seen is not None else None
        if mark is not None:
            total, consumed = self.report_mark(currency)
            shown = _covered(effect, (total - mark[0]) - (consumed - mark[1]))
            if shown:
                self._consumed[currency] = consumed + shown
                effect -= shown
        if effect:
            uns = self._unsettled
            left = uns.get(currency, ZERO) + effect
            if left:
                uns[currency] = left
            else:
                uns.pop(currency, None)

    def rebuild(self, fills: Iterable[Fill]) -> list[LedgerError]:
        """Forget every fill and apply ``fills`` again, in the order given (the store's order).

        Venue balances and equity marks are kept: they do not come from fills. Applying the
        same fills in the same order always gives the same figures. A fill that cannot be
        applied is skipped and recorded in :attr:`errors` (never raised: stored data must
        not stop a start); the new errors are returned.
        """
        self._reset_fill_state()
        self.errors = []
        for fill in fills:
            self.apply_or_record(fill)
        return list(self.errors)

    def apply_or_record(
        self,
        fill: Fill,
        *,
        settled: Collection[str] = (),
        seen: Mapping[str, tuple[Decimal, Decimal]] | None = None,
    ) -> LedgerError | None:
        """:meth:`apply_fill`, recording (and returning) the error instead of raising."""
        try:
            self.apply_fill(fill, settled=settled, seen=seen)
        except (ValueError, ArithmeticError) as exc:
            error = LedgerError(fill.trade_id, fill.pair, str(exc))
            self.errors.append(error)
            log.error("%s ledger: fill %s in %s not applied: %s", self.mode, fill.trade_id,
                      fill.pair, exc)  # fmt: skip
            return error
        return None

    # ------------------------------------------------------------------ LedgerView

    @property
    def ready(self) -> bool:
        """False while balances are unknown (LIVE before the venue's first snapshot)."""
        return self._venue is not None or self._starting is not None

    def balances(self) -> Mapping[str, Balance]:
        view = self._balance_view
        if view is None:
            if self._venue is not None:
                view = MappingProxyType(dict(self._venue))
            elif self._starting is None:
                view = MappingProxyType({})
            else:
                view = MappingProxyType(
                    {c: Balance(c, amount) for c, amount in self._fill_balances.items()}
                )
            self._balance_view = view
        return view

    def totals(self) -> tuple[tuple[str, Decimal], ...]:
        """``(currency, total)`` of every non-zero balance, kept until balances change: the
        monitor pass reads it after every price tick (bench/monitor_pass.py)."""
        totals = self._totals
        if totals is None:
            totals = self._totals = tuple(
                (c, b.total) for c, b in self.balances().items() if b.total
            )
        return totals

    @property
    def snapshot_at(self) -> datetime | None:
        """When the venue's last full balance snapshot arrived (None before the first): it
        shows every fill traded at or before then ("Unsettled fills"; the flow watcher's
        F1a reads the same rule)."""
        return self._snapshot_at

    def unsettled(self) -> Mapping[str, Decimal]:
        """Per currency, the fills applied since the venue last reported it (LIVE only)."""
        return self._unsettled

    def position(self, pair: str) -> Decimal:
        """The base currency's balance (fill-driven quantity while balances are unknown)."""
        info = self._pair_info(pair)
        if info is None:
            return ZERO
        if not self.ready:
            book = self._books.get(pair)
            return book.quantity if book else ZERO
        return self._total(info.base)

    def positions(self) -> Mapping[str, Decimal]:
        """Non-zero positions of the traded pairs (``valr.pairs``), by pair: pairs sharing a
        base currency show the same balance. Every other holding is external (see
        :meth:`book_rows` and :class:`heliosd.risk.account.AccountRisk`)."""
        out: dict[str, Decimal] = {}
        for symbol in self._known_pairs():
            qty = self.position(symbol)
            if qty:
                out[symbol] = qty
        return out

    def _total(self, currency: str) -> Decimal:
        if self._venue is not None:
            b = self._venue.get(currency)
            return b.total if b is not None else ZERO
        return self._fill_balances.get(currency, ZERO)


def _covered(owed: Decimal, moved: Decimal) -> Decimal:
    """How much of ``owed`` (signed) a reported movement ``moved`` shows: the part of it in
    the same direction, at most ``owed``; 0 for a movement the other way."""
    if owed > 0:
        return min(owed, moved) if moved > 0 else ZERO
    return max(owed, moved) if moved < 0 else ZERO


__all__ = ["Ledger", "LedgerError", "day_start", "decimal_text", "next_day_start"]
