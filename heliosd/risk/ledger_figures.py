"""The ledger's figures at a time: equity against the peak and the local day's start.

The day starts at 00:00 in the ledger's time zone; the peak and day-start rules themselves
(flows, pending changes, rebases) are :mod:`heliosd.risk.marks`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from heliosd.core.protocols import LedgerSnapshot, MarketView
from heliosd.core.types import ZERO, Mode
from heliosd.risk.ledger_common import decimal_text
from heliosd.risk.marks import EquityMarks

HUNDRED = Decimal(100)
_PCT_PLACES = Decimal("1e-4")


class LedgerFigures:
    """Snapshots and marks of :class:`heliosd.risk.ledger.Ledger` (one of its base classes)."""

    # Set by Ledger.__init__ and Ledger._changed (heliosd.risk.ledger).
    mode: Mode
    reference_currency: str
    tz: ZoneInfo
    version: int
    equity_marks: EquityMarks
    _market: MarketView
    _realized: Decimal
    _fees: Decimal

    if TYPE_CHECKING:  # defined by Ledger and LedgerValuation

        @property
        def ready(self) -> bool: ...
        def positions(self) -> Mapping[str, Decimal]: ...
        def equity(self) -> Decimal: ...
        def gross_exposure(self) -> Decimal: ...
        def unrealized_pnl(self) -> Decimal: ...

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


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``tz``, as UTC."""
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def next_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """The next 00:00 in ``tz`` after ``now``, as UTC (when a daily-loss halt expires)."""
    return day_start(now.astimezone(tz).date() + timedelta(days=1), tz)
