"""AccountRisk: the one owner of an account's risk state, one per mode.

It composes three parts and is the only place they meet:

* the :class:`~heliosd.risk.ledger.Ledger` -- balances of every asset as the venue reports them
  (or the paper account's), the fill-driven books, and the fills not yet reflected in a
  venue balance (``unsettled``);
  Equity (and with it the peak, day start, drawdown and daily loss) is the reported balances
  valued, never the unsettled fills; a holding for the limits is ``total + unsettled``, and a
  fill is settled only by a report that shows it (the ledger's "Unsettled fills" rule);
* the :class:`~heliosd.risk.exposure.Exposure` -- reserved exposure of open and in-flight
  orders per base asset, kept incrementally from every order row (:meth:`track_order`);
* an :class:`~heliosd.risk.snapshot.AssetPricer` -- what one unit of each asset is worth and
  how old that is. The ledger values through the same pricer (:meth:`Ledger.set_pricer`),
  so equity, exposure and the views are one valuation, not several.

Invariant: every reader (the limits, the monitors, the stops, ``GET /api/risk|pnl|positions``)
takes :meth:`AccountRisk.snapshot`; nothing else keeps its own copy of these figures. The
snapshot is rebuilt only when something it is made of changed (the ledger's ``version``: a
fill or a balance; the exposure's: an order's reservation; the pricer's: a price; the
ledger's marks: peak or day start) and the same frozen object is handed out until then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from heliosd.core.protocols import MarketView
from heliosd.core.types import ZERO, Mode, Side, utcnow
from heliosd.risk.exposure import Exposure
from heliosd.risk.ledger import Ledger, decimal_text
from heliosd.risk.snapshot import (
    NO_PRICE,
    REFERENCE,
    AssetPricer,
    Holding,
    Price,
    RiskSnapshot,
)

_BUY = Side.BUY


class MarketPricer:
    """The fallback :class:`AssetPricer`: the stream's marks, else the last fill's price.

    Prices are quoted against the reference currency (``BTC`` via ``BTCZAR``). It does not
    know how old a mark is, so every price but the reference currency's has ``age_s`` None
    (unknown, which counts as stale): it never claims a freshness it cannot show.
    :mod:`heliosd.risk.prices` replaces it (:meth:`AccountRisk.set_pricer`).
    """

    def __init__(
        self,
        market: MarketView,
        reference: str,
        last_price: Callable[[str], Decimal | None] = lambda _pair: None,
    ) -> None:
        self._market = market
        self._reference = reference
        self._last_price = last_price

    @property
    def version(self) -> int:
        # Its answers move exactly when the market's marks (or a fill, which the ledger's
        # own version covers) move.
        return self._market.version

    def value(self, asset: str, now: datetime) -> Decimal | None:
        return None  # no memo: price() is already a dictionary lookup

    def price(self, asset: str, now: datetime | None = None) -> Price:
        if asset == self._reference:
            return REFERENCE
        symbol = asset + self._reference
        mark = self._market.mark(symbol)
        if mark is not None:
            return Price(mark, None, "stream")
        last = self._last_price(symbol)
        if last is not None:
            return Price(last, None, "last_fill")
        return NO_PRICE


class AccountRisk:
    """One mode's account risk state (see the module docstring)."""

    def __init__(
        self,
        mode: Mode,
        ledger: Ledger,
        market: MarketView,
        *,
        dust_value: Decimal = Decimal(10),
        max_quote_age_s: float = 10.0,
        pricer: AssetPricer | None = None,
    ) -> None:
        self.mode = mode
        self.ledger = ledger
        self.market = market
        self.reference = ledger.reference_currency
        self.dust_value = dust_value
        self.max_quote_age_s = max_quote_age_s
        self.exposure = Exposure(ledger.pair_info, self._ask, self._rate)
        self.pricer: AssetPricer = pricer or MarketPricer(market, self.reference, ledger.last_price)
        # Whose ``version`` says the prices moved: the fallback's is the market's (read as
        # an attribute there: cheaper than the fallback's property, once per order).
        self._prices: Any = market if pricer is None else pricer
        ledger.set_pricer(self.pricer)
        self._snapshot: RiskSnapshot | None = None
        self._ledger_version = self._exposure_version = self._pricer_version = -1
        self._peak: object = None
        self._day_start: object = None

    # ------------------------------------------------------------------ inputs

    def _has_market(self, asset: str) -> bool:
        """P5 of heliosd.risk.prices: a pricer that cannot tell routes answers yes."""
        has_market = getattr(self.pricer, "has_market", None)
        return True if has_market is None else bool(has_market(asset))

    def set_pricer(self, pricer: AssetPricer) -> None:
        """Value through ``pricer`` from now on (:mod:`heliosd.risk.prices` plugs in here)."""
        self.pricer = pricer
        self._prices = pricer
        self.ledger.set_pricer(pricer)
        self._snapshot = None

    def track_order(self, row: Mapping[str, Any]) -> None:
        """An order row of this mode changed (stored, sent, filled, cancelled...)."""
        self.exposure.track(row)

    # ------------------------------------------------------------------ reading

    def snapshot(self, now: datetime | None = None) -> RiskSnapshot:
        """The account's risk state; the same object until something it reads changed."""
        # Once per order on the order path: int comparisons and identity checks only. The
        # marks (peak, day start: the ledger's, persisted by the service) are compared by
        # identity with the objects the snapshot was built from; holding those references
        # keeps their identities from being reused, and the ledger replaces its marks,
        # never mutates them (Decimals are immutable).
        ledger = self.ledger
        snap = self._snapshot
        exposure_version = self.exposure.version
        if (
            snap is not None
            and ledger.version == self._ledger_version
            and self._prices.version == self._pricer_version
            and ledger._peak is self._peak
            and ledger._day_start_equity is self._day_start
        ):
            if exposure_version == self._exposure_version:
                return snap
            # Only a reservation moved (an order stored, answered, filled, cancelled: the
            # common change on the order path): the valued holdings stand.
            snap = self._snapshot = replace(
                snap, pending=self.exposure.pending(), pending_buy_value=self.exposure.buy_value
            )
            self._exposure_version = exposure_version
            return snap
        self._ledger_version = ledger.version
        self._exposure_version = exposure_version
        self._pricer_version = self._prices.version
        self._peak = ledger._peak
        self._day_start = ledger._day_start_equity
        snap = self._snapshot = self._build(now or utcnow())
        return snap

    def _build(self, now: datetime) -> RiskSnapshot:
        ledger = self.ledger
        reference = self.reference
        holdings: dict[str, Holding] = {}
        stale: list[str] = []
        gross = ZERO
        unsettled = ledger.unsettled()
        balances = ledger.balances() if ledger.ready else {}
        for asset in sorted(set(balances) | {a for a, q in unsettled.items() if q}):
            balance = balances.get(asset)
            total = balance.total if balance is not None else ZERO
            extra = unsettled.get(asset, ZERO)
            if not total and not extra:
                continue
            price = self.pricer.price(asset)
            value = total * price.value if price.value is not None else ZERO
            dust = abs(value) < self.dust_value if price.value is not None else False
            fresh = price.fresh(self.max_quote_age_s)
            if asset != reference:
                gross += abs(value)
                unvalued = price.value is None and not self._has_market(asset)
                if not fresh and not dust and not unvalued:  # P5: unvalued never blocks
                    stale.append(asset)
            holdings[asset] = Holding(
                asset=asset,
                total=total,
                available=balance.available if balance is not None else ZERO,
                price=price,
                value=value,
                dust=dust,
                fresh=fresh,
                external=ledger.is_external(asset),
                unsettled=extra,
            )
        figures = ledger.peek(now)
        return RiskSnapshot(
            mode=self.mode,
            at=now,
            ready=ledger.ready,
            reference=reference,
            equity=figures.equity,
            holdings=holdings,
            pending=self.exposure.pending(),
            gross_exposure=ledger.gross_exposure(),
            stale=tuple(stale),
            peak=figures.peak_equity,
            day_start_equity=figures.day_start_equity,
            flows_today=ledger.equity_marks.flows_on(now.astimezone(ledger.tz).date()),
            daily_pnl=figures.daily_pnl,
            daily_loss_pct=figures.daily_loss_pct,
            drawdown_pct=figures.drawdown_pct,
            pending_buy_value=self.exposure.buy_value,
            realized_pnl=figures.realized_pnl,
            unrealized_pnl=figures.unrealized_pnl,
            fees=figures.fees,
        )

    # ------------------------------------------------------------------ views

    def positions_json(self) -> list[dict[str, Any]]:
        """``GET /api/positions`` rows: the ledger's reconciled book rows, then every other
        asset held (not the reference currency) as a row of its own, ``external`` when no
        traded pair has it, valued when a price exists."""
        rows = self.ledger.book_rows()
        shown = {r["asset"] for r in rows if r["quantity"] != "0"}
        snap = self.snapshot()
        for asset, h in snap.holdings.items():
            if asset == self.reference or asset in shown or not h.total:
                continue
            rows.append(
                {
                    "pair": None,
                    "asset": asset,
                    "quantity": decimal_text(h.total),
                    "average_cost": "0",
                    "mark": None if h.price.value is None else decimal_text(h.price.value),
                    "notional": decimal_text(abs(h.value)),
                    "unrealized_pnl": "0",
                    "realized_pnl": "0",
                    "fees": "0",
                    "currency": self.reference,
                    "external": h.external,
                    "price_source": h.price.source,
                    "dust": h.dust,
                }
            )
        return rows

    def pending_json(self) -> dict[str, dict[str, str | int]]:
        """Reserved exposure per base asset, for ``GET /api/risk``."""
        return {
            asset: {
                "buy_quantity": decimal_text(p.buy_quantity),
                "buy_value": decimal_text(p.buy_value),
                "sell_quantity": decimal_text(p.sell_quantity),
                "orders": p.orders,
            }
            for asset, p in sorted(self.snapshot().pending.items())
        }

    # ------------------------------------------------------------------ exposure's needs

    def _ask(self, pair: str) -> Decimal | None:
        return self.market.price_for(pair, _BUY)

    def _rate(self, currency: str) -> Decimal | None:
        return self.pricer.price(currency).value


def account_snapshot(accounts: Mapping[Mode, AccountRisk], mode: Mode) -> RiskSnapshot | None:
    """The snapshot of ``mode``'s account, None when no account model is wired (a router
    built without one, e.g. in a test: the limits then read the ledger alone)."""
    account = accounts.get(mode)
    return None if account is None else account.snapshot()


__all__ = ["AccountRisk", "MarketPricer", "account_snapshot"]
