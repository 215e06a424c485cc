"""Typed queries of the mode, its history and the audit log.

Each is a plain function of a sqlite3.Connection so callers can compose several into one
transaction through ``Store.write(lambda conn: ...)``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from heliosd.core.types import Mode, utcnow
from heliosd.risk.state import sync as sync_trading_state
from heliosd.store.connection import Store
from heliosd.store.timestamps import iso


def set_mode(
    store: Store,
    conn: sqlite3.Connection,
    new_mode: Mode,
    *,
    actor: str,
    reason: str,
    confirmed: bool,
) -> str:
    """Update the singleton and append its history row in the caller's transaction."""
    row = conn.execute("SELECT current_mode FROM trading_mode_state WHERE id = 1").fetchone()
    old = row[0] if row else None
    now = iso(utcnow())
    seal = store.seal(str(new_mode), now, actor) if (confirmed and new_mode is Mode.LIVE) else None
    # History first: the out-of-band trigger recognises our own change by this row.
    conn.execute(
        "INSERT INTO trading_mode_history(old_mode, new_mode, changed_at, changed_by, reason, seal)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (old, str(new_mode), now, actor, reason, seal),
    )
    conn.execute(
        "INSERT INTO trading_mode_state(id, current_mode, updated_at, updated_by) "
        "VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET current_mode = excluded.current_mode,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (str(new_mode), now, actor),
    )
    sync_trading_state(conn)  # a mode change is a transition: new epoch (heliosd.risk.state, S2)
    return now


def audit(
    conn: sqlite3.Connection,
    *,
    actor: str,
    action: str,
    outcome: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit(at, actor, action, outcome, reason, details) VALUES (?,?,?,?,?,?)",
        (iso(utcnow()), actor, action, outcome, reason, json.dumps(details or {}, default=str)),
    )


def history(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, old_mode, new_mode, changed_at, changed_by, reason FROM trading_mode_history"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("id", "old_mode", "new_mode", "changed_at", "changed_by", "reason")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def audit_rows(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, at, actor, action, outcome, reason, details FROM audit ORDER BY id DESC"
        " LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for r in rows:
        out.append(
            {
                "id": r[0],
                "at": r[1],
                "actor": r[2],
                "action": r[3],
                "outcome": r[4],
                "reason": r[5],
                "details": json.loads(r[6]),
            }
        )
    return out
