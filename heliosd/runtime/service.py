"""Service: the running trading system, wired together.

``start()`` builds everything in dependency order on an AsyncExitStack and hands the parts to
each other; ``close()`` unwinds it in reverse. The control API's backend is
:class:`heliosd.runtime.backend.ServiceBackend` over the very objects that trade.

Base class of Service: :mod:`heliosd.runtime.service_calls` (the callbacks the parts are
handed, the pair limits' loader, and what the daemon asks a started service).
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pluggy

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.core.config import Settings
from heliosd.core.protocols import ExchangeClient, ExchangeContext
from heliosd.core.types import Mode, utcnow
from heliosd.core.venue import is_simulator
from heliosd.notify import Notifications
from heliosd.plugins.facade import DaemonView
from heliosd.plugins.manager import Registry, collect, make_plugin_manager
from heliosd.risk.account import AccountRisk
from heliosd.risk.breakers import Breakers
from heliosd.risk.equity import EquityRecorder
from heliosd.risk.ledger import Ledger
from heliosd.risk.ledger_errors import report_ledger_errors
from heliosd.risk.mode import ModeOrchestrator
from heliosd.risk.runner import MonitorRunner
from heliosd.risk.stops import Stops
from heliosd.runtime.backend import ServiceBackend
from heliosd.runtime.backup import prune_after_backup
from heliosd.runtime.events import ServiceEvents
from heliosd.runtime.gating import live_leftovers
from heliosd.runtime.metrics import DaemonMetrics
from heliosd.runtime.restore import open_order, restore_ledgers, track_open_orders
from heliosd.runtime.runs import RunKeeper
from heliosd.runtime.service_calls import ServiceCalls
from heliosd.runtime.shutdown import ShutdownGate
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading import sweep
from heliosd.trading.close import Closer
from heliosd.trading.engine import Engine
from heliosd.trading.fillcheck import FillCheck
from heliosd.trading.marketdata import MarketData
from heliosd.trading.permits import PermitBoard
from heliosd.trading.router import ExecutionRouter
from heliosd.trading.sink import VenueSink
from heliosd.trading.venue_status import VenueStatusWatch

if TYPE_CHECKING:
    from heliosd.control.server import ControlServer

SYSTEM = Actor(None, "heliosd", "internal")


class Service(ServiceCalls):
    def __init__(self, settings: Settings, *, pm: pluggy.PluginManager | None = None) -> None:
        self.settings = settings
        self.pm = pm
        self.stack = contextlib.AsyncExitStack()
        self.started_at = utcnow()
        self._closing = False  # a stream closed by our own shutdown is not news
        self._background: set[asyncio.Task[Any]] = set()
        # Every part exists from here: the containers empty, the rest None until start()
        # builds it (in this order), so a failed start and the shutdown stages can tell.
        self.market = MarketData()
        self.counters = od.OrderCounters()
        self.ledgers: dict[Mode, Ledger] = {}
        self.accounts: dict[Mode, AccountRisk] = {}
        self.clients: dict[Mode, ExchangeClient] = {}
        self.sinks: dict[Mode, VenueSink] = {}
        self.registry: Registry | None = None
        self.store: Store | None = None
        self.breakers: Breakers | None = None
        # The run marker, the unclean-exit reconciliation, the engine's remembered on/off.
        self.runs: RunKeeper | None = None
        self.notifications: Notifications | None = None
        self.callbacks: ServiceEvents | None = None
        self.equity: EquityRecorder | None = None
        # Monitor passes, breaker trips, equity baselines and price freshness.
        self.runner: MonitorRunner | None = None
        self.fillcheck: FillCheck | None = None
        self.permits: PermitBoard | None = None
        # /metrics' registry: the router's timings accumulate in it from the first order.
        self.metrics = DaemonMetrics()
        self.router: ExecutionRouter | None = None
        self.stops: Stops | None = None
        self.closer: Closer | None = None
        self.engine: Engine | None = None
        self.orchestrator: ModeOrchestrator | None = None
        self.venue_watch: VenueStatusWatch | None = None
        self.backend: ServiceBackend | None = None  # the control API's
        self.control: ControlServer | None = None
        self.view: DaemonView | None = None  # what the plugins' lifecycle hooks get
        # The staged shutdown (heliosd.runtime.shutdown): the control API's 503 gate, and
        # why the shutdown was not orderly (non-empty: the run is not recorded clean).
        self.gate = ShutdownGate()
        self.shutdown_problems: list[str] = []
        self._hooks_ran = False

    # ================================================================== lifecycle

    async def start(self) -> None:
        s = self.settings
        if self.pm is None:
            self.pm = make_plugin_manager(s)
        registry = self.registry = collect(self.pm, s)
        for name in (s.exchange.live, s.exchange.paper):
            if name not in registry.exchanges:
                from heliosd.core.errors import ConfigError

                known = ", ".join(sorted(registry.exchanges))
                raise ConfigError(f"no exchange plugin named {name!r} (known: {known})",
                                  key="exchange", source=s.source)  # fmt: skip
        # The same check as `heliosd check-config`: a config it calls broken must not run
        # (exit 78), rather than start and fail only when the engine is asked to trade.
        if s.engine.strategy and s.engine.strategy not in registry.strategies:
            from heliosd.core.errors import ConfigError

            known = ", ".join(sorted(registry.strategies))
            raise ConfigError(f"no strategy named {s.engine.strategy!r} (known: {known})",
                              key="engine.strategy", source=s.source)  # fmt: skip

        store = self.store = await Store.open(s.daemon.db_path)
        self.stack.push_async_callback(store.close)

        breakers = self.breakers = Breakers(store)
        await breakers.load()
        # Before any client, the engine or the control API starts: an unclean exit in LIVE
        # must be a durable halt before anything of this run could trade.
        runs = self.runs = RunKeeper(s, store, breakers, sinks=self.sinks,
                                     closing=lambda: self._closing,
                                     problems=lambda: self.shutdown_problems)  # fmt: skip
        previous_run = await runs.begin()
        self.stack.push_async_callback(runs.end)  # unwound last, before the store closes

        notifications = self.notifications = Notifications(store, registry.notifiers, s.notify)
        notifications.start()
        self.stack.push_async_callback(notifications.close)
        # What the router, engine, sinks and mode orchestrator report, as events and notices.
        callbacks = self.callbacks = ServiceEvents(store, notifications, spawn=self._spawn,
                                       closing=lambda: self._closing)  # fmt: skip

        report = partial(report_ledger_errors, store, notifications, breakers)
        fills = await restore_ledgers(store, s, self.market, self.counters,
                                      ledgers=self.ledgers, accounts=self.accounts,
                                      report=report)  # fmt: skip

        for mode, name in ((Mode.LIVE, s.exchange.live), (Mode.PAPER, s.exchange.paper)):
            self.clients[mode] = registry.exchanges[name](ExchangeContext(s, mode, self.market))
        # The equity curve (GET /api/equity): points from the monitor pass, one per fill batch.
        equity = self.equity = EquityRecorder(store, retention_days=s.daemon.equity_retention_days,
                                     kick=lambda mode: runner.ledger_changed(mode))  # fmt: skip
        # The runner is handed the sinks' mapping before the loop below fills it: no pass can
        # run before the clients start (a sink, a quote or the equity recorder asks for each).
        runner = self.runner = MonitorRunner(
            settings=s, store=store, market=self.market, breakers=breakers,
            notifications=notifications, ledgers=self.ledgers, clients=self.clients,
            sinks=self.sinks, accounts=self.accounts, equity=equity,
            monitors=registry.monitors, previous_run=previous_run, spawn=self._spawn,
        )  # fmt: skip
        for mode in Mode:
            watermark = await store.read(partial(st.latest_fill_time, mode=mode))
            self.sinks[mode] = VenueSink(
                mode=mode, store=store, ledger=self.ledgers[mode], market=self.market,
                counters=self.counters, client=partial(self.clients.__getitem__, mode),
                enqueue=notifications.record_many,
                notify_trades=mode is Mode.LIVE or s.notify.paper_trades,
                publish=notifications.publish, publish_lazy=notifications.publish_lazy,
                on_ledger_change=runner.ledger_changed,
                on_connection_change=callbacks.connection_changed, watermark=watermark,
                on_ledger_error=runner.ledger_error_at_runtime,
            )  # fmt: skip
        for mode, sink in self.sinks.items():  # the equity curve's fill points
            sink.fill_listeners.append(partial(equity.note_fill, mode))
        # Fill completeness, LIVE: an order's filled quantity backed by stored fills, checked
        # after an order ends and every reconcile_interval_s (heliosd.trading.fillcheck).
        fillcheck = self.fillcheck = FillCheck(sink=self.sinks[Mode.LIVE], store=store,
                                   client=partial(self.clients.__getitem__, Mode.LIVE))  # fmt: skip
        fillcheck.attach()
        open_rows = await track_open_orders(store, self.counters, self.ledgers,
                                            report=report)  # fmt: skip
        paper = self.clients[Mode.PAPER]
        restore = getattr(paper, "restore", None)
        if callable(restore):
            # The paper venue replays what the paper ledger could apply: a stored fill it
            # could not is reported (ledger_error) and must not stop the start here either.
            unread = {e.trade_id for e in self.ledgers[Mode.PAPER].errors}
            restore([f for f in fills[Mode.PAPER] if f.trade_id not in unread],
                    [open_order(r) for r in open_rows if r["mode"] == "PAPER"])  # fmt: skip
        for mode in (Mode.LIVE, Mode.PAPER):
            await self.clients[mode].start(self.sinks[mode])
            self.stack.push_async_callback(self.clients[mode].close)
        # Pair limits are public venue data; startup never waits on the network for them
        # (the built-in limits serve until they arrive).
        self._spawn(self._load_pairs())
        self.market.subscribe(lambda _q: runner.quote_changed())

        # One board of send permits: the router issues, the clients check, the stops revoke.
        permits = self.permits = PermitBoard(
            lambda: (store.mode_state().mode, store.mode_state().epoch)
        )
        router = self.router = ExecutionRouter(
            store=store, settings=s, clients=self.clients, ledgers=self.ledgers,
            market=self.market, breakers=breakers, counters=self.counters,
            rules=registry.risk_rules, enqueue=notifications.record,
            on_order=callbacks.order_event, on_integrity=callbacks.integrity_alert,
            permits=permits, timings=self.metrics,
        )  # fmt: skip
        stops = self.stops = Stops(
            store=store, settings=s, breakers=breakers, clients=self.clients,
            ledgers=self.ledgers, market=self.market, enqueue=lambda: notifications.record,
            publish=notifications.publish, stop_engine=self._stop_engine_quietly,
            on_open_orders=self._venue_open_orders, submit_closing=router.submit_closing,
            permits=permits, on_resume=runner.on_resume,
        )  # fmt: skip
        self.stack.push_async_callback(stops.close)
        runner.stops = stops  # from here a pass's verdict trips its breaker
        # POST /api/positions/close: sells a named account's holdings through the router's
        # closing path; the emergency stop's answer names it when LIVE still holds anything.
        closer = self.closer = Closer(
            store=store, settings=s, router=router, accounts=self.accounts,
            market=self.market, enqueue=notifications.record,
        )  # fmt: skip
        stops.next_step = closer.next_step
        # A daily-loss breaker's `until`: when it passes, the row says ACTIVE again.
        for state in breakers.states().values():
            if state.until is not None:
                stops.schedule_expiry(state.until)
        self._spawn(stops.sync_expired())  # one that expired while the daemon was down
        engine = self.engine = Engine(
            router=router, strategies=registry.strategies, settings=s,
            market=self.market, ledgers=self.ledgers,
            mode_provider=lambda: store.mode_state().mode,
            halted=breakers.halt_reason, on_event=callbacks.engine_event,
        )  # fmt: skip
        self.stack.push_async_callback(self._stop_engine_quietly)
        orchestrator = self.orchestrator = ModeOrchestrator(
            store, gates=lambda: registry.gates, gate_context=self._gate_context,
            gate_timeout_s=float(s.risk.gate_timeout_s), backup_dir=s.daemon.backup_dir,
            enqueue=notifications.record, halted=breakers.halt_reason,
            live_leftovers=partial(live_leftovers, self.clients[Mode.LIVE],
                                   self.ledgers[Mode.LIVE]),
            after_change=callbacks.mode_changed,
            after_backup=lambda _: prune_after_backup(self.settings.daemon.backup_dir,
                                                      self.settings.daemon.keep_backups),
            live_is_simulator=is_simulator(s.valr),
        )  # fmt: skip
        self._spawn(runner.marks_loop())
        self._spawn(equity.run())
        # venue_read_only: the LIVE account REDUCING while VALR is not online.
        venue_watch = self.venue_watch = VenueStatusWatch(
            store=store, breakers=breakers, client=self.clients[Mode.LIVE],
            record=notifications.record, publish=notifications.publish,
            label=s.valr.label,
        )  # fmt: skip
        self._spawn(venue_watch.run())
        self._spawn(sweep.run(self.sinks[Mode.LIVE], float(s.valr.reconcile_interval_s)))
        self._spawn(fillcheck.run(float(s.valr.reconcile_interval_s)))
        self.stack.push_async_callback(fillcheck.close)  # before the clients close
        runner.quote_changed()  # a pass for each mode, now that it can act
        # The engine records its on/off (a person's, a stop's) so a restart restores it.
        runs.engine = engine
        engine.on_choice = runs.remember_engine
        stops.stop_engine = runs.stop_engine_for_stop
        # No resume before an unclean exit is reconciled (Stops.resume consults it).
        stops.resume_blocked = runs.resume_blocked
        runs.start_reconciliation(self.clients[Mode.LIVE], notifications, self._spawn)
        await runs.restore_engine(engine)

        # Plugins' startup hooks run once everything is up, before the API listens; one that
        # raises fails the start (a plugin that could not start must not trade half-set-up).
        # They see the small typed DaemonView (heliosd.plugins.facade), not the service.
        view = self.view = DaemonView(
            settings=s,
            store=store,
            market=self.market,
            ledgers=MappingProxyType(self.ledgers),  # a plugin looks; it cannot swap one
            router=router,
            breakers=breakers,
        )
        self.pm.hook.heliosd_startup(daemon=view)
        self.stack.push_async_callback(self._shutdown_hooks)

        from heliosd.control.app import build_app
        from heliosd.control.server import ControlServer

        # The control API drives exactly the objects that trade (heliosd.runtime.backend).
        backend = self.backend = ServiceBackend(
            settings=s, pm=self.pm, registry=registry, store=store, market=self.market,
            breakers=breakers, notifications=notifications, ledgers=self.ledgers,
            accounts=self.accounts, clients=self.clients, sinks=self.sinks, router=router,
            stops=stops, closer=closer, engine=engine,
            orchestrator=orchestrator, equity=equity, fillcheck=fillcheck,
            runner=runner, gate_context=self._gate_context, started_at=self.started_at,
            metrics=self.metrics,
        )  # fmt: skip
        app = build_app(backend, settings=s, plugin_info=backend.plugins)
        from heliosd.control import dashboard

        dashboard.install(app)
        control = self.control = ControlServer(after_identity=[self.gate.middleware])
        await control.start(app, s)
        self.stack.push_async_callback(control.stop)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._background):
            task.cancel()
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink.drain(), 5)
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.flush_marks()
        await self.stack.aclose()
        # Every cancelled task has ended by the time close returns (one still unwinding
        # could touch a part the stack just closed, or outlive the daemon in a test).
        if self._background:  # bounded: a task that swallows its cancellation must not hang us
            await asyncio.wait(list(self._background), timeout=5)
