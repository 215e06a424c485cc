"""Stops: the emergency stop, halts, resume.

Order of operations is the point of this module. A stop first commits its latch (and, for
the emergency stop, the switch to PAPER with its history row) in one transaction: a new
epoch (:mod:`heliosd.risk.state`), so every permit issued before it is stale. Then, in this order:

1. revoke every outstanding send permit (:mod:`heliosd.trading.permits`): no order checked before
   the stop may begin another wire send, and every wait it is in ends at once;
2. settle, bounded (``min(2 s, valr.request_timeout_s)``): wait for the placements that were
   already on the wire to answer, so the cancel-all below sees them at the venue;
3. stop the engine, cancel-all at each venue (the first one is sent during step 2: a
   placement that lands after it is caught here), verify with open orders and cancel again
   what still shows (bounded);
4. answer honestly: ``remaining_open_orders`` and each of them by name (``remaining``), and
   ``unresolved_placements`` (still on the wire when the bound ran out; a background
   follow-up cancels again once they answer). The stop's ``done`` audit row is written
   just after the answer, not before it: only the latch must be durable before a stop
   answers, and it is.

Stops never take the mode orchestrator's lock: a LIVE switch checks the epoch inside the
transaction that writes LIVE (``state.require``), so whichever commits first wins and a stop
never waits on a gate. Resume clears every latched breaker with a reason, audited, unless
``resume_blocked`` names a reason it may not (an unclean exit not yet reconciled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.core.config import Settings
from heliosd.core.errors import AuthError, HaltedError, HeliosError
from heliosd.core.protocols import Event, ExchangeClient, LedgerView, MarketView
from heliosd.core.types import Mode, OpenOrder, OrderIntent, OrderState, OrderType, Side, utcnow
from heliosd.notify import journal
from heliosd.notify.notices import emergency_stop_event, halt_event, resume_event
from heliosd.risk import state as trading
from heliosd.risk.breakers import DAILY_LOSS, DRAWDOWN, EMERGENCY, Breakers, clear_sql, trip_sql
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.permits import Permit, PermitBoard

log = logging.getLogger(__name__)

SYSTEM = Actor(None, "heliosd", "internal")

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]
# The router's submit_closing: a market SELL of a holding on a named mode's account.
SubmitClosing = Callable[..., Awaitable[dict[str, Any]]]

# A stop that could not verify the venue empty keeps cancelling, with this backoff, for as
# long as its latch holds (the interleaving search found a stop during a 5xx storm that
# answered "could not check" and never cancelled again, leaving orders resting at VALR).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 15.0
# How long the follow-up waits for a placement still on the wire after a stop before it
# gives up on cancelling it by id (the reconciliation of open orders still judges it).
FOLLOW_UP_S = 120.0


def _never_blocked() -> str | None:
    return None


def _open_json(mode: Mode, order: OpenOrder) -> dict[str, Any]:
    return {"mode": str(mode), "pair": order.pair, "side": str(order.side),
            "exchange_order_id": order.exchange_order_id,
            "customer_order_id": order.customer_order_id}  # fmt: skip


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
    submit_closing: SubmitClosing
    permits: PermitBoard | None = None
    # A reason resume must refuse (S3: an unclean exit not yet reconciled), or None.
    resume_blocked: Callable[[], str | None] = field(default=_never_blocked)
    # Run by resume before it commits; its answer joins resume's answer and audit details.
    on_resume: Callable[[], Awaitable[dict[str, Any]]] | None = None
    settle_s: float | None = None  # None: min(2 s, valr.request_timeout_s)
    # What the emergency stop's answer says to do next (the close of what LIVE still
    # holds: heliosd.trading.close), or None when there is nothing to say.
    next_step: Callable[[], str | None] | None = None

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        if self.permits is None:  # built on its own (tests): a board of its own

            def current() -> tuple[Mode, int]:
                ms = self.store.mode_state()
                return ms.mode, ms.epoch

            self.permits = PermitBoard(current)

    @property
    def board(self) -> PermitBoard:
        assert self.permits is not None  # set in __post_init__
        return self.permits

    def settle_timeout(self) -> float:
        if self.settle_s is not None:
            return self.settle_s
        return min(2.0, float(self.settings.valr.request_timeout_s))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _to_paper(self, conn: sqlite3.Connection, who: str, why: str) -> None:
        """A stop or halt leaves LIVE in its own transaction: LIVE never coexists with one."""
        row = conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()
        if row is not None and row[0] == "LIVE":
            st.set_mode(self.store, conn, Mode.PAPER, actor=who, reason=why, confirmed=False)

    def emergency_reason(self) -> str | None:
        states = self.breakers.states()
        return states[EMERGENCY].reason if EMERGENCY in states else None

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

    async def breaker_emergency(self, mode: Mode, breaker: str, reason: str) -> None:
        """A monitor asked for the emergency stop (drawdown): record why, then stop."""
        await self.store.write(lambda c: trip_sql(c, breaker, mode=mode, reason=reason))
        self.breakers.committed_trip(breaker, reason, None)
        await self.emergency_stop(reason=f"{breaker}: {reason}", actor=SYSTEM)

    # ------------------------------------------------------------------ operator actions

    async def emergency_stop(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        """Latch (new epoch), revoke, settle, stop the engine, cancel everything, verify."""
        reason = reason or "emergency stop"
        async with self._lock:  # stops among themselves; never the orchestrator's lock
            who = str(actor)
            enqueue = self.enqueue()
            store = self.store

            def tx(conn: sqlite3.Connection) -> trading.StateRow:
                trip_sql(conn, EMERGENCY, mode=None, reason=reason)
                self._to_paper(conn, who, f"emergency stop: {reason}")
                st.audit(conn, actor=who, action="emergency_stop", outcome="latched",
                         reason=reason)  # fmt: skip
                enqueue(conn, emergency_stop_event(reason=reason, actor=who))
                return trading.read(conn)

            board = self.board
            revoked = f"emergency stop: {reason}"
            # Revoking and cancelling are always safe, so neither waits for the latch's
            # commit (an fsync: 6-16 ms of the stop's 60-110 on a 2-core box): the permits
            # are revoked now, and the board refuses every send until the latch is durable
            # (P6: a permit issued meanwhile would pass its check, the stored epoch being
            # still the old one; the bench saw such orders land after the early cancel-all
            # and cost the stop a second round of 50-60 ms), and the first cancel-all goes
            # out at once, while the latch commits and the placements already on the wire
            # settle. What lands after it is seen by the verification below and cancelled
            # again; only the verification has to follow the settle.
            board.bar(revoked)  # P6: nothing new goes out until the latch is durable
            modes = [Mode.LIVE, Mode.PAPER]
            # A placement already on the wire may land after the early cancel-all; its mode's
            # first pass below cancels again at once rather than look, find it, wait for a
            # cancel to show (50 ms) and only then cancel (a 2-3x slower stop in the bench).
            racing = {m for p in board.on_wire() for m in (modes if p.any_mode else [p.mode])}
            early = asyncio.gather(*(self._cancel_all_once(m) for m in modes))
            was = store.mode_state().mode
            try:
                latched = await store.write(tx)
            except BaseException:
                await asyncio.gather(early, return_exceptions=True)
                raise
            finally:  # committed: the new epoch refuses the old permits (P1); or it failed
                board.unbar()
            journal.event("emergency_stop", by=actor, reason=reason, epoch=latched.epoch)
            if was is not Mode(latched.mode):
                journal.event("mode_change", from_=was, to=latched.mode, by=actor,
                              reason=f"emergency stop: {reason}")  # fmt: skip
            self.breakers.committed_trip(EMERGENCY, reason, None)
            board.revoke_all(revoked)
            unresolved = await board.settle(self.settle_timeout())
            unknown = await self.unknown_placements()  # sent earlier, outcome unknown (P5)
            precancelled = {m: n for m, n in zip(modes, await early, strict=True) if n is not None}
            await self.stop_engine()
            cancelled, remaining, notes = await self.cancel_everything(
                modes, precancelled=precancelled, cancel_again=racing
            )
            flattened = await self.flatten() if self.settings.risk.flatten_on_emergency_stop else []
            if unresolved:
                notes.append(f"{len(unresolved)} placements still unanswered after"
                             f" {self.settle_timeout():g} s; cancelling again once they"
                             " answer")  # fmt: skip
            if unknown:
                notes.append(f"{len(unknown)} placements sent earlier with an unknown outcome"
                             " (answer and lookups lost); cancelling again until"
                             " reconciliation settles them")  # fmt: skip
            unresolved = unresolved + unknown
            labels = sorted(p.label for p in unresolved)
            count = None if remaining is None else len(remaining)
            again = count != 0 or bool(unresolved)
            if again:
                notes.append("cancelling again until the venue shows no open order")

            def done(conn: sqlite3.Connection) -> None:
                st.audit(conn, actor=who, action="emergency_stop", outcome="done", reason=reason,
                         details={"cancelled": cancelled, "remaining": remaining,
                                  "unresolved_placements": labels, "notes": notes,
                                  "flattened": flattened, "epoch": latched.epoch})  # fmt: skip
                if count != 0 or labels:  # orders may still be open at VALR: a person must look
                    enqueue(conn, emergency_stop_event(
                        reason=reason, actor=who, cancelled_orders=cancelled,
                        remaining_open_orders=count, checked=count is not None,
                    ))  # fmt: skip

            # The answer does not wait for this record: the latch is already durable, and
            # the writer is busy committing the cancellations the venue is reporting (500
            # of them after a stop of 500 orders: tens of ms). It commits right after them;
            # the follow-up cancels are queued behind it so the audit trail reads in order.
            self._spawn(store.write(done))
            if again:
                self._spawn(self._keep_cancelling(unresolved, modes, who, reason))
            self.publish({"type": "emergency_stop", "reason": reason,
                          "cancelled_orders": cancelled})  # fmt: skip
            out: dict[str, Any] = {
                "halted": True, "mode": str(store.mode_state().mode),
                "trading_state": str(latched.state), "epoch": latched.epoch,
                "cancelled_orders": cancelled, "remaining_open_orders": count,
                "remaining": remaining or [], "unresolved_placements": labels,
                "reason": reason, "notes": notes,
            }  # fmt: skip
            if flattened:
                out["flattened"] = flattened
            elif self.next_step is not None and (step := self.next_step()):
                out["next_step"] = step
                notes.append(step)
            return out

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

    # ------------------------------------------------------------------ the work

    async def _cancel_all_once(self, mode: Mode) -> int | None:
        """One cancel-all at ``mode``'s venue: the count, or None if it failed (the
        verification pass then cancels again)."""
        try:
            return await self.clients[mode].cancel_all()
        except HeliosError as exc:
            log.warning("emergency stop: %s cancel-all failed (%s); cancelling again", mode,
                        exc.message)  # fmt: skip
            return None

    async def cancel_everything(
        self,
        modes: Sequence[Mode],
        attempts: int = 3,
        *,
        precancelled: Mapping[Mode, int] | None = None,
        cancel_again: Collection[Mode] = (),
    ) -> tuple[int, list[dict[str, Any]] | None, list[str]]:
        """Cancel every open order of each mode's account, then verify none remain.

        A stop must not give up on one transient error: cancel-all and the verification
        are retried (bounded), and anything that still shows (or appeared) is cancelled
        again. ``remaining`` names the orders still open at the venue, or is None when the
        LIVE venue could not be checked at all (the notes say why). A mode in
        ``precancelled`` had its cancel-all answered already (with that count): its first
        pass only verifies, unless it is in ``cancel_again`` (a placement of that mode was
        on the wire when the cancel-all went out, so it may have landed after it).
        """
        done_before = dict(precancelled or {})
        cancelled = 0
        remaining: list[dict[str, Any]] | None = []
        notes: list[str] = []

        async def one(mode: Mode) -> None:
            nonlocal cancelled, remaining
            client = self.clients[mode]
            left: list[OpenOrder] | None = None
            skip_first = mode in done_before and mode not in cancel_again
            cancelled += done_before.get(mode, 0)
            for attempt in range(attempts):
                try:
                    if not (attempt == 0 and skip_first):
                        cancelled += await client.cancel_all()
                    left = await client.open_orders()
                except AuthError as exc:
                    notes.append(f"{mode}: {exc.message}")
                    left = None
                    break
                except HeliosError as exc:
                    notes.append(f"{mode}: attempt {attempt + 1}: {exc.message}")
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if not left:
                    break
                if attempt + 1 < attempts:  # a cancel VALR accepted may take a moment to show
                    await asyncio.sleep(0.05 * (attempt + 1))
            if left is None:
                if mode is Mode.LIVE:
                    remaining = None
                else:
                    notes.append(f"{mode}: open orders could not be checked")
                return
            if remaining is not None:
                remaining.extend(_open_json(mode, o) for o in left)
            await self.on_open_orders(mode, left)

        await asyncio.gather(*(one(m) for m in modes))
        return cancelled, remaining, notes

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
                try:  # the core's closing path: bound to the epoch, not the mode
                    await self.submit_closing(intent, actor="emergency-stop", mode=mode)
                    done.append(f"{mode} {pair} {qty}")
                except HeliosError as exc:
                    done.append(f"{mode} {pair} {qty} failed: {exc.message}")
        return done
