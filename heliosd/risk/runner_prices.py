"""The monitor runner's prices and flows: the pricer and the LIVE flow watcher, built on the
first pass or freshness pass (lazily: the first balances can arrive while the service is
still wiring), the freshness pass that trips or clears ``stale_prices``, and what
GET /api/health says of them.

:class:`RunnerPrices` is a base class of :class:`heliosd.risk.runner.MonitorRunner`. Logs as
``heliosd.risk.runner``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from heliosd.core.types import Mode, utcnow
from heliosd.risk.flows import FlowWatcher, split_pair
from heliosd.risk.monitors import STALE_PRICES
from heliosd.risk.prices import VIAS, Pricer, assess, valr_fetch
from heliosd.risk.stale import StalePrices
from heliosd.runtime import runstate as rs

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.core.protocols import ExchangeClient
    from heliosd.risk.account import AccountRisk
    from heliosd.risk.breakers import Breakers
    from heliosd.risk.ledger import Ledger
    from heliosd.store import Store
    from heliosd.trading.marketdata import MarketData
    from heliosd.trading.sink import VenueSink

log = logging.getLogger("heliosd.risk.runner")

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class RunnerPrices:
    """Prices, flows and ``stale_prices`` of :class:`heliosd.risk.runner.MonitorRunner` (one
    of its base classes)."""

    # Set by MonitorRunner.__init__ (heliosd.risk.runner).
    settings: Settings
    store: Store
    market: MarketData
    breakers: Breakers
    ledgers: Mapping[Mode, Ledger]
    clients: Mapping[Mode, ExchangeClient]
    sinks: Mapping[Mode, VenueSink]
    accounts: Mapping[Mode, AccountRisk]
    previous_run: rs.PreviousRun | None
    spawn: Spawn
    tripping: set[str]
    marks_dirty: set[Mode]
    pricer: Pricer | None
    flows: FlowWatcher | None
    _flows_task: asyncio.Task[None] | None
    _monitor_blind: dict[Mode, tuple[str, ...]]
    _unvalued: dict[Mode, tuple[str, ...]]
    _monitor_skips: dict[Mode, int]
    stale: StalePrices

    if TYPE_CHECKING:  # defined by MonitorRunner

        def ledger_changed(self, mode: Mode) -> None: ...
        def may_trip(self, key: str) -> bool: ...

    def _risk_setup(self) -> tuple[Pricer, FlowWatcher] | None:
        """Build the pricer and the LIVE flow watcher once (on the first pass: the first
        balances can arrive while the service is still wiring)."""
        if self.pricer is not None and self.flows is not None:
            return self.pricer, self.flows
        r, live = self.settings.risk, self.clients[Mode.LIVE]
        pricer = self.pricer = Pricer(
            self.market, reference=r.reference_currency, max_age_s=float(r.max_quote_age_s),
            fetch=valr_fetch(live),
        )  # fmt: skip
        currencies = (r.reference_currency, *VIAS)
        flows = self.flows = FlowWatcher(
            Mode.LIVE, self.store, value=self._unit_value,
            on_flow=partial(self._flow_recorded, Mode.LIVE),
            on_pending=partial(self._flow_pending, Mode.LIVE),
            history=getattr(live, "transaction_history", None),
            pair_info=lambda p: split_pair(p, self.market.pairs(), currencies),
        )  # fmt: skip
        for mode, sink in self.sinks.items():
            sink.fill_listeners.append(partial(self._fill_seen, mode))
        since = rs.downtime_since(self.previous_run)
        if since is not None and self.settings.valr.has_credentials:
            flows.catching_up = True  # before any pass: see FlowWatcher.catch_up
            self.spawn(self._catch_up_flows(flows, since))
        # One valuation everywhere: the account snapshots and the ledgers price through it.
        for account in self.accounts.values():
            account.set_pricer(pricer)
        return pricer, flows

    async def _catch_up_flows(self, flows: FlowWatcher, since: datetime) -> None:
        """Flows made while heliosd was down, then the LIVE pass that waited for them."""
        try:
            await flows.catch_up(since)
        finally:
            flows.catching_up = False
            self.ledger_changed(Mode.LIVE)

    def _unit_value(self, asset: str) -> Decimal | None:
        assert self.pricer is not None  # the flow watcher is built after the pricer
        return self.pricer.price(asset).value

    def _fill_seen(self, mode: Mode, fill: Any) -> None:
        assert self.pricer is not None and self.flows is not None  # listening after setup
        self.pricer.note_fill(fill.pair, fill.price, fill.traded_at)
        if mode is Mode.LIVE:
            self.flows.note_fill(fill)

    def _flow_recorded(self, mode: Mode, value: Decimal) -> None:
        ledger = self.ledgers[mode]
        ledger.equity_marks.flow(value, utcnow().astimezone(ledger.tz).date())
        self.marks_dirty.add(mode)
        self.ledger_changed(mode)

    def _flow_pending(self, mode: Mode, value: Decimal) -> None:
        marks = self.ledgers[mode].equity_marks
        if marks.pending != value:
            marks.pending = value

    def _flows_kick(self, flows: FlowWatcher) -> None:
        """Look at the LIVE balances for changes no fill explains (in the background)."""
        task = self._flows_task
        if task is not None and not task.done():
            return
        ledger = self.ledgers[Mode.LIVE]
        totals = {c: b.total for c, b in ledger.balances().items()}
        self._flows_task = self.spawn(flows.check(totals, shown_until=ledger.snapshot_at))

    async def freshness_loop(self) -> None:
        """About once a second: age the prices, keep the traded pairs' quotes warm in LIVE,
        settle LIVE balance changes (flows), and trip or clear ``stale_prices``."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.freshness_pass()
            except Exception:
                log.exception("price freshness pass failed")

    async def freshness_pass(self) -> None:
        parts = self._risk_setup()
        if parts is None:
            return
        pricer, flows = parts
        pricer.sweep()
        r = self.settings.risk
        ledger = self.ledgers[Mode.LIVE]
        stale: tuple[str, ...] = ()
        seen = None
        if self.store.mode_state().mode is Mode.LIVE and ledger.ready:
            for pair in self.settings.valr.pairs:
                info = self.market.pair(pair)
                if info is not None:
                    pricer.price(info.base)  # schedules a REST refresh when quiet
            totals = ledger.totals()
            seen = assess(pricer, totals, dust_value=r.dust_value,
                          max_age_s=float(r.max_quote_age_s))  # fmt: skip
            stale = seen.stale
        if ledger.ready:
            self._flows_kick(flows)
        tripped = self.breakers.is_tripped(STALE_PRICES) or STALE_PRICES in self.tripping
        decision = self.stale.watch.decide(stale, tripped=tripped)
        if decision == "trip" and seen is not None and self.may_trip(STALE_PRICES):
            self.tripping.add(STALE_PRICES)
            try:
                await self.stale.trip(seen)
            finally:
                self.tripping.discard(STALE_PRICES)
        elif decision == "clear":
            await self.stale.clear()

    def health(self) -> dict[str, Any]:
        """What GET /api/health says about prices and flows."""
        if self.pricer is None or self.flows is None:
            return {"stale_prices": [], "monitors_blind": {}, "flows_recorded": 0}
        return {
            "stale_prices": list(self.stale.now) if self.breakers.is_tripped(STALE_PRICES)
            else [],
            "monitors_blind": {str(m): list(a) for m, a in self._monitor_blind.items()},
            "unvalued": {str(m): list(a) for m, a in self._unvalued.items() if a},
            "monitor_passes_skipped": {str(m): n for m, n in self._monitor_skips.items()},
            "flows_recorded": self.flows.recorded,
            "flows_unexplained": {c: str(v) for c, v in self.flows.unexplained.items()},
            "rest_price_fetches": self.pricer.fetches,
        }  # fmt: skip
