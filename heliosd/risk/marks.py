"""The baselines that daily loss and drawdown are measured from: start-of-day equity and the
high-water mark (peak), flow-adjusted.

Invariants (enforced here, nowhere else):

* **M1 -- flows are not P&L.** A recorded deposit, withdrawal or transfer of value V (in the
  reference currency) moves the peak and the day's baseline by V (:meth:`EquityMarks.flow`).
  A withdrawal of 16% therefore leaves the drawdown unchanged, and a deposit cannot hide a
  day's loss.
* **M2 -- a balance change not yet explained is provisional.** Until the flow watcher has
  decided what an unexplained balance change is (a late fill, or a flow), its value is held
  in ``pending`` and the effective baselines include it, so a withdrawal cannot trip a stop
  during its grace period; once recorded, it moves from ``pending`` into the baselines and
  the effective figures do not jump.
* **M3 -- the peak only rises with equity**; the day's baseline is the equity at the first
  figure of a new local day. Both change otherwise only by M1, or by an operator's resume,
  which rebases them to the current equity (:meth:`rebase_peak`, :meth:`restate_day`), so a
  resume never re-trips on the next tick without a new loss.

The stored values (``peak``, ``day_start``) exclude ``pending``: they are what is persisted in
``equity_marks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from heliosd.core.types import ZERO


@dataclass(frozen=True, slots=True)
class Baselines:
    """The effective baselines at one figure (pending included)."""

    peak: Decimal
    day_start: Decimal


class EquityMarks:
    """Peak and start-of-day equity of one mode (see the module docstring)."""

    def __init__(self) -> None:
        self.peak: Decimal | None = None
        self.day: date | None = None
        self.day_start: Decimal | None = None
        self._pending = ZERO
        # The value of the flows recorded on ``flows_day`` (the account's local day): shown
        # beside the day's P&L, so a moved baseline is never a mystery.
        self.flows_day: date | None = None
        self.flows_today = ZERO
        # A new object on every change of what the effective baselines are made of, so a
        # cache (the account snapshot) can tell by identity that it must rebuild.
        self.key: object = object()

    @property
    def pending(self) -> Decimal:
        return self._pending

    @pending.setter
    def pending(self, value: Decimal) -> None:
        if value != self._pending:
            self._pending = value
            self.key = object()

    def restore(self, peak: Decimal | None, day: date | None, day_start: Decimal | None) -> None:
        self.peak, self.day, self.day_start = peak, day, day_start
        self.key = object()

    def flows_on(self, local_day: date) -> Decimal:
        """The value of the flows recorded on ``local_day`` (zero for any other day)."""
        return self.flows_today if self.flows_day == local_day else ZERO

    def stored(self) -> tuple[Decimal | None, date | None, Decimal | None]:
        return self.peak, self.day, self.day_start

    def observe(self, equity: Decimal, local_day: date, *, update: bool) -> Baselines:
        """The baselines for a figure of ``equity`` on ``local_day`` (M3); moved only when
        ``update`` (the one caller that persists them)."""
        pending = self.pending
        peak, day_start = self.peak, self.day_start
        if self.day != local_day or day_start is None:
            day_start = equity - pending
        if peak is None or equity > peak + pending:
            peak = equity - pending
        if update and (peak, local_day, day_start) != (self.peak, self.day, self.day_start):
            self.peak, self.day, self.day_start = peak, local_day, day_start
            self.key = object()
        return Baselines(peak + pending, day_start + pending)

    def flow(self, value: Decimal, local_day: date | None = None) -> None:
        """A recorded flow of ``value`` (M1) on ``local_day`` (today's figure when given).
        Before any baseline exists there is nothing to move: the first figure takes the
        equity as it is."""
        if local_day is not None:
            if self.flows_day != local_day:
                self.flows_day, self.flows_today = local_day, ZERO
            self.flows_today += value
        if self.peak is not None:
            self.peak += value
        if self.day_start is not None:
            self.day_start += value
        self.key = object()

    def rebase_peak(self, equity: Decimal) -> tuple[Decimal | None, Decimal]:
        """A resume after a drawdown stop: the peak becomes ``equity`` (old, new)."""
        old = None if self.peak is None else self.peak + self.pending
        self.peak = equity - self.pending
        self.key = object()
        return old, equity

    def restate_day(self, equity: Decimal, local_day: date) -> tuple[Decimal | None, Decimal]:
        """A resume of a daily-loss halt: today's baseline becomes ``equity`` (old, new)."""
        old = None if self.day_start is None else self.day_start + self.pending
        self.day, self.day_start = local_day, equity - self.pending
        self.key = object()
        return old, equity


__all__ = ["Baselines", "EquityMarks"]
