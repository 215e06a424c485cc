"""Stops: the emergency stop, the daily-loss halt, resume.

Order of operations is the point of this module. A stop first commits its latch (and, for
the emergency stop, the switch to PAPER with its history row) in one transaction, so no
order can go out while the cancels run; only then does it stop the engine and cancel every
open order, retrying and verifying against the venue. Resume clears every latched breaker
with a reason, audited.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heliosd import store as st
from heliosd.breakers import DAILY_LOSS, DRAWDOWN, EMERGENCY, Breakers, clear_sql, trip_sql
from heliosd.config import Settings
from heliosd.control.backend import Actor
from heliosd.errors import AuthError, HeliosError
from heliosd.notices import emergency_stop_event, halt_event, resume_event
from heliosd.protocols import Event, ExchangeClient, LedgerView, MarketView
from heliosd.store import Store
from heliosd.types import Mode, OpenOrder, OrderIntent, OrderType, Side

log = logging.getLogger(__name__)

SYSTEM = Actor(None, "heliosd", "internal")

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]
Submit = Callable[..., Awaitable[dict[str, Any]]]


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

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()

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
        """Latch, go PAPER, stop the engine, cancel everything, verify none remain."""
        reason = reason or "emergency stop"
        async with self._lock:
            who = str(actor)
            enqueue = self.enqueue()
            store = self.store

            def tx(conn: sqlite3.Connection) -> None:
                trip_sql(conn, EMERGENCY, mode=None, reason=reason)
                row = conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()
                if row is not None and row[0] == "LIVE":
                    st.set_mode(store, conn, Mode.PAPER, actor=who,
                                reason=f"emergency stop: {reason}", confirmed=False)  # fmt: skip
                st.audit(conn, actor=who, action="emergency_stop", outcome="latched",
                         reason=reason)  # fmt: skip
                enqueue(conn, emergency_stop_event(reason=reason, actor=who))

            await store.write(tx)
            self.breakers.committed_trip(EMERGENCY, reason, None)
            await self.stop_engine()
            cancelled, remaining, notes = await self.cancel_everything([Mode.LIVE, Mode.PAPER])
            flattened = await self.flatten() if self.settings.risk.flatten_on_emergency_stop else []

            def done(conn: sqlite3.Connection) -> None:
                st.audit(conn, actor=who, action="emergency_stop", outcome="done", reason=reason,
                         details={"cancelled": cancelled, "remaining": remaining,
                                  "notes": notes, "flattened": flattened})  # fmt: skip
                if remaining != 0:  # orders may still be open at VALR: a person must look
                    enqueue(conn, emergency_stop_event(
                        reason=reason, actor=who, cancelled_orders=cancelled,
                        remaining_open_orders=remaining, checked=remaining is not None,
                    ))  # fmt: skip

            await store.write(done)
            self.publish({"type": "emergency_stop", "reason": reason,
                          "cancelled_orders": cancelled})  # fmt: skip
            out: dict[str, Any] = {
                "halted": True, "mode": str(store.mode_state().mode),
                "cancelled_orders": cancelled, "remaining_open_orders": remaining,
                "reason": reason, "notes": notes,
            }  # fmt: skip
            if flattened:
                out["flattened"] = flattened
            return out

    async def resume(self, *, reason: str, actor: Actor) -> int:
        """Clear every latched breaker; returns how many were cleared."""
        who = str(actor)
        names = sorted({EMERGENCY, DAILY_LOSS, DRAWDOWN, *self.breakers.states()})
        cleared_names = sorted(self.breakers.states())  # what the notification says it lifts
        enqueue = self.enqueue()

        def tx(conn: sqlite3.Connection) -> int:
            n = clear_sql(conn, names, actor=who, reason=reason)
            st.audit(conn, actor=who, action="resume", outcome="cleared", reason=reason,
                     details={"cleared": n})  # fmt: skip
            enqueue(conn, resume_event(actor=who, reason=reason, breakers=cleared_names))
            return n

        cleared = await self.store.write(tx)
        self.breakers.committed_clear(names)
        self.publish({"type": "resume", "reason": reason})
        return cleared

    # ------------------------------------------------------------------ the work

    async def cancel_everything(
        self, modes: Sequence[Mode], attempts: int = 3
    ) -> tuple[int, int | None, list[str]]:
        """Cancel every open order of each mode's account, then verify none remain.

        A stop must not give up on one transient error: cancel-all and the verification
        are retried (bounded). ``remaining`` counts live orders still open at the venue, or
        is None when the venue could not be checked at all (the notes say why).
        """
        cancelled = 0
        remaining: int | None = 0
        notes: list[str] = []

        async def one(mode: Mode) -> None:
            nonlocal cancelled, remaining
            client = self.clients[mode]
            left: list[OpenOrder] | None = None
            for attempt in range(attempts):
                try:
                    cancelled += await client.cancel_all()
                    left = await client.open_orders()
                except AuthError as exc:
                    notes.append(f"{mode}: {exc.message}")
                    return
                except HeliosError as exc:
                    notes.append(f"{mode}: attempt {attempt + 1}: {exc.message}")
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if not left:
                    break
            if left is None:
                if mode is Mode.LIVE:
                    remaining = None
                return
            if mode is Mode.LIVE and remaining is not None:
                remaining += len(left)
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
                try:
                    await self.submit(intent, actor="emergency-stop", mode=mode)
                    done.append(f"{mode} {pair} {qty}")
                except HeliosError as exc:
                    done.append(f"{mode} {pair} {qty} failed: {exc.message}")
        return done
