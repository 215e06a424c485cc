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
never waits on a gate.

The halts, breaker expiry and resume are :class:`heliosd.risk.halts.StopHalts`'s; cancelling
again after a stop until the venue is verified empty is
:class:`heliosd.risk.stop_followup.StopFollowUp`'s (both base classes of :class:`Stops`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.core.config import Settings
from heliosd.core.errors import AuthError, HeliosError
from heliosd.core.protocols import Event, ExchangeClient, LedgerView, MarketView
from heliosd.core.types import Mode, OpenOrder, OrderIntent, OrderType, Side
from heliosd.notify import journal
from heliosd.notify.notices import emergency_stop_event
from heliosd.risk import state as trading
from heliosd.risk.breakers import EMERGENCY, Breakers, trip_sql
from heliosd.risk.halts import StopHalts
from heliosd.risk.stop_followup import FOLLOW_UP_S as FOLLOW_UP_S
from heliosd.risk.stop_followup import RETRY_FIRST_S as RETRY_FIRST_S
from heliosd.risk.stop_followup import RETRY_MAX_S as RETRY_MAX_S
from heliosd.risk.stop_followup import StopFollowUp
from heliosd.store import Store
from heliosd.trading.permits import PermitBoard

log = logging.getLogger(__name__)

SYSTEM = Actor(None, "heliosd", "internal")

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]
# The router's submit_closing: a market SELL of a holding on a named mode's account.
SubmitClosing = Callable[..., Awaitable[dict[str, Any]]]


def _never_blocked() -> str | None:
    return None


def _open_json(mode: Mode, order: OpenOrder) -> dict[str, Any]:
    return {"mode": str(mode), "pair": order.pair, "side": str(order.side),
            "exchange_order_id": order.exchange_order_id,
            "customer_order_id": order.customer_order_id}  # fmt: skip


@dataclass
class Stops(StopHalts, StopFollowUp):
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
