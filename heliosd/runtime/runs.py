"""This run as the database remembers it: the run marker (an unclean LIVE exit is a durable
halt, :mod:`heliosd.runtime.runstate`), the reconciliation with VALR while ``unclean_exit``
stands, and the engine's on/off choice across restarts.

The service's code moved verbatim but for self.X -> the parts handed over here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

from heliosd.core.errors import HeliosError
from heliosd.core.types import Mode, utcnow
from heliosd.risk.state import UNCLEAN_EXIT
from heliosd.risk.unclean import Reconciliation
from heliosd.runtime import runstate as rs
from heliosd.trading.engine import EngineChoice

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.core.protocols import ExchangeClient
    from heliosd.notify import Notifications
    from heliosd.risk.breakers import Breakers
    from heliosd.risk.runner import Spawn
    from heliosd.store import Store
    from heliosd.trading.engine import Engine
    from heliosd.trading.sink import VenueSink

log = logging.getLogger(__name__)


class RunKeeper:
    """``closing()`` says whether the daemon's own shutdown has begun; ``problems()`` why it
    was not orderly (non-empty: the run is not recorded clean). ``engine`` is None until the
    service has built it."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        breakers: Breakers,
        *,
        sinks: Mapping[Mode, VenueSink],
        closing: Callable[[], bool],
        problems: Callable[[], Sequence[str]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.breakers = breakers
        self.sinks = sinks
        self._closing = closing
        self._problems = problems
        self.previous: rs.PreviousRun | None = None
        self.reconciliation: Reconciliation | None = None
        self.engine: Engine | None = None

    async def begin(self) -> rs.PreviousRun:
        """This run's marker; the unclean-exit halt if the last LIVE run did not end cleanly
        (:mod:`heliosd.runtime.runstate`). The caller makes :meth:`end` the last thing its
        stack unwinds before the store closes."""
        prev = self.previous = await self.store.write(partial(rs.begin_run, pid=os.getpid()))
        if prev.tripped:
            self.breakers.committed_trip(UNCLEAN_EXIT, prev.reason, None)  # journaled there
        elif prev.unclean:
            log.warning("the previous run (pid %s) did not shut down cleanly; PAPER, so trading"
                        " is not halted", (prev.marker or {}).get("pid", "?"))  # fmt: skip
        return prev

    async def end(self) -> None:
        """Write the clean marker, only at the end of an orderly shutdown: close() called,
        not cancelled by its time budget, every fill drained."""
        task = asyncio.current_task()
        if not self._closing() or (task is not None and task.cancelling()) or self._problems():
            log.warning("shutdown was not orderly: the next start treats this run as unclean")
            return
        try:
            for sink in self.sinks.values():
                await asyncio.wait_for(sink.drain(), 5)
            await self.store.write(partial(rs.end_run, pid=os.getpid()))
        except Exception as exc:
            log.warning("clean shutdown not recorded (%s): the next start treats this run as"
                        " unclean", exc)  # fmt: skip

    def start_reconciliation(
        self, client: ExchangeClient, notifications: Notifications, spawn: Spawn
    ) -> None:
        """Reconcile with VALR in the background while ``unclean_exit`` is active."""
        prev = self.previous
        assert prev is not None  # begin() read it
        if not (prev.halted or self.breakers.is_tripped(UNCLEAN_EXIT)):
            return
        cause = prev.reason or self.breakers.states()[UNCLEAN_EXIT].reason
        self.reconciliation = Reconciliation(
            store=self.store, sink=self.sinks[Mode.LIVE], client=client,
            enqueue=notifications.record, publish=notifications.publish,
            fills_before=prev.live_fills, cause=cause,
        )  # fmt: skip
        spawn(self.reconciliation.run())

    def resume_blocked(self) -> str | None:
        """Why a resume is refused now (Stops asks before clearing anything), or None."""
        if self.reconciliation is None or not self.breakers.is_tripped(UNCLEAN_EXIT):
            return None
        return self.reconciliation.blocked()

    async def restore_engine(self, engine: Engine) -> None:
        """Start the engine as the operator last chose; with no choice recorded, as
        ``engine.autostart`` says. Whatever a halt keeps from running is recorded as
        stopped: a stop's engine-off stays off, restarts included."""
        s = self.settings
        choice = await self.store.read(rs.load_engine_choice)
        if choice is None and not (s.engine.autostart and s.engine.strategy):
            return
        if choice is not None and not choice.running:
            log.info("engine stays stopped: stopped by %s at %s%s", choice.by, choice.at,
                     f" ({choice.reason})" if choice.reason else "")  # fmt: skip
            return
        name = (choice.strategy if choice is not None else None) or s.engine.strategy
        how = "autostart" if choice is None else "restore"
        halt = self.breakers.halt_reason()
        if halt:
            log.warning("engine %s skipped: trading is halted (%s); it stays stopped until a"
                        " person starts it", how, halt)  # fmt: skip
            await self.remember_engine(EngineChoice(
                False, name, "heliosd", utcnow().isoformat(),
                f"not started at startup: trading is halted ({halt})",
            ))  # fmt: skip
            return
        try:
            await engine.start(name, actor=how, remember=False)
        except HeliosError as exc:
            log.warning("engine %s failed: %s", how, exc.message)

    def remember_engine(self, choice: EngineChoice) -> asyncio.Future[None]:
        """Queue the engine's choice for ``daemon_state`` (the engine awaits the commit).
        The daemon's own shutdown stops the engine without changing the choice."""
        if self._closing():
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self.store.submit(partial(rs.save_engine_choice, choice=choice))

    async def stop_engine_for_stop(self) -> None:
        """A stop's or halt's engine-off (Stops.stop_engine): an engine it stopped is
        remembered as stopped. One that was not running is left as recorded (no commit on
        the stop's path for nothing)."""
        engine = self.engine
        assert engine is not None  # handed to the stops once the engine is built
        halt = self.breakers.halt_reason()
        with contextlib.suppress(Exception):
            await engine.stop(actor="heliosd", reason=f"trading stopped ({halt or 'stop'})",
                              remember=engine.running)  # fmt: skip
