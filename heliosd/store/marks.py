"""Persistence of the equity baselines (table ``equity_marks``): the drawdown peak and each
local day's start-of-day equity, as :class:`heliosd.risk.marks.EquityMarks` stores them
(``pending`` is never persisted). Run inside the store's read or write jobs."""

from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal

from heliosd.core.types import Mode, utcnow
from heliosd.store import iso


def load_marks(conn: sqlite3.Connection, mode: Mode) -> tuple[Decimal | None, date | None,
                                                              Decimal | None]:  # fmt: skip
    """``(peak, day, day_start_equity)`` of ``mode``; None where nothing is stored."""
    peak = conn.execute(
        "SELECT value FROM equity_marks WHERE mode = ? AND kind = 'peak'", (str(mode),)
    ).fetchone()
    day = conn.execute(
        "SELECT day, value FROM equity_marks WHERE mode = ? AND kind = 'day_start'"
        " ORDER BY day DESC LIMIT 1",
        (str(mode),),
    ).fetchone()
    return (
        Decimal(peak[0]) if peak else None,
        date.fromisoformat(day[0]) if day else None,
        Decimal(day[1]) if day else None,
    )


def save_marks(
    conn: sqlite3.Connection,
    mode: Mode,
    peak: Decimal | None,
    day: date | None,
    day_equity: Decimal | None,
) -> None:
    """Upsert the peak and the day's baseline (each only when known)."""
    now = iso(utcnow())
    if peak is not None:
        conn.execute(
            "INSERT INTO equity_marks(mode, kind, day, value, at) VALUES (?, 'peak', '-', ?, ?)"
            " ON CONFLICT(mode, kind, day) DO UPDATE SET value = excluded.value, at = excluded.at",
            (str(mode), str(peak), now),
        )
    if day is not None and day_equity is not None:
        conn.execute(
            "INSERT INTO equity_marks(mode, kind, day, value, at) VALUES (?, 'day_start', ?, ?, ?)"
            " ON CONFLICT(mode, kind, day) DO UPDATE SET value = excluded.value, at = excluded.at",
            (str(mode), day.isoformat(), str(day_equity), now),
        )
