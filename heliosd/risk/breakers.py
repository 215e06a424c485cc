"""Circuit breakers: persisted, latched trading stops.

``emergency`` (manual stop or drawdown) latches until a person resumes. ``daily_loss`` halts
until the next day boundary (its ``until``) or a resume. ``drawdown`` records the drawdown
trip that caused an emergency stop. State lives in the ``breakers`` table, so a restart never
clears a stop; the in-memory map is only a cache of committed rows.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from datetime import datetime

from heliosd.core.protocols import BreakerState
from heliosd.core.types import Mode, TradingState, utcnow
from heliosd.notify import journal
from heliosd.risk.state import sync as sync_trading_state
from heliosd.store import Store, iso, parse_dt

EMERGENCY = "emergency"
DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
BUILTIN = frozenset({EMERGENCY, DAILY_LOSS, DRAWDOWN})


def trip_sql(
    conn: sqlite3.Connection,
    name: str,
    *,
    mode: Mode | None,
    reason: str,
    until: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO breakers(name, mode, tripped_at, reason, until) VALUES (?,?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET mode = excluded.mode, tripped_at = excluded.tripped_at,"
        " reason = excluded.reason, until = excluded.until, cleared_at = NULL,"
        " cleared_by = NULL, clear_reason = NULL",
        (name, None if mode is None else str(mode), iso(utcnow()), reason,
         None if until is None else iso(until)),
    )  # fmt: skip
    sync_trading_state(
        conn
    )  # a trip is a transition: new state, new epoch (heliosd.risk.state, S2)


def clear_sql(conn: sqlite3.Connection, names: list[str], *, actor: str, reason: str) -> int:
    cur = conn.executemany(
        "UPDATE breakers SET cleared_at = ?, cleared_by = ?, clear_reason = ?"
        " WHERE name = ? AND cleared_at IS NULL",
        [(iso(utcnow()), actor, reason, n) for n in names],
    )
    sync_trading_state(conn)  # a clear is a transition too, even one that cleared nothing
    return cur.rowcount


class Breakers:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._states: dict[str, BreakerState] = {}
        self._journaled: tuple[TradingState, str] | None = None  # the state last journaled

    async def load(self) -> None:
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT name, reason, until FROM breakers WHERE cleared_at IS NULL"
            ).fetchall()
        )
        self._states = {
            r[0]: BreakerState(r[0], True, r[1], parse_dt(r[2]) if r[2] else None) for r in rows
        }
        self.journal_state(None)

    def states(self) -> Mapping[str, BreakerState]:
        """Active breakers; one whose ``until`` has passed reads as not tripped."""
        now = None
        for state in self._states.values():
            if state.until is not None:
                now = now or utcnow()
                if state.until <= now:
                    return {k: v for k, v in self._states.items()
                            if v.until is None or v.until > now}  # fmt: skip
        return self._states

    def is_tripped(self, name: str) -> bool:
        return name in self.states()

    def halt_reason(self) -> str | None:
        """Why trading is halted: the emergency latch first, then any other breaker
        (daily loss, or one a plugin monitor tripped under its own name)."""
        states = self.states()
        for name in (EMERGENCY, *sorted(states)):
            if name in states:
                return f"{name}: {states[name].reason}"
        return None

    def committed_trip(self, name: str, reason: str, until: datetime | None) -> None:
        """Mirror a trip whose row has just been committed."""
        self._states[name] = BreakerState(name, True, reason, until)
        self.journal_state(name)

    def committed_clear(self, names: list[str]) -> None:
        for name in names:
            self._states.pop(name, None)
        self.journal_state(",".join(names))

    def journal_state(self, breaker: str | None) -> None:
        """One journal line when the committed trading state differs from the one last
        journaled (every trip and clear is mirrored here after its commit, so this is the
        one place that sees every transition). At load: a line only if not ACTIVE."""
        try:
            now = self._store.mode_state()
        except Exception:  # the journal never breaks a trip or a clear
            return
        seen = (now.trading_state, now.state_reason)
        before, self._journaled = self._journaled, seen
        if before == seen or (before is None and now.trading_state is TradingState.ACTIVE):
            return
        active = now.trading_state is TradingState.ACTIVE
        journal.event("trading_state", level=logging.INFO if active else None,
                      from_=None if before is None else before[0], to=now.trading_state,
                      reason=now.state_reason, breaker=breaker, epoch=now.epoch)  # fmt: skip

    def as_json(self) -> dict[str, dict[str, object]]:
        states = self.states()
        out: dict[str, dict[str, object]] = {}
        for name in (EMERGENCY, DAILY_LOSS, DRAWDOWN, *sorted(set(states) - BUILTIN)):
            s = states.get(name)
            out[name] = {
                "tripped": s is not None,
                "reason": s.reason if s else "",
                "until": iso(s.until) if s and s.until else None,
            }
        return out
