"""After an emergency stop: one of the base classes of :class:`heliosd.risk.stops.Stops`.

While the latch holds, cancel again (with backoff) until the venue is verified empty; each
placement still on the wire when the stop answered is cancelled by its id once it answers;
the parked placements whose outcome is unknown (P5) are named.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from heliosd import store as st
from heliosd.core.protocols import ExchangeClient
from heliosd.core.types import Mode, OrderState
from heliosd.notify.notices import emergency_stop_event
from heliosd.risk.breakers import EMERGENCY, Breakers
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.permits import Permit, PermitBoard

if TYPE_CHECKING:
    from heliosd.risk.stops import EnqueueFn

log = logging.getLogger("heliosd.risk.stops")  # one logger for all of the stops

# A stop that could not verify the venue empty keeps cancelling, with this backoff, for as
# long as its latch holds (the interleaving search found a stop during a 5xx storm that
# answered "could not check" and never cancelled again, leaving orders resting at VALR).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 15.0
# How long the follow-up waits for a placement still on the wire after a stop before it
# gives up on cancelling it by id (the reconciliation of open orders still judges it).
FOLLOW_UP_S = 120.0


class StopFollowUp:
    """The follow-up cancels of :class:`heliosd.risk.stops.Stops` (a base class)."""

    # Fields of Stops (heliosd.risk.stops).
    store: Store
    breakers: Breakers
    clients: Mapping[Mode, ExchangeClient]
    enqueue: Callable[[], EnqueueFn]

    if TYPE_CHECKING:  # defined by Stops

        @property
        def board(self) -> PermitBoard: ...
        async def cancel_everything(
            self,
            modes: Sequence[Mode],
            attempts: int = 3,
            *,
            precancelled: Mapping[Mode, int] | None = None,
            cancel_again: Collection[Mode] = (),
        ) -> tuple[int, list[dict[str, Any]] | None, list[str]]: ...

    async def _keep_cancelling(
        self, unresolved: list[Permit], modes: Sequence[Mode], who: str, reason: str
    ) -> None:
        """Until the venue is verified empty (or a resume lifts the latch): cancel and check
        again, with backoff. Placements still on the wire are waited for first, so the
        cancel that follows sees them. Audited and notified once verified.

        A resume ends the account-wide cancels (they would cancel the orders placed since,
        which nobody asked to stop), but not the promise the stop's answer made about its
        ``unresolved_placements``: each is still cancelled by its id once it answers."""
        await self._cancel_until_verified(unresolved, modes, who, reason)
        if unresolved:
            await self._cancel_placements(unresolved, who, reason)

    async def _cancel_until_verified(
        self, unresolved: list[Permit], modes: Sequence[Mode], who: str, reason: str
    ) -> None:
        delay = RETRY_FIRST_S
        while EMERGENCY in self.breakers.states():
            if any(p.on_wire > 0 and not p.released for p in unresolved):
                await self.board.settle(delay)
            else:
                await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            if EMERGENCY not in self.breakers.states():
                return
            try:
                cancelled, remaining, notes = await self.cancel_everything(modes)
            except Exception:
                log.exception("emergency stop: cancelling again failed; trying again")
                continue
            pending = [p.label for p in unresolved if p.on_wire > 0 and not p.released]
            if any(p.parked for p in unresolved):  # P5: until reconciliation settles them
                pending += [p.label for p in await self.unknown_placements() if p in unresolved]
            if remaining is None or remaining or pending:
                log.warning("emergency stop: venue not yet verified empty (%s)",
                            "; ".join(notes) or f"{len(remaining or [])} open")  # fmt: skip
                continue
            enqueue = self.enqueue()

            def verified(
                conn: sqlite3.Connection, cancelled: int = cancelled, enqueue: EnqueueFn = enqueue
            ) -> None:
                st.audit(conn, actor=who, action="emergency_stop", outcome="verified",
                         reason=reason, details={"cancelled": cancelled,
                         "placements": sorted(p.label for p in unresolved)})  # fmt: skip
                enqueue(conn, emergency_stop_event(
                    reason=reason, actor=who, cancelled_orders=cancelled,
                    remaining_open_orders=0, checked=True,
                ))  # fmt: skip

            await self.store.write(verified)
            log.warning("emergency stop: venue verified empty after cancelling again")
            return

    async def unknown_placements(self) -> list[Permit]:
        """The parked permits (P5) whose order is still SENT with no exchange id: sent, and
        nothing has said what became of it. Those whose row has moved on are resolved."""
        board = self.board
        parked = board.parked()
        if not parked:
            return []
        labels = [p.label for p in parked]

        def still(conn: sqlite3.Connection) -> set[str]:
            sql = ("SELECT 1 FROM orders WHERE customer_order_id = ? AND state = 'sent'"
                   " AND exchange_order_id IS NULL")  # fmt: skip
            return {cid for cid in labels if conn.execute(sql, (cid,)).fetchone() is not None}

        unknown = await self.store.read(still)
        for permit in parked:
            if permit.label not in unknown:
                board.resolve(permit)
        return [p for p in parked if p.label in unknown]

    async def _cancel_placements(self, unresolved: list[Permit], who: str, reason: str) -> None:
        """Wait (bounded) for each unresolved placement to answer, then cancel it by id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_UP_S
        while any(p.on_wire > 0 and not p.released for p in unresolved):
            left = deadline - loop.time()
            if left <= 0:
                break
            await self.board.settle(min(left, 1.0))
        labels = sorted(p.label for p in unresolved)
        for label in labels:
            await self._cancel_placement(label)
        await self.store.write(lambda c: st.audit(
            c, actor=who, action="emergency_stop", outcome="follow_up", reason=reason,
            details={"placements": labels, "latched": EMERGENCY in self.breakers.states()},
        ))  # fmt: skip

    async def _cancel_placement(self, cid: str) -> None:
        """Cancel the stored order ``cid`` at its own venue if it is open there."""

        def find(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT id FROM orders WHERE customer_order_id = ?",
                               (cid,)).fetchone()  # fmt: skip
            return None if row is None else od.get_order_row(conn, int(row[0]))

        try:
            order = await self.store.read(find)
            if order is None or not OrderState(order["state"]).is_open:
                return
            await self.clients[Mode(order["mode"])].cancel(
                order["pair"], exchange_order_id=order["exchange_order_id"],
                customer_order_id=cid,
            )  # fmt: skip
            log.warning("cancelled %s, a placement that answered after an emergency stop", cid)
        except Exception:
            log.exception("could not cancel %s after an emergency stop; check the venue", cid)
