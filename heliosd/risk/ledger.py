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
  for a long (mirror for a short).

**Any pair, any asset.** A fill in a pair no configured pair names (a hand trade in BTCUSDC
on VALR's website) is booked like any other: the pair's currencies come from the venue's
pair list (every pair is loaded into the market, only the configured ones are streamed), or,
while that list is not there yet, are inferred from the symbol's ending (a known quote
currency: the reference currency, any pair's quote, then ZAR, USDC, USDT, BTC, ETH, EUR,
USD). A fill that still cannot be read never raises out of :meth:`Ledger.rebuild`: it is
recorded in :attr:`Ledger.errors` (the service reports it and trips ``ledger_error``) and
the rest are applied.

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

Valuation: currency ``C`` is worth ``mark(C + reference)`` (``BTC`` via ``BTCZAR``); without a
mark, the last fill price of that pair; otherwise 0 (nothing we can value honestly).

Cost: ``position()``, ``equity()`` and ``gross_exposure()`` run on every order. Valuations are
cached and recomputed only when a fill, a balance or the market's ``version`` changes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from heliosd.core.protocols import LedgerSnapshot, MarketView
from heliosd.core.types import ZERO, Balance, Fill, Mode, PairInfo, utcnow
from heliosd.risk.marks import EquityMarks
from heliosd.risk.snapshot import AssetPricer

log = logging.getLogger(__name__)

ONE = Decimal(1)
HUNDRED = Decimal(100)
_MONEY_PLACES = Decimal("1e-8")
_PCT_PLACES = Decimal("1e-4")
_COST_PLACES = Decimal("1e-12")
# Quote currencies a pair symbol may end in, besides the reference currency and the quotes
# of the venue's pairs (used only while the venue's pair list is not there).
_COMMON_QUOTES = ("ZAR", "USDC", "USDT", "BTC", "ETH", "EUR", "USD")


@dataclass(frozen=True, slots=True)
class LedgerError:
    """A stored fill the ledger could not apply (reported, never raised at startup)."""

    trade_id: str
    pair: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"trade_id": self.trade_id, "pair": self.pair, "reason": self.reason}


