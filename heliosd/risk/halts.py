"""Halts and resume: one of the base classes of :class:`heliosd.risk.stops.Stops`.

The daily-loss halt, the operator's halt, breaker expiry, and resume. Resume clears every
latched breaker with a reason, audited, unless ``resume_blocked`` names a reason it may not
(an unclean exit not yet reconciled).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.core.errors import HaltedError
from heliosd.core.types import Mode, utcnow
from heliosd.notify import journal
from heliosd.notify.notices import halt_event, resume_event
from heliosd.risk import state as trading
from heliosd.risk.breakers import DAILY_LOSS, DRAWDOWN, EMERGENCY, Breakers, clear_sql, trip_sql
from heliosd.store import Store
from heliosd.trading.permits import Permit, PermitBoard

if TYPE_CHECKING:
    from heliosd.risk.stops import EnqueueFn


class StopHalts:
    """Halts, breaker expiry and resume of :class:`heliosd.risk.stops.Stops` (a base class)."""

    # Fields of Stops (heliosd.risk.stops); _lock is set by its __post_init__.
    store: Store
    breakers: Breakers
    enqueue: Callable[[], EnqueueFn]
    publish: Callable[[dict[str, Any]], None]
    stop_engine: Callable[[], Awaitable[None]]
    resume_blocked: Callable[[], str | None]
    on_resume: Callable[[], Awaitable[dict[str, Any]]] | None
    _lock: asyncio.Lock

    if TYPE_CHECKING:  # defined by Stops and StopFollowUp

        @property
        def board(self) -> PermitBoard: ...
        def settle_timeout(self) -> float: ...
        def _spawn(self, coro: Awaitable[Any]) -> None: ...
        def _to_paper(self, conn: sqlite3.Connection, who: str, why: str) -> None: ...
        async def cancel_everything(
            self,
            modes: Sequence[Mode],
            attempts: int = 3,
            *,
            precancelled: Mapping[Mode, int] | None = None,
            cancel_again: Collection[Mode] = (),
        ) -> tuple[int, list[dict[str, Any]] | None, list[str]]: ...
        async def unknown_placements(self) -> list[Permit]: ...

    # ------------------------------------------------------------------ monitors' actions

    async def halt(self, mode: Mode, breaker: str, reason: str, until: datetime | None) -> None:
        """Daily loss: leave LIVE, stop the engine, cancel that mode's open orders, refuse
        new risk."""
        enqueue = self.enqueue()

        def tx(conn: sqlite3.Connection) -> None:
            trip_sql(conn, breaker, mode=mode, reason=reason, until=until)
            self._to_paper(conn, "heliosd", f"halt ({breaker}): {reason}")
            st.audit(conn, actor="heliosd", action="halt", outcome="tripped", reason=reason)
            enqueue(conn, halt_event(breaker=breaker, reason=reason, mode=mode, until=until))

        await self.store.write(tx)
        journal.event("halt", breaker=breaker, mode=mode, by="heliosd", reason=reason, until=until)
        self.breakers.committed_trip(breaker, reason, until)
        self.board.revoke_stale()  # the trip is a new epoch: permits checked before it are void
        if until is not None:
            self.schedule_expiry(until)
        self.publish({"type": "halt", "breaker": breaker, "reason": reason})
        await self.stop_engine()
        await self.cancel_everything([mode])

    def schedule_expiry(self, until: datetime) -> None:
        """When a breaker's ``until`` passes, re-derive the row (it says ACTIVE again)."""

        async def later() -> None:
            await asyncio.sleep(max((until - utcnow()).total_seconds(), 0.0) + 0.05)
            await self.sync_expired()

        self._spawn(later())

    async def sync_expired(self) -> bool:
        """Re-derive the trading state if a breaker has expired since the row was written;
        True when that changed the row (a new epoch)."""

        def tx(conn: sqlite3.Connection) -> bool:
            row = trading.read(conn)
            derived = trading.derive(trading.active_breakers(conn, utcnow()))
            if (row.state, row.reason) == derived:
                return False
            trading.sync(conn)
            st.audit(conn, actor="heliosd", action="breaker_expired", outcome="synced",
                     reason=f"{row.state} -> {derived[0]}")  # fmt: skip
            return True

        changed = await self.store.write(tx)
        if changed:
            self.breakers.journal_state("expired")
            self.board.revoke_stale()
            self.publish(
                {"type": "mode", "trading_state": str(self.store.mode_state().trading_state)}
            )
        return changed

    async def operator_halt(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """An operator's HALTED: nothing but cancels until a resume; LIVE becomes PAPER in
        the same transaction (open orders stay: an emergency stop is the one that cancels).

        Like the emergency stop it then revokes every permit, waits (bounded) for the
        placements already on the wire, and stops the engine, so that when it answers no
        order checked before it can still be sent, and the ones that were already sent and
        have not answered are named (``unresolved_placements``)."""
        who = str(actor)
        enqueue = self.enqueue()

        def tx(conn: sqlite3.Connection) -> trading.StateRow:
            trip_sql(conn, trading.OPERATOR_HALT, mode=None, reason=reason)
            self._to_paper(conn, who, f"halt: {reason}")
            st.audit(conn, actor=who, action="halt", outcome="tripped", reason=reason)
            enqueue(conn, halt_event(breaker=trading.OPERATOR_HALT, reason=reason))
            return trading.read(conn)

        was = self.store.mode_state().mode
        row = await self.store.write(tx)
        journal.event("halt", breaker=trading.OPERATOR_HALT, by=actor, reason=reason,
                      epoch=row.epoch)  # fmt: skip
        if was is not Mode(row.mode):
            journal.event("mode_change", from_=was, to=row.mode, by=actor, reason=f"halt: {reason}")
        self.breakers.committed_trip(trading.OPERATOR_HALT, reason, None)
        self.board.revoke_all(f"trading halted by {who}: {reason}")
        unresolved = await self.board.settle(self.settle_timeout())
        unresolved += await self.unknown_placements()
        await self.stop_engine()
        self.publish({"type": "halt", "breaker": trading.OPERATOR_HALT, "reason": reason})
        return {"halted": True, "breaker": trading.OPERATOR_HALT, "reason": reason,
                "trading_state": str(row.state), "state_reason": row.reason,
                "epoch": row.epoch,
                "unresolved_placements": sorted(p.label for p in unresolved)}  # fmt: skip

    async def resume(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """Clear every latched breaker; answers ``{"cleared": n, "epoch", ...on_resume}``.

        Refused (HaltedError) while ``resume_blocked`` names a reason. Serialized with the
        emergency stop: a resume never lands between a stop's latch and its cancels (whose
        cancel-all would then cancel orders placed after the resume, and whose answer would
        say a state that no longer holds).
        """
        async with self._lock:
            return await self._resume(reason=reason, actor=actor)

    async def _resume(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        who = str(actor)
        blocked = self.resume_blocked()
        if blocked:
            await self.store.write(lambda c: st.audit(
                c, actor=who, action="resume", outcome="refused", reason=reason,
                details={"blocked": blocked},
            ))  # fmt: skip
            raise HaltedError(f"Cannot resume: {blocked}", details={"blocked": blocked})
        extra = await self.on_resume() if self.on_resume is not None else {}
        names = sorted({EMERGENCY, DAILY_LOSS, DRAWDOWN, trading.OPERATOR_HALT,
                        *self.breakers.states()})  # fmt: skip
        cleared_names = sorted(self.breakers.states())  # what the notification says it lifts
        enqueue = self.enqueue()

        def tx(conn: sqlite3.Connection) -> tuple[int, list[str], trading.StateRow]:
            active = [r[0] for r in conn.execute(
                "SELECT name FROM breakers WHERE cleared_at IS NULL"
            )]  # fmt: skip
            every = sorted({*names, *active})
            n = clear_sql(conn, every, actor=who, reason=reason)
            st.audit(conn, actor=who, action="resume", outcome="cleared", reason=reason,
                     details={"cleared": n, **extra})  # fmt: skip
            enqueue(conn, resume_event(actor=who, reason=reason, breakers=cleared_names))
            return n, every, trading.read(conn)

        cleared, every, row = await self.store.write(tx)
        journal.event("resume", by=actor, reason=reason, cleared=",".join(cleared_names) or "-",
                      epoch=row.epoch)  # fmt: skip
        self.breakers.committed_clear(every)
        self.board.revoke_stale()
        self.publish({"type": "resume", "reason": reason})
        return {**extra, "cleared": cleared, "epoch": row.epoch}
