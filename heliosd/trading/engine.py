"""The autonomous engine: runs one strategy at a time and sends its intents through the router.

Contract:

* ``start(name)`` refuses with :class:`HaltedError` while a breaker is latched (``halted()``
  returns its reason) and with :class:`NotFoundError` for an unknown strategy. Starting the
  strategy that already runs is a no-op; starting another one stops the first.
* While running, the strategy's ``on_market(snapshot, ctx)`` is called once every
  ``engine.interval_s`` and after price updates of the engine's pairs. Updates arriving while
  a tick runs are coalesced into one following tick: at most one tick at a time, never a
  queue of them.
* Every returned :class:`OrderIntent` goes through ``router.submit(intent,
  actor="engine:<name>")`` with ``source="engine:<name>"``, the same path and risk rules as a
  manual order. Refusals (risk, venue, halt, mode integrity, a venue that is down) are counted
  as ``orders_refused``: they are business outcomes, the strategy keeps running.
* A strategy that raises, hangs past ``tick_timeout_s`` or returns something other than a
  sequence of intents is stopped and reported (``status()`` shows the error, ``on_event`` is
  told). The daemon is never affected. A breaker tripping while running stops the engine too.
* ``stop()`` is prompt: no new tick starts and no further intent of the current tick is sent;
  an order already being submitted is allowed to finish (bounded by ``stop_timeout_s``) so it
  never stays half-sent because of a stop.
* Every start and stop made with ``remember=True`` (the default: a person's command, a
  stop's engine-off), and every stop the engine makes itself (an error, a halt), is handed
  to ``on_choice`` as an :class:`EngineChoice` once it has taken effect, and awaited: the
  service records it so a restart restores it (:mod:`heliosd.runtime.runstate`). The daemon's own
  startup and shutdown pass ``remember=False``.

Base class of Engine: :mod:`heliosd.trading.engine_tick` (one tick: the strategy's view, its
answer checked, its intents sent; the per-strategy counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from heliosd.core.config import Settings
from heliosd.core.errors import HaltedError, NotFoundError
from heliosd.core.protocols import LedgerView, Strategy
from heliosd.core.types import Mode, PairInfo, Quote, utcnow
from heliosd.trading.engine_tick import REFUSALS as REFUSALS
from heliosd.trading.engine_tick import EngineTick, _Stats
from heliosd.trading.engine_tick import OrderRouter as OrderRouter
from heliosd.trading.engine_tick import StrategyFailed as StrategyFailed
from heliosd.trading.engine_tick import describe as describe
from heliosd.trading.marketdata import MarketData

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True, slots=True)
class EngineChoice:
    """Whether the engine should run, as last decided, and by whom (``daemon_state`` 'engine')."""

    running: bool
    strategy: str | None
    by: str
    at: str
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Must queue its write before returning (the store's ``submit``); the engine awaits the result.
ChoiceSink = Callable[[EngineChoice], Awaitable[Any]]


class Engine(EngineTick):
    """Runs one strategy at a time (see the module docstring for the contract).

    ``ledgers`` maps each mode to its ledger; ``mode_provider()`` says which mode is stored
    now (read on every tick, so the strategy always sees the ledger the router will use);
    ``pairs_provider()`` gives the pair limits (default: the market's); ``halted()`` returns
    the reason of a latched breaker or None; ``on_event`` receives
    ``{"type": "engine", "event": "started"|"stopped"|"error", "strategy", "at", ...}``.
    """

    def __init__(
        self,
        router: OrderRouter,
        strategies: Mapping[str, Strategy],
        settings: Settings,
        market: MarketData,
        ledgers: Mapping[Mode, LedgerView],
        pairs_provider: Callable[[], Mapping[str, PairInfo]] | None = None,
        mode_provider: Callable[[], Mode] | None = None,
        on_event: EventSink | None = None,
        *,
        halted: Callable[[], str | None] = lambda: None,
        tick_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        max_quote_age_s: float = 60.0,
    ) -> None:
        self._router = router
        self._strategies = dict(strategies)
        self._settings = settings
        self._market = market
        self._ledgers = ledgers
        self._pairs_provider = pairs_provider or market.pairs
        if mode_provider is None:
            # No default: a guessed mode would hand the strategy the wrong ledger.
            raise TypeError("Engine needs mode_provider (the stored mode, read per tick)")
        self._mode_provider = mode_provider
        self._on_event = on_event
        self._halted = halted
        self._interval = float(settings.engine.interval_s)
        self._pairs = tuple(settings.engine.pairs)
        self._tick_timeout = tick_timeout_s
        self._stop_timeout = stop_timeout_s
        self._max_quote_age = timedelta(seconds=max_quote_age_s)
        self._stats: dict[str, _Stats] = {name: _Stats() for name in self._strategies}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._name: str | None = None
        self._started_at: datetime | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._unsubscribe: Callable[[], None] | None = None
        # Told of every remembered start and stop (see the module docstring); None: nobody.
        self.on_choice: ChoiceSink | None = None

    # ------------------------------------------------------------------ control

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def set_strategies(self, strategies: Mapping[str, Strategy]) -> None:
        """Replace the known strategies (plugin reload); a running one keeps its object."""
        self._strategies = dict(strategies)
        for name in strategies:
            self._stats.setdefault(name, _Stats())

    async def start(
        self, strategy_name: str | None = None, actor: str = "", *, remember: bool = True
    ) -> dict[str, Any]:
        """Start ``strategy_name`` (default ``engine.strategy``); returns :meth:`status`.

        ``remember``: hand the choice to ``on_choice`` (False only for the daemon's own
        autostart and restore, which are not a new choice)."""
        async with self._lock:
            name = strategy_name or self._settings.engine.strategy
            known = ", ".join(sorted(self._strategies)) or "none"
            if not name:
                raise NotFoundError(
                    f"no strategy given and [engine] strategy is not set (known: {known})"
                )
            strategy = self._strategies.get(name)
            if strategy is None:
                raise NotFoundError(f"unknown strategy {name!r} (known: {known})")
            halt = self._halted()
            if halt:
                raise HaltedError(f"Cannot start the engine: trading is halted ({halt})")
            if self.running:
                if self._name == name:
                    if remember:
                        await self._remember(True, name, actor, "")
                    return {**self.status(), "changed": False}
                await self._stop_locked(actor, f"replaced by {name}")
            self._name = name
            self._started_at = utcnow()
            self._stopping = False
            stats = self._stats.setdefault(name, _Stats())
            stats.running = True
            stats.last_error = None
            self._wake.set()  # first tick at once
            self._unsubscribe = self._market.subscribe(self._on_quote)
            self._task = asyncio.get_running_loop().create_task(
                self._run(name, strategy), name=f"engine:{name}"
            )
            log.info("engine started strategy %s (by %s)", name, actor or "?")
            self._emit("started", name, actor=actor)
            if remember:
                await self._remember(True, name, actor, "")
            return {**self.status(), "changed": True}

    async def stop(
        self, actor: str = "", reason: str = "", *, remember: bool = True
    ) -> dict[str, Any]:
        """Stop the running strategy (idempotent); returns :meth:`status` plus ``stopped``.

        ``remember``: hand the choice to ``on_choice`` even if nothing was running (a person
        who says stop means stopped, whatever ran before)."""
        async with self._lock:
            was_running = self.running
            name = self._name
            await self._stop_locked(actor, reason)
            if remember:
                await self._remember(False, name, actor, reason)
            return {**self.status(), "stopped": was_running}

    async def _remember(self, running: bool, name: str | None, actor: str, reason: str) -> None:
        if self.on_choice is None:
            return
        choice = EngineChoice(running, name, actor or "?", utcnow().isoformat(), reason)
        try:
            # Called before any await, at the moment of the change: the sink takes its place
            # in the store's queue now, so records land in the order the changes happened.
            pending = self.on_choice(choice)
            await pending
        except Exception:
            # The engine's state stands; only a restart could differ from it.
            log.exception("engine: could not record that it is %s",
                          "running" if running else "stopped")  # fmt: skip

    async def _stop_locked(self, actor: str, reason: str) -> None:
        task = self._task
        name = self._name
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        if not task.done():
            # Let an order being submitted finish: cancelling between the store and the venue
            # would leave an order whose fate only reconciliation can tell.
            done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
            if not done:
                log.warning("engine: strategy %s did not stop in time; cancelling it", name)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._finish()
        if name is not None:
            log.info("engine stopped strategy %s (by %s)", name, actor or "?")
            self._emit("stopped", name, actor=actor, reason=reason)

    def _finish(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._name is not None:
            self._stats[self._name].running = False
        self._task = None

    def status(self) -> dict[str, Any]:
        running = self.running
        return {
            "running": running,
            "strategy": self._name,
            "started_at": self._started_at.isoformat() if running and self._started_at else None,
            "interval_s": self._interval,
            "pairs": list(self._pairs),
            "strategies": {name: s.as_json() for name, s in sorted(self._stats.items())},
        }

    # ------------------------------------------------------------------ loop

    def _on_quote(self, quote: Quote) -> None:
        # Called synchronously by MarketData on every update: only flag, never work here.
        if quote.pair in self._pairs:
            self._wake.set()

    async def _run(self, name: str, strategy: Strategy) -> None:
        stats = self._stats[name]
        ended = ""  # why the engine stopped itself (an error, a halt); "" when told to stop
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                if self._stopping:
                    break
                # Cleared before the tick: updates during the tick wake exactly one more.
                self._wake.clear()
                halt = self._halted()
                if halt:
                    stats.last_error = f"stopped: trading is halted ({halt})"
                    log.warning("engine: stopping %s, trading is halted (%s)", name, halt)
                    self._emit("stopped", name, reason=f"trading is halted ({halt})")
                    ended = f"trading is halted ({halt})"
                    break
                await self._tick(name, strategy, stats)
        except StrategyFailed as exc:
            stats.errors += 1
            stats.last_error = str(exc)
            log.error("engine: strategy %s stopped: %s", name, exc)
            self._emit("error", name, error=str(exc))
            ended = str(exc)
        except Exception as exc:  # a bug of ours (or a provider's): stop, say so, never crash
            stats.errors += 1
            stats.last_error = f"engine failed: {type(exc).__name__}: {exc}"
            log.exception("engine: strategy %s stopped by an engine failure", name)
            self._emit("error", name, error=stats.last_error)
            ended = stats.last_error
        finally:
            stats.running = False
            if self._task is asyncio.current_task() and not self._stopping:
                # Ended by itself (error or halt), not by stop(): release the subscription.
                self._finish()
        if ended and not self._stopping:
            # Off until a person starts it again, restarts included.
            await self._remember(False, name, "heliosd", ended)

    # ------------------------------------------------------------------ events

    def _emit(self, kind: str, strategy: str, **fields: Any) -> None:
        if self._on_event is None:
            return
        event = {
            "type": "engine",
            "event": kind,
            "strategy": strategy,
            "at": utcnow().isoformat(),
            **fields,
        }
        try:
            self._on_event(event)
        except Exception:
            log.exception("engine: event sink failed on %s", kind)