def decimal_text(value: Decimal, places: Decimal = _MONEY_PLACES) -> str:
    """Fixed-point text for JSON: rounded to ``places``, no exponent, no trailing zeros."""
    text = format(value.quantize(places, rounding=ROUND_HALF_EVEN), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


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


@dataclass(frozen=True, slots=True)
class _Valuation:
    equity: Decimal
    gross: Decimal
    unrealized: Decimal


class Ledger:
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

    def restore_marks(
        self, peak: Decimal | None, day: date | None, day_start_equity: Decimal | None
    ) -> None:
        """Restore the persisted peak equity and the start-of-day equity of ``day``."""
        self.equity_marks.restore(peak, day, day_start_equity)

    # The account snapshot's cache compares these by identity with what it was built from
    # (heliosd.risk.account): both are the marks' change key, new on every change of the
    # effective baselines (a new peak or day, a flow, a pending change, a rebase).
    @property
    def _peak(self) -> object:
        return self.equity_marks.key

    @property
    def _day_start_equity(self) -> object:
        return self.equity_marks.key

    def marks(self) -> tuple[Decimal | None, date | None, Decimal | None]:
        """``(peak, day, day_start_equity)`` as last updated by :meth:`snapshot`, a flow or a
        rebase, to persist (flow-adjusted; excluding a pending unexplained change)."""
        return self.equity_marks.stored()

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

    # ------------------------------------------------------------------ equity marks

    def snapshot(self, now: datetime) -> LedgerSnapshot:
        """The figures at ``now``, updating the peak and, on a new local day, the day start.

        The day starts at 00:00 in ``tz``; its start equity is the equity at the first
        snapshot of that day (or the restored value for that day). While balances are
        unknown the marks are left alone (an unknown equity is not a loss).
        """
        return self._figures(now, update=True)

    def peek(self, now: datetime) -> LedgerSnapshot:
        """The same figures as :meth:`snapshot` without moving the peak or the day start.

        For readers (status lines, ``GET /api/risk``): only the caller that persists
        :meth:`marks` should call :meth:`snapshot`, or a mark change could go unsaved.
        """
        return self._figures(now, update=False)

    def _figures(self, now: datetime, *, update: bool) -> LedgerSnapshot:
        local_day = now.astimezone(self.tz).date()
        equity = self.equity()
        marks = self.equity_marks
        if self.ready:
            base = marks.observe(equity, local_day, update=update)
            peak, start = base.peak, base.day_start
        else:  # an unknown equity is not a loss: the marks are left alone
            peak = ZERO if marks.peak is None else marks.peak + marks.pending
            start = ZERO if marks.day_start is None else marks.day_start + marks.pending
        daily_pnl = equity - start if self.ready else ZERO
        daily_loss = max(ZERO, -daily_pnl) / start * HUNDRED if start > 0 else ZERO
        drawdown = max(ZERO, peak - equity) / peak * HUNDRED if peak > 0 else ZERO
        # Positions move with balances, books and the pair list, not with prices: a pass
        # after every price tick must not rebuild them (bench/monitor_pass.py).
        key = (self.version, self._market.pairs())
        cached = getattr(self, "_positions_cache", None)
        if cached is None or cached[0] != key[0] or cached[1] is not key[1]:
            cached = self._positions_cache = (key[0], key[1], MappingProxyType(self.positions()))
        return LedgerSnapshot(
            mode=self.mode,
            at=now,
            equity=equity,
            peak_equity=peak,
            day_start_equity=start,
            day_start=day_start(local_day, self.tz),
            realized_pnl=self._realized,
            unrealized_pnl=self.unrealized_pnl(),
            fees=self._fees,
            daily_pnl=daily_pnl,
            drawdown_pct=drawdown,
            daily_loss_pct=daily_loss,
            positions=cached[2],
        )

    # ------------------------------------------------------------------ JSON views

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

    def pnl_json(self, now: datetime) -> dict[str, Any]:
        """``GET /api/pnl``: the figures at ``now`` without moving the persisted marks."""
        s = self.peek(now)
        return {
            "mode": str(self.mode),
            "reference_currency": self.reference_currency,
            "ready": self.ready,
            "equity": decimal_text(s.equity),
            "realized": decimal_text(s.realized_pnl),
            "unrealized": decimal_text(s.unrealized_pnl),
            "fees": decimal_text(s.fees),
            "daily_pnl": decimal_text(s.daily_pnl),
            "daily_loss_pct": decimal_text(s.daily_loss_pct, _PCT_PLACES),
            "drawdown_pct": decimal_text(s.drawdown_pct, _PCT_PLACES),
            "peak_equity": decimal_text(s.peak_equity),
            "day_start_equity": decimal_text(s.day_start_equity),
            "day_start": s.day_start.isoformat(),
            "gross_exposure": decimal_text(self.gross_exposure()),
        }

    # ------------------------------------------------------------------ pairs

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

    def _total(self, currency: str) -> Decimal:
        if self._venue is not None:
            b = self._venue.get(currency)
            return b.total if b is not None else ZERO
        return self._fill_balances.get(currency, ZERO)

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


def _covered(owed: Decimal, moved: Decimal) -> Decimal:
    """How much of ``owed`` (signed) a reported movement ``moved`` shows: the part of it in
    the same direction, at most ``owed``; 0 for a movement the other way."""
    if owed > 0:
        return min(owed, moved) if moved > 0 else ZERO
    return max(owed, moved) if moved < 0 else ZERO


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``tz``, as UTC."""
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def next_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """The next 00:00 in ``tz`` after ``now``, as UTC (when a daily-loss halt expires)."""
    return day_start(now.astimezone(tz).date() + timedelta(days=1), tz)


__all__ = ["Ledger", "LedgerError", "day_start", "decimal_text", "next_day_start"]
