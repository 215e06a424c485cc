"""Stops: the emergency stop, the operator's halt, the daily-loss halt, resume.

Order of operations is the point of this module. The emergency stop:

1. commits its latch (the ``emergency`` breaker and, from LIVE, the switch to PAPER with its
   history row) in one transaction: a new epoch, so no permit issued before it is valid;
2. revokes every outstanding send permit (:meth:`PermitBoard.revoke_all`): every wait a
   placement is in ends at once and no placement may begin another wire send;
3. waits, bounded, for the placements already on the wire to answer (:meth:`settle`); what
   is still on the wire when the bound runs out is named (``unresolved_placements``) and a
   background follow-up cancels each one once it resolves;
4. stops the engine, cancels everything at each venue, verifies with the venue's open
   orders and cancels again what appeared (bounded), and answers what is still open, named.

Stops never take the mode orchestrator's lock: a LIVE switch checks, in the transaction that
writes LIVE, that the epoch its gates ran under is unchanged (:func:`heliosd.state.require`),
so a stop that committed first wins. Every committed breaker change also revokes the permits
it made stale. Resume clears every latched breaker with a reason, audited, unless
``resume_blocked`` names a reason not to.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from heliosd import orders as od
from heliosd import store as st
from heliosd.breakers import DAILY_LOSS, DRAWDOWN, EMERGENCY, Breakers, clear_sql, trip_sql
from heliosd.config import Settings
from heliosd.control.backend import Actor
from heliosd.errors import AuthError, HaltedError, HeliosError
from heliosd.notices import emergency_stop_event, halt_event, resume_event
from heliosd.permits import Permit, PermitBoard
from heliosd.protocols import Event, ExchangeClient, LedgerView, MarketView
from heliosd.state import OPERATOR_HALT, StateRow
from heliosd.state import read as read_state
from heliosd.store import Store
from heliosd.types import Mode, OpenOrder, OrderIntent, OrderState, OrderType, Side

log = logging.getLogger(__name__)

SYSTEM = Actor(None, "heliosd", "internal")

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]
Submit = Callable[..., Awaitable[dict[str, Any]]]

# How long the background follow-up waits for an unresolved placement before giving up on it
# (the reconciliation of open orders still judges it then).
FOLLOW_UP_S = 300.0
SETTLE_MAX_S = 2.0


def _never() -> str | None:
    return None


@dataclass
class Stops:
    store: Store
    settings: Settings
    breakers: Breakers
    clients: Mapping[Mode, ExchangeClient]
    ledgers: Mapping[Mode, LedgerView]
    market: MarketView
    enqueue: Callable[[], EnqueueFn]
    publish: Callable[[dict[str, Any]], None]
    stop_engine: Callable[[], Awaitable[None]]
    on_open_orders: Callable[[Mode, list[OpenOrder]], Awaitable[None]]
    submit: Submit
    permits: PermitBoard | None = None
    # Why a resume must not happen now (None: it may), e.g. an unclean exit not reconciled.
    resume_blocked: Callable[[], str | None] = _never
    # Run by a resume before it clears anything; its answer is merged into resume's answer
    # and its audit row's details. If it raises, nothing is cleared.
    on_resume: Callable[[], Awaitable[dict[str, Any]]] | None = None
    _follow_ups: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        if self.permits is None:
            self.permits = PermitBoard(lambda: ((ms := self.store.mode_state()).mode, ms.epoch))
        # Any committed trip or clear is a transition: permits of the old epoch end now (a
        # send would refuse them anyway; this ends their waits at once).
        self.breakers.on_committed.append(self.board.revoke_stale)

    @property
    def board(self) -> PermitBoard:
        assert self.permits is not None  # set in __post_init__
        return self.permits

    def settle_bound(self) -> float:
        return min(SETTLE_MAX_S, float(self.settings.valr.request_timeout_s))

    def emergency_reason(self) -> str | None:
        states = self.breakers.states()
        return states[EMERGENCY].reason if EMERGENCY in states else None

    # ------------------------------------------------------------------ monitors' actions

    async def halt(self, mode: Mode, breaker: str, reason: str, until: datetime | None) -> None:
        """Daily loss: stop the engine, cancel that mode's open orders, refuse new risk."""
        enqueue = self.enqueue()

        def tx(conn: sqlite3.Connection) -> None:
            trip_sql(conn, breaker, mode=mode, reason=reason, until=until)
            st.audit(conn, actor="heliosd", action="halt", outcome="tripped", reason=reason)
            enqueue(conn, halt_event(breaker=breaker, reason=reason, mode=mode, until=until))

        await self.store.write(tx)
        self.breakers.committed_trip(breaker, reason, until)
        self.publish({"type": "halt", "breaker": breaker, "reason": reason})
        await self.stop_engine()
        await self.cancel_everything([mode])

    async def breaker_emergency(self, mode: Mode, breaker: str, reason: str) -> None:
        """A monitor asked for the emergency stop (drawdown): record why, then stop."""
        await self.store.write(lambda c: trip_sql(c, breaker, mode=mode, reason=reason))
        self.breakers.committed_trip(breaker, reason, None)
        await self.emergency_stop(reason=f"{breaker}: {reason}", actor=SYSTEM)

    # ------------------------------------------------------------------ operator actions

    async def emergency_stop(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """Latch (new epoch), revoke and settle permits, go PAPER, stop the engine, cancel
        everything, verify; answer what is still open, named."""
        reason = reason or "emergency stop"
        async with self._lock:
            who = str(actor)
            enqueue = self.enqueue()
            store = self.store

            def tx(conn: sqlite3.Connection) -> StateRow:
                trip_sql(conn, EMERGENCY, mode=None, reason=reason)
                _to_paper(store, conn, who, f"emergency stop: {reason}")
                st.audit(conn, actor=who, action="emergency_stop", outcome="latched",
                         reason=reason)  # fmt: skip
                enqueue(conn, emergency_stop_event(reason=reason, actor=who))
                return read_state(conn)

            latched = await store.write(tx)
            self.breakers.committed_trip(EMERGENCY, reason, None)
            unresolved = await self._revoke_and_settle(f"emergency stop: {reason}")
            await self.stop_engine()
            cancelled, remaining, notes, left = await self.cancel_everything(
                [Mode.LIVE, Mode.PAPER]
            )
            flattened = await self.flatten() if self.settings.risk.flatten_on_emergency_stop else []
            named = [_open_json(mode, o) for mode, o in left]
            unresolved_ids = [p.label for p in unresolved]

            def done(conn: sqlite3.Connection) -> None:
                st.audit(conn, actor=who, action="emergency_stop", outcome="done", reason=reason,
                         details={"cancelled": cancelled, "remaining": remaining,
                                  "remaining_orders": named, "notes": notes,
                                  "unresolved_placements": unresolved_ids,
                                  "epoch": latched.epoch, "flattened": flattened})  # fmt: skip
                if remaining != 0 or unresolved_ids:  # orders may still be open: look now
                    enqueue(conn, emergency_stop_event(
                        reason=reason, actor=who, cancelled_orders=cancelled,
                        remaining_open_orders=remaining if remaining is not None else None,
                        checked=remaining is not None,
                    ))  # fmt: skip

            await store.write(done)
            self._follow_up(unresolved)
            self.publish({"type": "emergency_stop", "reason": reason,
                          "cancelled_orders": cancelled})  # fmt: skip
            now = store.mode_state()
            out: dict[str, Any] = {
                "halted": True, "mode": str(now.mode),
                "cancelled_orders": cancelled, "remaining_open_orders": remaining,
                "remaining": named, "unresolved_placements": unresolved_ids,
                "epoch": now.epoch, "trading_state": str(now.trading_state),
                "reason": reason, "notes": notes,
            }  # fmt: skip
            if flattened:
                out["flattened"] = flattened
            return out

    async def operator_halt(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """The operator's halt: HALTED (nothing but cancels) until a resume.

        Trips the ``halt`` breaker and, from LIVE, switches to PAPER in the same transaction
        (LIVE never coexists with a halt; after the resume a LIVE switch runs the gates
        again). Then revokes and settles the permits and stops the engine. Resting orders
        stay (cancel them, or use the emergency stop).
        """
        who = str(actor)
        enqueue = self.enqueue()
        store = self.store
        async with self._lock:

            def tx(conn: sqlite3.Connection) -> StateRow:
                trip_sql(conn, OPERATOR_HALT, mode=None, reason=reason)
                _to_paper(store, conn, who, f"halt: {reason}")
                st.audit(conn, actor=who, action="halt", outcome="tripped", reason=reason)
                enqueue(conn, halt_event(breaker=OPERATOR_HALT, reason=reason))
                return read_state(conn)

            await store.write(tx)
            self.breakers.committed_trip(OPERATOR_HALT, reason, None)
            unresolved = await self._revoke_and_settle(f"halt: {reason}")
            await self.stop_engine()
            self._follow_up(unresolved)
            self.publish({"type": "halt", "breaker": OPERATOR_HALT, "reason": reason})
            now = store.mode_state()
            return {
                "halted": True, "mode": str(now.mode), "trading_state": str(now.trading_state),
                "state_reason": now.state_reason, "epoch": now.epoch, "reason": reason,
                "unresolved_placements": [p.label for p in unresolved],
            }  # fmt: skip

    async def resume(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """Clear every latched breaker. Returns {"cleared": n, **on_resume's answer}.

        Refused (HaltedError) while ``resume_blocked`` names a reason. Serialized with the
        stops: a resume never lands between a stop's latch and its cancels.
        """
        who = str(actor)
        async with self._lock:
            blocked = self.resume_blocked()
            if blocked:
                await self.store.write(lambda c: st.audit(
                    c, actor=who, action="resume", outcome="refused", reason=reason,
                    details={"blocked": blocked},
                ))  # fmt: skip
                raise HaltedError(f"Cannot resume: {blocked}", details={"blocked": blocked})
            extra: dict[str, Any] = {}
            if self.on_resume is not None:
                extra = dict(await self.on_resume())
            names = sorted({EMERGENCY, DAILY_LOSS, DRAWDOWN, OPERATOR_HALT,
                            *self.breakers.states()})  # fmt: skip
            cleared_names = sorted(self.breakers.states())  # what the notification lifts
            enqueue = self.enqueue()

            def tx(conn: sqlite3.Connection) -> int:
                n = clear_sql(conn, names, actor=who, reason=reason)
                st.audit(conn, actor=who, action="resume", outcome="cleared", reason=reason,
                         details={"cleared": n, **extra})  # fmt: skip
                enqueue(conn, resume_event(actor=who, reason=reason, breakers=cleared_names))
                return n

            cleared = await self.store.write(tx)
            self.breakers.committed_clear(names)
            self.publish({"type": "resume", "reason": reason})
            return {**extra, "cleared": cleared}

    # ------------------------------------------------------------------ permits

    async def _revoke_and_settle(self, why: str) -> list[Permit]:
        board = self.board
        board.revoke_all(why)
        return await board.settle(self.settle_bound())

    def _follow_up(self, unresolved: Sequence[Permit]) -> None:
        """Cancel each placement that was still on the wire once it has resolved."""
        if not unresolved:
            return
        task = asyncio.get_running_loop().create_task(self._cancel_when_resolved(unresolved))
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def _cancel_when_resolved(self, permits: Sequence[Permit]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_UP_S
        waiting = list(permits)
        while waiting and loop.time() < deadline:
            await asyncio.sleep(0.05)
            done = [p for p in waiting if p.on_wire <= 0 or p.released]
            waiting = [p for p in waiting if p not in done]
            for permit in done:
                await self._cancel_by_cid(permit.label)
        for permit in waiting:
            log.error("placement %s still unanswered %g s after a stop; check the venue",
                      permit.label, FOLLOW_UP_S)  # fmt: skip

    async def _cancel_by_cid(self, cid: str) -> None:
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
            log.warning("cancelled %s, a placement that resolved after a stop", cid)
        except Exception:
            log.exception("could not cancel %s after a stop; check the venue", cid)

    # ------------------------------------------------------------------ the work

    async def cancel_everything(
        self, modes: Sequence[Mode], attempts: int = 3
    ) -> tuple[int, int | None, list[str], list[tuple[Mode, OpenOrder]]]:
        """Cancel every open order of each mode's account, verify with the venue's open
        orders, and cancel again what appeared (bounded: ``attempts`` rounds).

        A stop must not give up on one transient error: cancel-all and the verification
        are retried. ``remaining`` counts the orders still open at the venues, or is None
        when a venue could not be checked at all (the notes say why); the last element
        names them.
        """
        cancelled = 0
        remaining: int | None = 0
        unchecked = False
        notes: list[str] = []
        named: list[tuple[Mode, OpenOrder]] = []

        async def one(mode: Mode) -> None:
            nonlocal cancelled, unchecked
            client = self.clients[mode]
            left: list[OpenOrder] | None = None
            for attempt in range(attempts):
                try:
                    cancelled += await client.cancel_all()
                    left = await client.open_orders()
                except AuthError as exc:
                    notes.append(f"{mode}: {exc.message}")
                    break
                except HeliosError as exc:
                    notes.append(f"{mode}: attempt {attempt + 1}: {exc.message}")
                    left = None
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if not left:
                    break
            if left is None:  # never answered: the count is unknown, not zero
                unchecked = True
                return
            named.extend((mode, o) for o in left)
            await self.on_open_orders(mode, left)

        await asyncio.gather(*(one(m) for m in modes))
        remaining = None if unchecked else len(named)
        return cancelled, remaining, notes, named

    async def flatten(self) -> list[str]:
        """Sell every spot position at market in its own mode (config choice, off by default).

        Each order goes to the client of the mode that holds the position, not to the mode
        of the moment (PAPER right after the stop); selling reduces, so the latch lets it
        through the risk rules.
        """
        done = []
        for mode in Mode:
            for pair, qty in self.ledgers[mode].positions().items():
                info = self.market.pair(pair)
                if qty <= 0 or info is None:
                    continue
                qty = info.round_quantity(qty)
                if qty < info.min_base:
                    continue
                intent = OrderIntent(pair, Side.SELL, OrderType.MARKET, qty, None,
                                     "flatten on emergency stop", "emergency")  # fmt: skip
                try:
                    await self.submit(intent, actor="emergency-stop", mode=mode)
                    done.append(f"{mode} {pair} {qty}")
                except HeliosError as exc:
                    done.append(f"{mode} {pair} {qty} failed: {exc.message}")
        return done


def _to_paper(store: Store, conn: sqlite3.Connection, who: str, reason: str) -> None:
    row = conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()
    if row is not None and row[0] == "LIVE":
        st.set_mode(store, conn, Mode.PAPER, actor=who, reason=reason, confirmed=False)


def _open_json(mode: Mode, order: OpenOrder) -> dict[str, Any]:
    return {
        "mode": str(mode), "pair": order.pair, "side": str(order.side),
        "exchange_order_id": order.exchange_order_id,
        "customer_order_id": order.customer_order_id,
    }  # fmt: skip
