"""Staged shutdown: a short, ordered list of named stages, each with its own time budget.

SIGTERM/SIGINT (``systemctl stop``) runs :func:`service_stages` through :class:`Shutdown`, in
this order (budgets in seconds, :data:`BUDGETS`):

1. ``stop_accepting`` (2): the control API answers new requests 503 ``shutting_down``
   (:class:`ShutdownGate`; reads still answer), plugins' ``heliosd_shutdown`` hooks run, and
   the engine stops (no new strategy orders; the operator's recorded engine choice stays).
2. ``settle_placements`` (6): placements already on the wire get their answer
   (:meth:`heliosd.trading.permits.PermitBoard.settle`). They are not revoked: each passed
   the risk checks under the state it was sent in; the ones still unanswered are named.
3. ``drain`` (4): fills and order statuses already received are committed and applied
   (each :class:`~heliosd.trading.sink.VenueSink`), the equity marks saved, and the store's
   write queue emptied.
4. ``flush_outbox`` (3): due notifications get one more chance; whatever is not delivered
   stays in the outbox table for the next start.
5. ``close_clients`` (3): the control API closes, the exchange clients' streams and
   sessions close, the notification task ends, and (if nothing before went wrong) the run
   is recorded clean.
6. ``close_store`` (2): the database closes. Always, whatever happened before.

A stage that overruns its budget is abandoned (cancelled, given :data:`ABANDON_GRACE_S` to
react, never awaited further), one that raises is logged; the next stage runs either way.
Each stage logs how long it took. ``daemon.shutdown_timeout_s`` caps the whole: once it is
spent, and after a second SIGTERM/SIGINT, the remaining stages are *forced*: cut to their
``forced_s`` (0 for the waiting stages, which are skipped; a second to close the clients)
while ``close_store`` keeps its full budget, so the database is closed before the process
exits. A shutdown with any stage abandoned, failed, skipped or leaving a placement
unanswered is not orderly: the run is not recorded clean, and a LIVE restart reconciles.

:func:`worst_case_s` is the longest a shutdown can take; tests/test_shutdown.py checks that
it fits the systemd unit's ``TimeoutStopSec``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from heliosd.core.types import OrderState, utcnow

if TYPE_CHECKING:
    from heliosd.runtime.service import Service

log = logging.getLogger(__name__)

STOP_ACCEPTING_S = 2.0
SETTLE_PLACEMENTS_S = 6.0
DRAIN_S = 4.0
FLUSH_OUTBOX_S = 3.0
CLOSE_CLIENTS_S = 3.0
CLOSE_STORE_S = 2.0
# Forced (second signal, or the overall budget spent): closing sockets and sessions needs
# no waiting on anyone, a second is plenty; the store keeps its whole budget.
FORCED_CLOSE_CLIENTS_S = 1.0
# How long an abandoned stage's task gets to react to its cancellation before the next
# stage starts regardless (a task that ignores it is left behind, never awaited).
ABANDON_GRACE_S = 0.25
# How often the outbox flush (and the wait for market orders) looks again.
OUTBOX_POLL_S = 0.05

StageFn = Callable[[float], Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class Stage:
    """One step of the shutdown: ``run(budget_s)`` within ``budget_s`` seconds."""

    name: str
    budget_s: float
    run: StageFn
    forced_s: float = 0.0  # its budget once forced; 0: skipped
    always: bool = False  # runs with its full budget even when forced (the store)


BUDGETS: dict[str, float] = {
    "stop_accepting": STOP_ACCEPTING_S,
    "settle_placements": SETTLE_PLACEMENTS_S,
    "drain": DRAIN_S,
    "flush_outbox": FLUSH_OUTBOX_S,
    "close_clients": CLOSE_CLIENTS_S,
    "close_store": CLOSE_STORE_S,
}
FORCED: dict[str, float] = {"close_clients": FORCED_CLOSE_CLIENTS_S, "close_store": CLOSE_STORE_S}


def worst_case_s(total_s: float) -> float:
    """The longest a shutdown can take with ``daemon.shutdown_timeout_s = total_s``: the
    stages within the cap (each at most its budget), then forced stages past it, plus an
    abandon grace per stage."""
    capped = min(sum(BUDGETS.values()), total_s + sum(FORCED.values()))
    return capped + ABANDON_GRACE_S * len(BUDGETS)


# --------------------------------------------------------------------------- the API gate


class ShutdownGate:
    """Refuses the control API's new requests once closed, except reads and the actions that
    only take risk away (emergency stop, halt, cancelling an order).

    Open (the default), it lets everything through. Closed, it answers 503 ``shutting_down``
    to every other request: reads (health, orders, positions, the mode ...) change
    nothing and help an operator watch the shutdown. ``GET /api/events`` is refused too: a
    new event stream would only be cut when the API closes a few seconds later. Requests
    already running when the gate closes finish (an order being placed gets its answer).
    """

    READ_METHODS = frozenset({"GET"})
    REFUSED_READS = frozenset({"/api/events"})
    # What only takes risk away always answers: a person pulling the emergency stop, halting
    # or cancelling an order must never be told to wait for a shutdown that may take 20 s
    # (or hang) while orders rest at VALR. The clients and the store stay open until the
    # last two stages, so these still reach the venue and the database.
    SAFETY_ACTIONS = frozenset({("POST", "/api/trading/emergency-stop"),
                                ("POST", "/api/trading/halt")})  # fmt: skip
    _CANCEL = re.compile(r"^/api/orders/[0-9]+$")

    def __init__(self) -> None:
        self.closed_at: datetime | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = utcnow()

    def allows(self, method: str, path: str) -> bool:
        if not self.closed:
            return True
        if (method, path) in self.SAFETY_ACTIONS or (
            method == "DELETE" and self._CANCEL.match(path)
        ):
            return True
        return method in self.READ_METHODS and path not in self.REFUSED_READS

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.allows(request.method, request.path):
            return await handler(request)
        from heliosd.control.app import json_error

        return json_error(
            503,
            "shutting_down",
            "heliosd is shutting down and takes no new requests; reads still answer until"
            " the control API closes",
            {"since": self.closed_at.isoformat() if self.closed_at else None},
        )


# --------------------------------------------------------------------------- the runner


class Shutdown:
    """Runs ``stages`` in order, each within its budget; see the module docstring."""

    def __init__(self, stages: list[Stage], *, total_s: float) -> None:
        self.stages = stages
        self.total_s = total_s
        self.problems: list[str] = []  # why the shutdown was not orderly (empty: it was)
        self.durations: dict[str, float] = {}
        self._forced = asyncio.Event()
        self._forced_why = ""

    @property
    def forced(self) -> bool:
        return self._forced.is_set()

    def force(self, why: str) -> None:
        """Cut the remaining stages short (a second signal); the store still closes."""
        if not self._forced.is_set():
            self._forced_why = why
            self._forced.set()

    def problem(self, text: str) -> None:
        self.problems.append(text)
        log.warning("shutdown: %s", text)

    async def run(self) -> bool:
        """Every stage, in order; True when the shutdown was orderly."""
        deadline = time.monotonic() + self.total_s
        for stage in self.stages:
            budget = stage.budget_s
            if not stage.always:
                if not self.forced and time.monotonic() >= deadline:
                    self.force(f"daemon.shutdown_timeout_s ({self.total_s:g} s) spent")
                if self.forced:
                    budget = min(budget, stage.forced_s)
                else:
                    budget = min(budget, max(0.0, deadline - time.monotonic()))
            if budget <= 0:
                self.durations[stage.name] = 0.0
                self.problem(f"stage {stage.name} skipped ({self._forced_why or 'no time left'})")
                continue
            await self._run_stage(stage, budget)
        if self.problems:
            log.warning("shutdown was not orderly (%s): the next start treats this run as"
                        " unclean", "; ".join(self.problems))  # fmt: skip
        return not self.problems

    async def _run_stage(self, stage: Stage, budget: float) -> None:
        started = time.monotonic()
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            stage.run(budget), name=f"heliosd-shutdown-{stage.name}"
        )
        waits: set[asyncio.Future[Any]] = {task}
        forced = None
        if not stage.always and not self.forced:
            # A second signal ends this stage's wait at once, not at the end of its budget.
            forced = asyncio.ensure_future(self._forced.wait())
            waits.add(forced)
        try:
            await asyncio.wait(waits, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if forced is not None:
                forced.cancel()
        took = time.monotonic() - started
        self.durations[stage.name] = took
        if not task.done():
            # Whatever it ends with later is logged by nobody: retrieve it so asyncio does
            # not warn about it at exit.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            task.cancel()
            # Give it a moment to unwind; one that ignores the cancellation is left behind.
            await asyncio.wait({task}, timeout=ABANDON_GRACE_S)
            why = (
                f"cut short by {self._forced_why}"
                if self.forced and forced is not None and forced.done()
                else f"over its {budget:g} s budget"
            )
            self.problem(f"stage {stage.name} abandoned after {took:.2f} s: {why}")
            return
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            log.error("shutdown stage %s failed after %.2f s: %r", stage.name, took, exc,
                      exc_info=exc)  # fmt: skip
            self.problems.append(f"stage {stage.name} failed: {exc!r}")
            return
        log.info("shutdown stage %s done in %.2f s (budget %g s)", stage.name, took, budget)


# --------------------------------------------------------------------------- the stages


def service_stages(service: Service) -> list[Stage]:
    """The daemon's stages for ``service`` (one :class:`Service` per daemon)."""

    engine_stop: list[asyncio.Task[Any]] = []
    # The customerOrderIds of the placements in progress when the shutdown began.
    in_progress: list[str] = []

    async def stop_accepting(budget: float) -> None:
        service.gate.close()
        if service.permits is not None:
            in_progress.extend(p.label for p in service.permits.outstanding())
        # From here the shutdown's engine stop does not overwrite the operator's choice.
        service._closing = True
        await service._shutdown_hooks()
        engine = service.engine
        if engine is None:
            return
        # The engine takes no new tick from now on, but a tick submitting an order is let
        # finish (cancelling it between the store and the venue would leave an order only
        # reconciliation can tell about): the next stage waits for it with the placements.
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            engine.stop(actor="shutdown")
        )
        engine_stop.append(task)
        await asyncio.wait({task}, timeout=max(0.0, budget - 0.1))

    async def settle_placements(budget: float) -> None:
        until = time.monotonic() + max(0.0, budget - 0.1)  # a moment left to log and return
        permits = service.permits
        if permits is not None:
            unresolved = await permits.settle(max(0.0, until - time.monotonic()))
            if unresolved:
                service.shutdown_problems.append("placements unanswered")
                log.error("shutdown: %d placement(s) still unanswered after %.1f s: %s; their"
                          " outcome is checked against VALR at the next start",
                          len(unresolved), budget,
                          ", ".join(sorted(p.label for p in unresolved)))  # fmt: skip
            parked = permits.parked()
            if parked:
                log.warning("shutdown: %d placement(s) sent with an unknown outcome: %s",
                            len(parked), ", ".join(p.label for p in parked))  # fmt: skip
            await await_market_outcomes(until)
        pending = [t for t in engine_stop if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, until - time.monotonic()))
            if not all(t.done() for t in pending):
                service.shutdown_problems.append("engine still stopping")
                log.error("shutdown: the engine's strategy has not stopped yet")

    async def await_market_outcomes(until: float) -> None:
        store = service.store
        if not in_progress or store is None:
            return
        labels = tuple(in_progress)
        while True:
            waiting = await store.read(partial(_open_market_orders, labels=labels))
            if not waiting or time.monotonic() >= until:
                break
            await asyncio.sleep(OUTBOX_POLL_S)
        if waiting:
            # Not a problem for the run's record: the stream or the next start's
            # reconciliation settles them; the operator is told which.
            log.warning("shutdown: market order(s) answered but not yet final: %s",
                        ", ".join(waiting))  # fmt: skip

    async def drain(_budget: float) -> None:
        for task in list(service._background):
            task.cancel()
        for sink in service.sinks.values():
            await sink.drain()
        if service.runner is not None:
            await service.runner.flush_marks()
        # Jobs commit in the order they were queued: once this no-op commits, so has every
        # write queued before it.
        if service.store is not None:
            await service.store.write(lambda _conn: None)

    async def flush_outbox(budget: float) -> None:
        notifications = service.notifications
        if notifications is None:
            return
        store = service.store
        assert store is not None  # the notifications are built on it
        max_attempts = service.settings.notify.max_attempts
        until = time.monotonic() + max(0.0, budget - 0.5)
        notifications.wake()
        while time.monotonic() < until:
            now = utcnow().isoformat(timespec="microseconds")  # the outbox's time format
            due = await store.read(partial(_due_count, now=now, max_attempts=max_attempts))
            if not due:
                break
            await asyncio.sleep(OUTBOX_POLL_S)
        else:
            log.warning("shutdown: notifications still due; they stay in the outbox and are"
                        " sent after the next start")  # fmt: skip
        await notifications.close(grace_s=0.4)

    async def close_clients(_budget: float) -> None:
        # The rest of the start's exit stack, in reverse: control API, fill check, stops,
        # exchange clients, notifications, the clean-run marker (only if orderly so far).
        await service.stack.aclose()

    async def close_store(_budget: float) -> None:
        store = service.store
        if store is not None:
            await store.close()  # idempotent: a no-op when close_clients closed it
            log.info("store closed")

    return [
        Stage("stop_accepting", STOP_ACCEPTING_S, stop_accepting),
        Stage("settle_placements", SETTLE_PLACEMENTS_S, settle_placements),
        Stage("drain", DRAIN_S, drain),
        Stage("flush_outbox", FLUSH_OUTBOX_S, flush_outbox),
        Stage("close_clients", CLOSE_CLIENTS_S, close_clients, forced_s=FORCED_CLOSE_CLIENTS_S),
        Stage("close_store", CLOSE_STORE_S, close_store, always=True),
    ]


