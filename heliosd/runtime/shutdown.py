"""Staged shutdown: a short, ordered list of named stages, each with its own time budget.

SIGTERM/SIGINT (``systemctl stop``) runs the daemon's stages
(:func:`heliosd.runtime.shutdown_stages.service_stages`) through :class:`Shutdown`, in this
order (budgets in seconds, :data:`BUDGETS`):

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
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from heliosd.core.types import utcnow

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


__all__ = [
    "ABANDON_GRACE_S",
    "BUDGETS",
    "FORCED",
    "Shutdown",
    "ShutdownGate",
    "Stage",
    "worst_case_s",
]
