"""The daemon's shutdown stages: what each of the six does to the :class:`Service`.

:func:`service_stages` builds them for :class:`heliosd.runtime.shutdown.Shutdown` to run
(order, budgets and the forced rules: :mod:`heliosd.runtime.shutdown`), with the store reads
the waiting stages poll. Logs as ``heliosd.runtime.shutdown``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from heliosd.core.types import OrderState, utcnow
from heliosd.runtime.shutdown import (
    CLOSE_CLIENTS_S,
    CLOSE_STORE_S,
    DRAIN_S,
    FLUSH_OUTBOX_S,
    FORCED_CLOSE_CLIENTS_S,
    OUTBOX_POLL_S,
    SETTLE_PLACEMENTS_S,
    STOP_ACCEPTING_S,
    Stage,
)

if TYPE_CHECKING:
    from heliosd.runtime.service import Service

log = logging.getLogger("heliosd.runtime.shutdown")


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


__all__ = ["service_stages"]
