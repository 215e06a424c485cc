"""The trading state and its epoch: the one owner of "what may trade now".

The state is persisted in the ``trading_mode_state`` row beside the mode (columns
``trading_state``, ``state_reason``, ``epoch``), so one read of that row (the router's mode
read, ``Store.mode_state``) answers mode, state and epoch together.

Invariants (each enforced here and nowhere else):

* **S1 -- derived, never set.** The state is a function of the active breakers (the
  ``breakers`` table, the reasons): any active breaker named in :data:`HALTING` makes the
  state HALTED; any other active breaker makes it REDUCING; none makes it ACTIVE. Breakers are
  global: each one applies to every mode (an owner that trips a condition breaker, such as
  ``stale_prices``, trips it only when the condition concerns the account in use).
* **S2 -- every transition bumps the epoch, in the transaction that makes it.** A breaker
  tripped or cleared (:func:`heliosd.risk.breakers.trip_sql` / ``clear_sql``), a mode change
  (:func:`heliosd.store.set_mode`) and a breaker expiring (:func:`sync`) each call
  :func:`sync` inside the same transaction, which recomputes the state and adds 1 to the
  epoch. So an epoch names one trading state and one mode; anything checked under epoch N
  is stale once the row says N+1.
* **S3 -- permits are bound to an epoch.** An order is checked under (mode, epoch) and its
  send permit (:mod:`heliosd.trading.permits`) is valid only while the row still says that epoch.
* **S4 -- a switch to LIVE commits only from ACTIVE at the epoch its gates ran under**
  (:func:`require`, called inside the switch's own transaction).

A daily-loss breaker carries an ``until``; once that has passed the breaker no longer
counts, and whoever notices first (the breakers' expiry timer) calls :func:`sync` so the row
says so. Until then the row is stricter than it needs to be, never looser.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from heliosd.core.errors import StateChanged
from heliosd.core.types import TradingState, utcnow

# Breakers that stop everything but cancels. Every other breaker only reduces.
UNCLEAN_EXIT = "unclean_exit"
OPERATOR_HALT = "halt"
HALTING = frozenset({UNCLEAN_EXIT, OPERATOR_HALT})


@dataclass(frozen=True, slots=True)
class StateRow:
    """The persisted trading state as one transaction saw it."""

    mode: str
    state: TradingState
    reason: str
    epoch: int


def derive(active: list[tuple[str, str]]) -> tuple[TradingState, str]:
    """(state, reason) from the active breakers' ``(name, reason)`` pairs (invariant S1).

    The reason lists the halting breakers first, then the emergency stop, then the rest by
    name: ``"emergency: drawdown 15.2%; daily_loss: ..."``.
    """
    if not active:
        return TradingState.ACTIVE, ""
    halting = sorted((n, r) for n, r in active if n in HALTING)
    rest = sorted((n, r) for n, r in active if n not in HALTING)
    rest.sort(key=lambda item: item[0] != "emergency")  # stable: emergency first
    reason = "; ".join(f"{n}: {r}" if r else n for n, r in (*halting, *rest))
    return (TradingState.HALTED if halting else TradingState.REDUCING), reason


def active_breakers(conn: sqlite3.Connection, now: datetime) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT name, reason, until FROM breakers WHERE cleared_at IS NULL"
    ).fetchall()
    return [
        (name, reason)
        for name, reason, until in rows
        if until is None or datetime.fromisoformat(until) > now
    ]


def read(conn: sqlite3.Connection) -> StateRow:
    row = conn.execute(
        "SELECT current_mode, trading_state, state_reason, epoch FROM trading_mode_state"
        " WHERE id = 1"
    ).fetchone()
    if row is None:  # a deleted singleton reads as the strictest state, never as ACTIVE
        return StateRow("PAPER", TradingState.HALTED, "trading_mode_state row missing", -1)
    return StateRow(row[0], TradingState(row[1]), row[2], int(row[3]))


def sync(conn: sqlite3.Connection, now: datetime | None = None) -> StateRow:
    """Recompute the state from the breakers and bump the epoch (invariants S1, S2).

    Call inside the transaction that changed a breaker or the mode; returns the new row.
    """
    state, reason = derive(active_breakers(conn, now or utcnow()))
    conn.execute(
        "UPDATE trading_mode_state SET trading_state = ?, state_reason = ?, epoch = epoch + 1"
        " WHERE id = 1",
        (str(state), reason),
    )
    return read(conn)


def require(
    conn: sqlite3.Connection, *, epoch: int, state: TradingState = TradingState.ACTIVE
) -> StateRow:
    """Raise StateChanged unless the row is at ``epoch`` and in ``state`` (invariant S4).

    Call inside the transaction that commits a transition checked under ``epoch``: SQLite
    transactions on the one writer serialize, so a stop that committed first is seen here.
    """
    row = read(conn)
    if row.epoch != epoch or row.state is not state:
        raise StateChanged(
            f"trading state changed while this was checked (epoch {epoch} -> {row.epoch},"
            f" now {row.state}{': ' + row.reason if row.reason else ''}); nothing was changed",
            details={"epoch": row.epoch, "trading_state": str(row.state), "reason": row.reason},
        )
    return row


__all__ = [
    "HALTING",
    "OPERATOR_HALT",
    "UNCLEAN_EXIT",
    "StateRow",
    "active_breakers",
    "derive",
    "read",
    "require",
    "sync",
]
