"""Checking a database file before it is put in place: intact, of a heliosd schema version
this release knows, with every table and column that version has and the mode row; and the
:class:`Summary` of what it holds that decides how the next start behaves.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from heliosd.core.types import utcnow
from heliosd.runtime import runstate
from heliosd.runtime.backup import BackupError


@dataclass
class Summary:
    """What a heliosd database holds that decides how the next start behaves."""

    schema_version: int
    mode: str  # after a restore never LIVE (backup_restore sets a LIVE copy to PAPER)
    trading_state: str
    state_reason: str
    epoch: int
    breakers: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    # LIVE switches and LIVE orders the replaced database has beyond this one's (restore only)
    live_beyond: tuple[int, int] = (0, 0)


def expected_schema(version: int) -> dict[str, set[str]]:
    """{table: columns} that migrations 1..``version`` create (run on an in-memory db)."""
    from heliosd.store import MIGRATIONS, _statements

    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            for statement in _statements(script):
                conn.execute(statement)
        return _schema(conn)
    finally:
        conn.close()


def _schema(conn: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )]  # fmt: skip
    return {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}


def check_database(conn: sqlite3.Connection, what: str) -> int:
    """Raise BackupError unless ``conn`` is an intact heliosd database this release can run
    on; returns its schema version."""
    from heliosd.store import MIGRATIONS

    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is corrupt or not an SQLite database: {exc}") from None
    if problems != ["ok"]:
        raise BackupError(f"{what} is corrupt: integrity_check: {'; '.join(problems[:5])}")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    known = len(MIGRATIONS)
    if version == 0:
        raise BackupError(f"{what} is not a heliosd database (schema version 0)")
    if version > known:
        raise BackupError(
            f"{what} has schema version {version}, newer than this heliosd knows ({known}):"
            " it was written by a newer release; install that release to restore it"
        )
    have = _schema(conn)
    missing = []
    for table, columns in expected_schema(version).items():
        if table not in have:
            missing.append(table)
        elif lost := sorted(columns - have[table]):
            missing.append(f"{table}({', '.join(lost)})")
    if missing:
        raise BackupError(
            f"{what} is not a heliosd database of schema version {version}: missing"
            f" {', '.join(sorted(missing))}"
        )
    if conn.execute("SELECT 1 FROM trading_mode_state WHERE id = 1").fetchone() is None:
        raise BackupError(f"{what} has no trading mode row (trading_mode_state id 1)")
    return version


def summarize(conn: sqlite3.Connection, version: int) -> Summary:
    """The mode, trading state, epoch, active breakers, run marker and engine choice."""
    if version >= 3:
        row = conn.execute(
            "SELECT current_mode, trading_state, state_reason, epoch FROM trading_mode_state"
            " WHERE id = 1"
        ).fetchone()
        mode, state, reason, epoch = str(row[0]), str(row[1]), str(row[2]), int(row[3])
    else:  # no stored state before migration 3; it derives one at the next start
        row = conn.execute("SELECT current_mode FROM trading_mode_state WHERE id = 1").fetchone()
        mode, state, reason, epoch = str(row[0]), "(derived at the next start)", "", 0
    now = utcnow()
    rows = conn.execute(
        "SELECT name, reason, tripped_at, until FROM breakers WHERE cleared_at IS NULL"
        " ORDER BY name"
    ).fetchall()
    breakers = [
        {"name": n, "reason": r, "tripped_at": t, "until": u}
        for n, r, t, u in rows
        if not _expired(u, now)
    ]
    run = engine = None
    if version >= 3:
        run, engine = runstate.get(conn, "run"), runstate.get(conn, "engine")
    return Summary(version, mode, state, reason, epoch, breakers, run, engine)


def _expired(until: str | None, now: datetime) -> bool:
    """A daily-loss breaker past its ``until`` no longer counts (heliosd.risk.state); an
    unreadable time counts as active, the stricter reading."""
    if until is None:
        return False
    try:
        return datetime.fromisoformat(until) <= now
    except (TypeError, ValueError):
        return False
