"""The ``outbox`` table: an event becomes a row in the transaction of what caused it.

:func:`enqueue` (and :func:`enqueue_many`) never commit, never filter and never raise for odd
``data`` values, so a notification can ride in any caller's ``Store.write`` function; the
delivery task (:mod:`heliosd.notify.delivery`) reads the rows back with the helpers below.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from heliosd.core.protocols import Event
from heliosd.store import insert_many


def _json_default(value: Any) -> Any:
    """Event data must never fail to serialise: a notification bug must not roll back the
    mode change or order it rides with, so anything unknown becomes its ``str``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    return str(value)  # Decimal keeps its exact text


# One encoder for every row: json.dumps with options builds a new one per call (~1.7 us).
_ENCODER = json.JSONEncoder(default=_json_default, sort_keys=True)


def _dumps(data: Mapping[str, Any]) -> str:
    return _ENCODER.encode(dict(data))


def _ts(dt: datetime) -> str:
    # Fixed-width ISO text so the due-row comparison in SQL is a plain string comparison.
    return dt.isoformat(timespec="microseconds")


def enqueue(conn: sqlite3.Connection, event: Event) -> int:
    """Insert one outbox row for ``event`` and return its id.

    Call it inside the ``Store.write`` function of whatever caused the event, so both commit
    together. It never commits, never filters and never raises for odd ``data`` values (they
    are stored as text). The delivery task sees the row after the commit (a
    :meth:`Notifications.wake` makes that immediate; otherwise within its poll interval).
    """
    cur = conn.execute(
        "INSERT INTO outbox(kind, urgent, title, body, data, created_at, attempts,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
        (
            event.kind,
            1 if event.urgent else 0,
            event.title,
            event.body,
            _dumps(event.data),
            _ts(event.at),
            _ts(event.at),
        ),
    )
    row_id = cur.lastrowid
    assert row_id is not None  # an INSERT always has one
    return row_id


def enqueue_many(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """:func:`enqueue` for several events, in order, in a few statements (a burst of fills:
    one INSERT per row costs the writer thread a GIL hand-off per row; ``store.chunks``)."""
    rows = []
    for e in events:
        at = _ts(e.at)
        rows.append((e.kind, 1 if e.urgent else 0, e.title, e.body, _dumps(e.data), at, at))
    insert_many(
        conn,
        "INSERT INTO outbox(kind, urgent, title, body, data, created_at, attempts,"
        " next_attempt_at) VALUES",
        "(?, ?, ?, ?, ?, ?, 0, ?)",
        rows,
    )


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    attempts: int
    event: Event


def _due_rows(conn: sqlite3.Connection, now: str, max_attempts: int, limit: int) -> list[_Row]:
    rows = conn.execute(
        "SELECT id, kind, urgent, title, body, data, created_at, attempts FROM outbox"
        " WHERE delivered_at IS NULL AND next_attempt_at <= ? AND attempts < ?"
        " ORDER BY id LIMIT ?",
        (now, max_attempts, limit),
    ).fetchall()
    return [_row(r) for r in rows]


def _row(r: Sequence[Any]) -> _Row:
    try:
        data = json.loads(r[5])
    except ValueError:  # someone edited the row by hand; still deliver the text
        data = {"raw": r[5]}
    event = Event(
        kind=r[1],
        title=r[3],
        body=r[4],
        at=datetime.fromisoformat(r[6]),
        urgent=bool(r[2]),
        data=data if isinstance(data, dict) else {"raw": data},
    )
    return _Row(id=r[0], attempts=r[7], event=event)


def _next_due(conn: sqlite3.Connection, max_attempts: int) -> str | None:
    row = conn.execute(
        "SELECT min(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND attempts < ?",
        (max_attempts,),
    ).fetchone()
    return row[0] if row else None


def _rows_after(conn: sqlite3.Connection, after_id: int, limit: int) -> list[_Row]:
    rows = conn.execute(
        "SELECT id, kind, urgent, title, body, data, created_at, attempts FROM outbox"
        " WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [_row(r) for r in rows]


def _max_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(id) FROM outbox").fetchone()
    return int(row[0]) if row and row[0] is not None else 0
