"""The monitor runner: monitor passes, breaker trips and the equity baselines' persistence.
The LIVE flow watcher's wiring and price freshness (``stale_prices``) are its base class's,
:class:`heliosd.risk.runner_prices.RunnerPrices`.

Every ledger or quote change asks for a pass (:meth:`MonitorRunner.ledger_changed`,
coalesced: one pass per mode per loop turn, whatever the burst). A pass values every holding,
lets the LIVE flow watcher see the balances before any figure is computed from them, takes
the ledger's snapshot and hands it to every monitor; a verdict trips its breaker through
:class:`heliosd.risk.stops.Stops`. A monitor that raises halts under its own breaker (fail
closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from heliosd.core.protocols import MonitorContext
from heliosd.core.types import Action, ActionKind, Mode, utcnow
from heliosd.risk.breakers import DAILY_LOSS, DRAWDOWN, EMERGENCY
from heliosd.risk.flows import FlowWatcher
from heliosd.risk.ledger import LedgerError, decimal_text
from heliosd.risk.ledger_errors import LEDGER_ERROR, report_ledger_errors
from heliosd.risk.monitors import checked_action, failure_action
from heliosd.risk.prices import Pricer, assess
from heliosd.risk.runner_prices import RunnerPrices
from heliosd.risk.runner_prices import Spawn as Spawn
from heliosd.risk.stale import StalePrices
from heliosd.runtime import runstate as rs
from heliosd.store.marks import save_marks

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.core.protocols import ExchangeClient, Monitor
    from heliosd.notify import Notifications
    from heliosd.risk.account import AccountRisk
    from heliosd.risk.breakers import Breakers
    from heliosd.risk.equity import EquityRecorder
    from heliosd.risk.ledger import Ledger
    from heliosd.risk.stops import Stops
    from heliosd.store import Store
    from heliosd.trading.marketdata import MarketData
    from heliosd.trading.sink import VenueSink

log = logging.getLogger(__name__)


class MonitorRunner(RunnerPrices):
    """Owns the monitor passes and what they keep between passes.

    ``spawn`` runs a background task the service cancels at shutdown. ``stops`` is None until
    the service has built them: a pass before that computes its figures but acts on nothing
    (the service runs a pass of its own once it can).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        market: MarketData,
        breakers: Breakers,
        notifications: Notifications,
        ledgers: Mapping[Mode, Ledger],
        clients: Mapping[Mode, ExchangeClient],
        sinks: Mapping[Mode, VenueSink],
        accounts: Mapping[Mode, AccountRisk],
        equity: EquityRecorder,
        monitors: list[Monitor],
        previous_run: rs.PreviousRun | None,
        spawn: Spawn,
    ) -> None:
        self.settings = settings
        self.store = store
        self.market = market
        self.breakers = breakers
        self.notifications = notifications
        self.ledgers = ledgers
        self.clients = clients
        self.sinks = sinks
        self.accounts = accounts
        self.equity = equity
        self.monitors = monitors  # the registry's list: a reload swaps its contents in place
        self.previous_run = previous_run
        self.spawn = spawn
        self.stops: Stops | None = None
        self._monitor_pending: set[Mode] = set()
        self.tripping: set[str] = set()  # breakers whose trip is being committed
        self.marks_dirty: set[Mode] = set()
        # Built by _risk_setup on the first pass (None until then).
        self.pricer: Pricer | None = None
        self.flows: FlowWatcher | None = None
        self._flows_task: asyncio.Task[None] | None = None
        self._monitor_blind: dict[Mode, tuple[str, ...]] = {}
        self._unvalued: dict[Mode, tuple[str, ...]] = {}
        self._monitor_skips: dict[Mode, int] = {}
        self.stale = StalePrices(store, breakers, notifications)

    # ------------------------------------------------------------------ monitor passes

    def ledger_changed(self, mode: Mode) -> None:
        """Run the monitors soon (coalesced: one pass per loop turn, whatever the burst)."""
        if mode in self._monitor_pending:
            return
        self._monitor_pending.add(mode)
        asyncio.get_running_loop().call_soon(self.run_monitors, mode)

    def quote_changed(self) -> None:
        for mode in Mode:
            self.ledger_changed(mode)

    def run_monitors(self, mode: Mode) -> None:
        self._monitor_pending.discard(mode)
        ledger = self.ledgers[mode]
        # An unknown equity is not a loss: no verdicts until the venue's balances are known.
        if not ledger.ready:
            return
        parts = self._risk_setup()
        if parts is None:
            return
        pricer, flows = parts
        # Every holding is valued (trade stream, REST, cross rate, last fill). Dust never
        # blocks a pass; a holding above dust with no price at all does (its value is
        # unknown, and 0 would read as a loss), and never silently: it is listed in
        # GET /api/health and the status line, and in LIVE it trips stale_prices.
        totals = ledger.totals()
        r = self.settings.risk
        seen = assess(pricer, totals, dust_value=r.dust_value,
                      max_age_s=float(r.max_quote_age_s))  # fmt: skip
        if seen.unvalued != self._unvalued.get(mode, ()):
            if seen.unvalued:
                log.warning("%s holds %s, which no VALR market prices: outside measured equity"
                            " (valued at 0 in equity, peak and baselines alike)", mode,
                            ", ".join(seen.unvalued))  # fmt: skip
            self._unvalued[mode] = seen.unvalued
        if seen.unpriced:
            if self._monitor_blind.get(mode) != seen.unpriced:
                log.warning("%s monitors cannot value %s (no price at all): pass skipped",
                            mode, ", ".join(seen.unpriced))  # fmt: skip
            self._monitor_blind[mode] = seen.unpriced
            self._monitor_skips[mode] = self._monitor_skips.get(mode, 0) + 1
            return
        self._monitor_blind.pop(mode, None)
        if mode is Mode.LIVE:
            # A balance change no fill explains is pending before this pass computes a
            # figure from it (a withdrawal must not read as a drawdown meanwhile).
            flows.observe({c: b.total for c, b in ledger.balances().items()},
                          shown_until=ledger.snapshot_at)  # fmt: skip
            self._flows_kick(flows)
            if flows.catching_up:
                # No figure from balances whose flows the baselines do not know yet; the
                # catch-up runs this pass again when it ends (bounded by its timeout).
                self._monitor_skips[mode] = self._monitor_skips.get(mode, 0) + 1
                return
        before = ledger.marks()
        snapshot = ledger.snapshot(utcnow())
        if ledger.marks() != before:
            self.marks_dirty.add(mode)
        self.equity.observe(snapshot)  # queued, never awaited: the curve cannot slow a stop
        if mode is Mode.PAPER and not self.settings.risk.enforce_in_paper:
            return
        stops = self.stops
        if stops is None:
            # A venue's first balances can arrive while start() is still wiring; nothing
            # could act on a verdict yet. start() runs a pass of its own once it can.
            return
        ctx = MonitorContext(self.settings, self.breakers.states())
        for monitor in self.monitors:
            name = getattr(monitor, "name", type(monitor).__name__)
            try:
                action = checked_action(monitor.on_update(snapshot, ctx))
            except Exception as exc:
                # Fail closed: a broken monitor (say, a drawdown guard) must not quietly stop
                # protecting the account. It halts under its own breaker; the traceback is
                # logged once per trip, not on every price tick while it stays broken.
                action = failure_action(name, exc)
                if self.may_trip(action.breaker):
                    log.error("monitor %s failed; trading halted under breaker %s: %s",
                              name, action.breaker, action.reason, exc_info=exc)  # fmt: skip
            if action is not None:
                self._act_on(stops, mode, action)

    # ------------------------------------------------------------------ trips

    def may_trip(self, key: str) -> bool:
        """Not tripped, and no trip of it on its way to the database."""
        return key not in self.tripping and not self.breakers.is_tripped(key)

    def _act_on(self, stops: Stops, mode: Mode, action: Action) -> None:
        emergency = action.kind is ActionKind.EMERGENCY_STOP
        key = EMERGENCY if emergency else action.breaker
        # A trip commits asynchronously; until it has, the next update (a loop turn later)
        # must not start a second stop with its own notification and cancel-all.
        if not self.may_trip(key):
            return
        if emergency:
            work = stops.breaker_emergency(mode, action.breaker, action.reason)
        else:
            work = stops.halt(mode, action.breaker, action.reason, action.until)
        self.tripping.add(key)
        self.spawn(self._trip(key, work))

    async def _trip(self, key: str, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            # Nothing else awaits this task; a store that could not commit the latch is
            # retried by the next update, which finds the breaker still untripped.
            log.exception("tripping breaker %s failed", key)
        finally:
            self.tripping.discard(key)

    def ledger_error_at_runtime(self, mode: Mode, error: LedgerError) -> None:
        # One trip and one notification while the breaker stands, not one per bad fill
        # (each further one is logged by the ledger and listed in health).
        if not self.may_trip(LEDGER_ERROR):
            return
        self.tripping.add(LEDGER_ERROR)
        report = report_ledger_errors(self.store, self.notifications, self.breakers, mode,
                                      [error])  # fmt: skip
        self.spawn(self._trip(LEDGER_ERROR, report))

    # ------------------------------------------------------------------ equity baselines

    async def marks_loop(self) -> None:
        self.spawn(self.freshness_loop())
        while True:
            await asyncio.sleep(0.5)
            await self.flush_marks()

    async def flush_marks(self) -> None:
        dirty, self.marks_dirty = self.marks_dirty, set()
        for mode in dirty:
            peak, day, day_equity = self.ledgers[mode].marks()
            await self.store.write(
                partial(save_marks, mode=mode, peak=peak, day=day, day_equity=day_equity)
            )

    async def on_resume(self) -> dict[str, Any]:
        """Rebase what a resume lifts, so it never re-trips on the next tick without a new
        loss: the peak of a mode at or past the drawdown limit (or with its drawdown breaker
        tripped) becomes the current equity; likewise today's baseline for the daily loss.
        Returns ``{"rebased": {mode: {"peak": {"old", "new"}, "day_start_equity": {"old",
        "new"}}}}`` for the resume's answer and audit row (unchanged figures: old == new).
        Stops.resume calls it before it clears the breakers, so they still say what tripped."""
        r = self.settings.risk
        now = utcnow()
        out: dict[str, Any] = {}
        drawdown = self.breakers.is_tripped(DRAWDOWN)
        daily = self.breakers.is_tripped(DAILY_LOSS)
        for mode, ledger in self.ledgers.items():
            if not ledger.ready:
                continue
            snap = ledger.peek(now)
            marks = ledger.equity_marks
            equity = snap.equity
            peak: tuple[Decimal | None, Decimal] = (snap.peak_equity, snap.peak_equity)
            day: tuple[Decimal | None, Decimal] = (snap.day_start_equity, snap.day_start_equity)
            if drawdown or snap.drawdown_pct >= r.max_drawdown_pct:
                peak = marks.rebase_peak(equity)
            if daily or snap.daily_loss_pct >= r.daily_loss_pct:
                day = marks.restate_day(equity, now.astimezone(r.tz).date())
            self.marks_dirty.add(mode)
            out[str(mode)] = {
                "peak": {"old": _text(peak[0]), "new": _text(peak[1])},
                "day_start_equity": {"old": _text(day[0]), "new": _text(day[1])},
            }
        await self.flush_marks()
        return {"rebased": out}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)
