"""What is called on a Service besides building and unwinding it.

:class:`ServiceCalls` is a base class of :class:`heliosd.runtime.service.Service`: the
callbacks ``start()`` hands the parts (background tasks, the engine's quiet stop, the
plugins' shutdown hooks, the gates' context), the venue pair limits' loader, and what the
daemon asks a started service (SIGHUP reload, status line, liveness, mode). Logs as
``heliosd.runtime.service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import pluggy

from heliosd.core.config import Settings
from heliosd.core.errors import HeliosError
from heliosd.core.protocols import ExchangeClient, GateContext
from heliosd.core.types import Mode, OpenOrder, utcnow
from heliosd.plugins.facade import DaemonView
from heliosd.plugins.manager import ConfigReload, Registry
from heliosd.risk.breakers import Breakers
from heliosd.risk.ledger import Ledger
from heliosd.risk.runner import MonitorRunner
from heliosd.runtime.backend import store_alive
from heliosd.runtime.gating import gate_context
from heliosd.runtime.reloading import reload_running
from heliosd.store import Store
from heliosd.trading.engine import Engine
from heliosd.trading.marketdata import MarketData
from heliosd.trading.router import ExecutionRouter
from heliosd.trading.sink import VenueSink
from heliosd.trading.venue_status import VenueStatusWatch

log = logging.getLogger("heliosd.runtime.service")


class ServiceCalls:
    """The calls of :class:`heliosd.runtime.service.Service` (a base class)."""

    # Set by Service.__init__ (heliosd.runtime.service).
    settings: Settings
    pm: pluggy.PluginManager | None
    _background: set[asyncio.Task[Any]]
    market: MarketData
    ledgers: dict[Mode, Ledger]
    clients: dict[Mode, ExchangeClient]
    sinks: dict[Mode, VenueSink]
    registry: Registry | None
    store: Store | None
    breakers: Breakers | None
    runner: MonitorRunner | None
    router: ExecutionRouter | None
    engine: Engine | None
    venue_watch: VenueStatusWatch | None
    view: DaemonView | None
    _hooks_ran: bool

    async def _shutdown_hooks(self) -> None:
        assert self.pm is not None
        # Once: early in a staged shutdown, else as the stack unwinds. Never without the
        # startup hooks having run (no view yet: a start that failed before them).
        if self._hooks_ran or self.view is None:
            return
        self._hooks_ran = True
        try:
            self.pm.hook.heliosd_shutdown(daemon=self.view)
        except Exception:
            log.exception("a plugin's heliosd_shutdown hook failed; shutting down anyway")

    async def _venue_open_orders(self, mode: Mode, orders: list[OpenOrder]) -> None:
        await self.sinks[mode].on_open_orders(orders)

    async def _stop_engine_quietly(self) -> None:
        if self.engine is None:  # the stops hold this from before the engine is built
            return
        with contextlib.suppress(Exception):
            await self.engine.stop(actor="shutdown")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _load_pairs(self) -> None:
        """The venue's pair limits (public data); retried in the background until loaded."""
        delay = 1.0
        while True:
            try:
                pairs = await asyncio.wait_for(self.clients[Mode.LIVE].pairs(), 10)
            except (HeliosError, TimeoutError) as exc:
                log.warning("venue pairs unavailable (%s); built-in pair limits meanwhile", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)
                continue
            # Every pair's currencies and limits go into the market, so a fill in any pair
            # (a hand trade in BTCUSDC) can be booked and valued; only the configured pairs
            # are streamed (the client subscribes to ``valr.pairs``).
            if pairs:
                self.market.set_pairs({**self.market.pairs(), **pairs}, from_venue=True)
            return

    async def reload_plugins(self, *, actor: str = "SIGHUP") -> ConfigReload:
        """Re-read the config file and reload the drop-ins (SIGHUP); audited either way.

        Nothing changes unless everything loaded: on any error the running rules, gates,
        monitors and settings stay, a ``refused`` audit row is written and a ConfigError
        naming the key and the file propagates. On success the new gates, monitors and risk
        rules decide from the next switch, update and order, and every plugin reads its new
        section from ``settings.plugins``. Core sections are never applied live: the keys
        whose value differs are logged and returned in ``not_applied`` (a restart applies
        them, after the same validation as any start).
        """
        assert self.pm is not None and self.registry is not None
        assert self.router is not None and self.store is not None  # only once started
        return await reload_running(self.pm, self.settings, self.registry, self.router,
                                    self.store, actor=actor)  # fmt: skip

    def store_mode(self) -> str:
        assert self.store is not None  # only once started
        return str(self.store.mode_state().mode)

    async def alive(self) -> bool:
        return self.store is not None and await store_alive(self.store)

    def status_text(self) -> str:
        assert self.store is not None and self.breakers is not None  # only once started
        assert self.runner is not None
        mode = self.store.mode_state().mode
        snap = self.ledgers[mode].peek(utcnow())
        halt = self.breakers.halt_reason()
        health = self.runner.health()
        stale = health["stale_prices"]
        blind = health["monitors_blind"].get(str(mode))
        venue = self.venue_watch.status if self.venue_watch is not None else None
        return (
            f"{mode} equity {snap.equity:.2f} {self.settings.risk.reference_currency}"
            f" day {snap.daily_pnl:+.2f} dd {snap.drawdown_pct:.2f}%"
            + (f" HALTED ({halt})" if halt else "")
            + (f" STALE PRICES {', '.join(stale)}" if stale else "")
            + (f" VALR {venue.upper()}" if venue not in (None, "online") else "")
            + (f" MONITORS BLIND (no price: {', '.join(blind)})" if blind else "")
        )

    # ================================================================== gates

    def _gate_context(self) -> GateContext:
        engine, store = self.engine, self.store
        assert engine is not None and store is not None  # asked for only once started
        return gate_context(settings=self.settings, clients=self.clients, ledgers=self.ledgers,
                            market=self.market, store=store,
                            engine_running=lambda: engine.running)  # fmt: skip
