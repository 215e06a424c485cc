"""ExecutionRouter: every order, manual or automatic, takes this one path.

1. Read the mode, trading state and epoch from the database *now* (``Store.mode_state``: a
   ~1 us ``PRAGMA data_version`` unless something committed). A LIVE without a sealed,
   confirmed switch is refused and the operator is told (out-of-band SQL).
2. Run every risk rule (fail closed; Caps take the smallest quantity; any Reject rejects) plus
   the core's own latch check on the trading state (:mod:`heliosd.risk.state`): HALTED refuses
   every order; REDUCING passes only orders that reduce a holding.
3. Store the order (intent, customer_order_id, mode, verdicts) in a transaction that checks
   the epoch is still the one the order was checked under (else it is stored REJECTED and
   never sent), issue its send permit for that (mode, epoch) (:mod:`heliosd.trading.permits`), and
   only then send it to the client of *that* mode. The permit is checked right before
   ``client.place``; a client that does not declare ``honours_permits = True`` has its whole
   ``place`` call marked as on the wire, so a stop's settle waits for it. Clients are looked
   up per order: nothing caches "the current client", so a switch takes effect on the very
   next order.

Invariant: no order reaches a client under an epoch other than the one it was checked in
(the permit's), and none reaches a client while the trading state is HALTED.

Base classes of ExecutionRouter: :mod:`heliosd.trading.router_risk` (step 2) and
:mod:`heliosd.trading.router_reports` (journal lines, listeners, the integrity alert).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from heliosd.core.config import Settings
from heliosd.core.errors import (
    AuthError,
    ExchangeRejected,
    HeliosError,
    ModeIntegrityError,
    OutcomeUnknownError,
    PermitRevoked,
    RiskRejected,
    TransientError,
)
from heliosd.core.protocols import (
    Event,
    ExchangeClient,
    LedgerView,
    MarketView,
    RiskRule,
)
from heliosd.core.types import (
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    PlaceResult,
    Side,
    Verdict,
    reduces_position,
    utcnow,
)
from heliosd.notify import journal
from heliosd.notify.notices import order_event, risk_rejected_event
from heliosd.risk import state as trading
from heliosd.risk.breakers import Breakers
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.permits import Permit, PermitBoard
from heliosd.trading.router_reports import RouterReports
from heliosd.trading.router_reports import RouterTimings as RouterTimings
from heliosd.trading.router_risk import Evaluation as Evaluation
from heliosd.trading.router_risk import RiskEvaluation

log = logging.getLogger(__name__)

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]


def _closes(intent: OrderIntent, position: Decimal) -> bool:
    """What the closing path sends: a market SELL of at most the (positive) holding."""
    return (
        intent.side is Side.SELL
        and intent.type is OrderType.MARKET
        and intent.price is None
        and reduces_position(intent, position)
    )


def _no_release() -> None:
    """Nothing was reserved (a closing order refused before evaluation)."""


class ExecutionRouter(RiskEvaluation, RouterReports):
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        clients: Mapping[Mode, ExchangeClient],
        ledgers: Mapping[Mode, LedgerView],
        market: MarketView,
        breakers: Breakers,
        counters: od.OrderCounters,
        rules: Sequence[RiskRule] = (),
        enqueue: EnqueueFn | None = None,
        on_order: Callable[[dict[str, Any], str], None] | None = None,
        on_integrity: Callable[[str], Awaitable[None]] | None = None,
        permits: PermitBoard | None = None,
        timings: RouterTimings | None = None,
    ) -> None:
        self._store = store
        self._timings = timings
        self._settings = settings
        self._clients = clients
        self._ledgers = ledgers
        self._market = market
        self._breakers = breakers
        self._counters = counters
        self._evaluating = asyncio.Lock()
        self.rules = tuple(rules)
        self._enqueue = enqueue
        self._on_order = on_order
        self._on_integrity = on_integrity
        self._rule_timeout = float(settings.risk.rule_timeout_s)
        self._integrity_reported: tuple[str, str, str, int] | None = None
        if permits is None:  # a router built on its own (tests, tools) gets its own board

            def current() -> tuple[Mode, int]:
                ms = store.mode_state()
                return ms.mode, ms.epoch

            permits = PermitBoard(current)
        self.permits = permits

    # ------------------------------------------------------------------ submit

    async def submit(self, intent: OrderIntent, *, actor: str) -> dict[str, Any]:
        """Evaluate, store, send. Returns the stored ORDER, in the mode the database holds
        now (there is no way to name another mode here: the core's own closing orders go
        through :meth:`submit_closing`, which keeps every check).

        Raises RiskRejected (never sent), PermitRevoked (never sent: the trading state
        changed after the check), ExchangeRejected (the venue refused it at once),
        TransientError / AuthError (not placed), each with ``details["order"]``.
        """
        return await self._submit(intent, actor, None)

    async def submit_closing(
        self, intent: OrderIntent, *, actor: str, mode: Mode
    ) -> dict[str, Any]:
        """An order of the core's own that closes a holding on ``mode``'s account, whatever
        the current mode (an emergency stop's flatten sells LIVE holdings on the LIVE account
        although the mode is already PAPER; the operator closes LIVE holdings after a stop).

        It must be a market SELL of at most what that account holds (never a buy, never a
        limit: this path is not a way to trade on another account, only to get out); its
        permit is bound to the epoch but not the mode, and it still takes every risk rule
        and the latch check. Integrity still holds: while the database says LIVE without a
        confirmed switch, nothing is sent, closing orders included. Callers: the emergency
        stop's flatten and :mod:`heliosd.trading.close` (``POST /api/positions/close``),
        both audited; nothing reachable from an ordinary order route.
        """
        return await self._submit(intent, actor, mode)

    async def _submit(
        self, intent: OrderIntent, actor: str, closing: Mode | None
    ) -> dict[str, Any]:
        arrived = time.perf_counter()
        state = self._store.mode_state()
        mode = state.mode if closing is None else closing
        if state.mode is Mode.LIVE and not state.verified:
            reason = (
                "the database says LIVE but no confirmed switch to LIVE is recorded (changed "
                "outside heliosd?); orders are refused until the mode is set through heliosd"
            )
            # Once per untrusted row, not per refused order: data_version moves with every
            # commit (each refused order's own INSERT among them), the row's fields do not.
            key = (str(state.mode), state.updated_at, state.updated_by, state.epoch)
            await self._report_integrity(key, reason)
            verdict = Verdict.reject("mode_integrity", reason)
            row = await self._store_order(
                od.NewOrder(mode, intent, intent.quantity, (verdict,), actor, OrderState.REJECTED)
            )
            journal.order("order_refused", row, rule="mode_integrity", reason=reason, by=actor)
            raise ModeIntegrityError(f"Order refused: {reason}", details={"order": row})

        release: Callable[[], None] = _no_release
        if closing is not None and not _closes(intent, self._ledgers[mode].position(intent.pair)):
            evaluation = Evaluation(mode, (Verdict.reject(
                "closing", f"a closing order must reduce a {mode} holding of {intent.pair}:"
                " a market SELL of at most what is held"
            ),), None, f"closing: a closing order must reduce a {mode} holding: a market SELL"
                " of at most what is held")  # fmt: skip
        else:
            # Evaluation and the reservation of what the order adds are one step: an order
            # evaluated meanwhile (this one waits for its commit below) must already see it,
            # or orders submitted together would each pass the cap alone. Uncontended, the
            # lock is taken without yielding; it only serializes orders whose rules await.
            async with self._evaluating:
                evaluation = await self.evaluate(intent, mode, state)
                if evaluation.quantity is not None:
                    release = self._counters.reserve(mode, intent, evaluation.quantity)
            if self._timings is not None:
                self._timings.observe_risk_path(time.perf_counter() - arrived)
            if closing is not None:
                # Stored with the order: this one was sent to the account it names, not by
                # the current mode (which may differ), and by whom.
                evaluation = evaluation._replace(verdicts=(Verdict.accept(
                    "closing", f"closes a {mode} holding by {actor} (mode now {state.mode})"
                ), *evaluation.verdicts))  # fmt: skip
        if evaluation.quantity is None:
            row = await self._store_order(
                od.NewOrder(mode, intent, intent.quantity, evaluation.verdicts, actor,
                            OrderState.REJECTED),
                event="risk_rejected" if mode is Mode.LIVE else None,
                event_text=evaluation.reason,
            )  # fmt: skip
            journal.order("order_refused", row, rule=journal.refusal(row["verdicts"])[0],
                          reason=evaluation.reason, by=actor)  # fmt: skip
            raise RiskRejected(
                f"Order refused by risk rules: {evaluation.reason}",
                details={"order": row, "verdicts": row["verdicts"]},
            )

        epoch = state.epoch
        try:
            row = await self._store_order(
                od.NewOrder(mode, intent, evaluation.quantity, evaluation.verdicts, actor),
                epoch=epoch,
            )
        finally:
            release()  # the stored row (tracked by _store_order) reserves from here on
        if row["state"] == "rejected":  # the epoch moved between the check and the store
            journal.order("order_refused", row, rule="state_changed", reason=row["failed_reason"],
                          by=actor)  # fmt: skip
            raise PermitRevoked(f"Order refused: {row['failed_reason']}", details={"order": row})
        permit = self.permits.issue(
            mode, epoch, label=row["customer_order_id"], any_mode=closing is not None
        )
        request = PlaceRequest(
            customer_order_id=row["customer_order_id"], pair=intent.pair, side=intent.side,
            type=intent.type, quantity=evaluation.quantity, price=intent.price, permit=permit,
        )  # fmt: skip
        self._counters.sent(mode, utcnow())
        client = self._clients[mode]
        error: HeliosError | None = None
        # While this process is placing the order (answers lost, lookups, a resend: it can
        # take many seconds), reconciliation must not judge it from the venue's view.
        self._counters.placing.add(request.customer_order_id)
        unknown = False  # sent, outcome unknown: the permit is parked, not released (P5)
        error_text = ""
        sent_at = time.perf_counter()
        try:
            try:
                result = await self._place(client, request, permit)
            except PermitRevoked as exc:
                # Never sent (the client checks before every wire send): a business outcome.
                result = PlaceResult(OrderState.REJECTED, None, exc.message)
                error = exc
            except ExchangeRejected as exc:
                result = PlaceResult(OrderState.FAILED, None, exc.message)
                error = exc
            except OutcomeUnknownError as exc:
                # Sent, outcome unknown: leave it SENT; the stream or reconciliation settles it.
                result = PlaceResult(OrderState.SENT, None, "")
                error_text = f"outcome unknown: {exc}"  # journaled; the row keeps no reason
                unknown = True
            except (TransientError, AuthError) as exc:
                result = PlaceResult(OrderState.FAILED, None, exc.message)
                error = exc
            except asyncio.CancelledError:
                # Cancelled (a shutdown, the engine stopping) after a request went out: the
                # order may be at the venue, so its outcome is unknown (P5: parked below).
                unknown = self._cancelled_on_wire(row["id"], mode, permit)
                raise
            except Exception as exc:
                # A plugin client broke its contract. It may have sent the order, so the order
                # stays SENT (reconciliation settles it) and the caller gets a clear error.
                log.exception("exchange client %s raised on place()", getattr(client, "name", "?"))
                result = PlaceResult(OrderState.SENT, None, "")
                unknown = True
                error = TransientError(
                    f"exchange client failed: {type(exc).__name__}: {exc}; the order's outcome is"
                    " unknown until reconciliation"
                )
            if self._timings is not None and not isinstance(error, PermitRevoked):
                self._timings.observe_round_trip(
                    mode, str(result.state), time.perf_counter() - sent_at
                )
            row = await self._store.write(self._result_tx(row["id"], result, mode))
        finally:
            if unknown:
                permit.park()
            else:
                permit.release()
            self._counters.placing.discard(request.customer_order_id)
        self._counters.track(row)
        self._journal_result(row, error, error_text, actor)
        self._after_order(row, mode)
        if error is not None:
            if isinstance(error, ExchangeRejected):
                raise ExchangeRejected(
                    error.message, venue_code=error.venue_code, details={"order": row}
                )
            error.details = {**error.details, "order": row}
            raise error
        return row

    @staticmethod
    async def _place(client: ExchangeClient, request: PlaceRequest, permit: Permit) -> PlaceResult:
        """Check the permit right before the client; a client that does not declare
        ``honours_permits = True`` (a plugin's) has its whole place() marked as on the wire,
        so a stop's settle waits for it to answer (fail safe)."""
        if getattr(client, "honours_permits", False) is True:
            permit.check()
            return await client.place(request)
        permit.begin_send()
        try:
            return await client.place(request)
        finally:
            permit.end_send()

    def _result_tx(
        self, order_id: int, result: PlaceResult, mode: Mode
    ) -> Callable[[sqlite3.Connection], dict[str, Any]]:
        """Record the venue's answer; a LIVE order's notification commits with it."""
        enqueue = self._enqueue if mode is Mode.LIVE else None

        def tx(conn: sqlite3.Connection) -> dict[str, Any]:
            row = od.apply_result(conn, order_id, result)
            if enqueue is not None:
                enqueue(conn, order_event(row))
            return row

        return tx

    async def _store_order(
        self,
        order: od.NewOrder,
        *,
        event: str | None = None,
        event_text: str = "",
        epoch: int | None = None,
    ) -> dict[str, Any]:
        """Insert the order. With ``epoch``: only while the row is still at that epoch; an
        order checked under an older one is stored REJECTED with the reason instead."""
        enqueue = self._enqueue

        def tx(conn: sqlite3.Connection) -> dict[str, Any]:
            nonlocal order
            if epoch is not None:
                now = trading.read(conn)
                if now.epoch != epoch:
                    why = (
                        f"the trading state changed after the order was checked (epoch {epoch}"
                        f" -> {now.epoch}, now {now.state}); it was never sent"
                    )
                    order = dataclasses.replace(
                        order, state=OrderState.REJECTED,
                        verdicts=(*order.verdicts, Verdict.reject("state_changed", why)),
                    )  # fmt: skip
                    row = od.insert_order(conn, order)
                    conn.execute("UPDATE orders SET failed_reason = ? WHERE id = ?",
                                 (why, row["id"]))  # fmt: skip
                    return od.get_order_row(conn, row["id"])
            row = od.insert_order(conn, order)
            if event and enqueue is not None:
                enqueue(
                    conn,
                    risk_rejected_event(
                        order.mode,
                        order.intent,
                        order.verdicts,
                        reason=event_text,
                        order_id=row["id"],
                    ),
                )
            return row

        row = await self._store.write(tx)
        self._counters.track(row)
        if row["state"] == "rejected":
            self._after_order(row, order.mode)
        return row