def _open_market_orders(conn: sqlite3.Connection, labels: tuple[str, ...]) -> list[str]:
    """The market orders among ``labels`` whose outcome is not all stored yet: still open,
    or final with fewer fills recorded than their filled quantity, or filled with none (a
    status lookup can tell "filled" before the stream brings the fills)."""
    rows = [
        row
        for label in labels  # a few at most: the placements in progress at a SIGTERM
        for row in conn.execute(
            "SELECT id, customer_order_id, state, filled_quantity FROM orders"
            " WHERE customer_order_id = ? AND type = 'MARKET'",
            (label,),
        )
    ]
    waiting = []
    for order_id, cid, state, filled in rows:
        if state in _OPEN:
            waiting.append(str(cid))
            continue
        got = conn.execute("SELECT quantity FROM fills WHERE order_id = ?", (order_id,))
        stored = sum((Decimal(q) for (q,) in got), Decimal(0))
        # A lookup may say "filled" before any fill quantity is known (0 then).
        if stored < Decimal(filled) or (state == OrderState.FILLED and stored == 0):
            waiting.append(str(cid))
    return waiting


_OPEN = frozenset(str(s) for s in OrderState if s.is_open)


def _due_count(conn: sqlite3.Connection, now: str, max_attempts: int) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?"
        " AND attempts < ?",
        (now, max_attempts),
    ).fetchone()
    return int(row[0]) if row else 0


__all__ = [
    "ABANDON_GRACE_S",
    "BUDGETS",
    "FORCED",
    "Shutdown",
    "ShutdownGate",
    "Stage",
    "service_stages",
    "worst_case_s",
]
