"""What the daemon remembers about its own runs: the run marker and the engine's on/off.

Both are rows of ``daemon_state`` (key -> JSON), written through the store's one writer.

``'run'`` ``{"state": "running"|"clean", "pid", "mode", "at"}``

* **R1 -- a run is unclean until proven clean.** Every start writes ``"running"`` (after
  the state directory's lock and the store are open, before any exchange client, the
  engine or the control API starts); only the end of an orderly shutdown writes
  ``"clean"`` (control API closed, engine stopped, streams closed, fills drained). A start
  that finds ``"running"`` knows its predecessor never got there: ``kill -9``, power loss,
  the OOM killer, a crash, or a shutdown that overran its budget. An unreadable marker
  counts as ``"running"``.
* **R2 -- an unclean exit in LIVE halts, in the transaction that notices it.** If the mode
  row says LIVE when an unclean exit is found, :func:`begin_run` trips the ``unclean_exit``
  breaker (HALTED: nothing but cancels) in the same transaction that writes the new
  marker, so nothing this run starts can trade before the halt is durable. The same holds
  when the mode row says PAPER but the run that died traded LIVE (a switch to LIVE since it
  started, e.g. an emergency stop that had set PAPER but not yet verified VALR's side) or
  the store still has LIVE orders not known to be finished: VALR may hold what heliosd has
  not seen. Otherwise, in PAPER, an unclean exit is audited and logged, and trading goes on.

``'engine'`` ``{"running", "strategy", "by", "at", "reason"}`` (:class:`EngineChoice`)

* **E1 -- a restart restores the last choice.** Written whenever the engine is started or
  stopped by a person, and whenever a stop, a halt or a strategy error stops it (so a
  stop's engine-off is remembered as off: a restart never starts what a stop stopped).
  Never written by the daemon's own startup (autostart, restore) or shutdown. With no row,
  ``engine.autostart`` decides.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heliosd import store as st
from heliosd.core.types import Mode, utcnow
from heliosd.risk.breakers import trip_sql
from heliosd.risk.state import UNCLEAN_EXIT, active_breakers
from heliosd.risk.state import read as read_state
from heliosd.store import iso
from heliosd.trading.engine import EngineChoice

RUN = "run"
ENGINE = "engine"
RUNNING = "running"
CLEAN = "clean"


def get(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The JSON object stored under ``key``; ``{}`` if the stored text is not one."""
    row = conn.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def put(conn: sqlite3.Connection, key: str, value: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO daemon_state(key, value, at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
        " SET value = excluded.value, at = excluded.at",
        (key, json.dumps(value, default=str), iso(utcnow())),
    )


# ---------------------------------------------------------------------- the run marker


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """What :func:`begin_run` found and did."""

    marker: dict[str, Any] | None  # the previous run's marker (None: first run here)
    unclean: bool  # the previous run did not end with a clean shutdown
    tripped: bool  # ... and it was LIVE, so this start tripped ``unclean_exit``
    reason: str  # the breaker's reason when tripped
    halted: bool  # ``unclean_exit`` is active now (tripped now, or still latched from before)
    live_fills: int  # LIVE fills stored before this run's streams start


def begin_run(conn: sqlite3.Connection, *, pid: int, now: datetime | None = None) -> PreviousRun:
    """Write this run's ``"running"`` marker; on an unclean exit in LIVE trip the halt (R2)."""
    now = now or utcnow()
    marker = get(conn, RUN)
    mode = read_state(conn).mode
    # No marker at all: a fresh store, or one from a release before the marker. In LIVE
    # nothing proves that run ended cleanly, so it counts as unclean (R1).
    unclean = mode == str(Mode.LIVE) if marker is None else marker.get("state") != CLEAN
    put(conn, RUN, {"state": RUNNING, "pid": pid, "mode": mode, "at": iso(now)})
    reason = ""
    live_now = mode == str(Mode.LIVE)
    live_used = live_now or (unclean and _used_live(conn, marker))
    tripped = unclean and live_used
    if unclean:
        previous = f"pid {(marker or {}).get('pid', '?')}, started {(marker or {}).get('at', '?')}"
        if tripped and live_now:
            reason = f"heliosd did not shut down cleanly while LIVE ({previous})"
        elif tripped:
            reason = (f"heliosd did not shut down cleanly after trading LIVE in that run, so "
                      f"LIVE orders may be open at VALR ({previous})")  # fmt: skip
        if tripped:
            trip_sql(conn, UNCLEAN_EXIT, mode=Mode.LIVE, reason=reason)
        st.audit(
            conn, actor="heliosd", action="unclean_exit",
            outcome="halted" if tripped else "warned",
            reason=reason or f"heliosd did not shut down cleanly ({previous}); PAPER, not halted",
            details={"previous": marker, "mode": mode, "pid": pid},
        )  # fmt: skip
    halted = any(name == UNCLEAN_EXIT for name, _ in active_breakers(conn, now))
    (fills,) = conn.execute("SELECT COUNT(*) FROM fills WHERE mode = 'LIVE'").fetchone()
    return PreviousRun(marker, unclean, tripped, reason, halted, int(fills))


def downtime_since(previous: PreviousRun | None) -> datetime | None:
    """When the daemon last knew the account: the previous run's clean end, or, after an
    unclean exit, its start (flows it recorded itself are deduplicated by id). None on the
    first run here, when the starting balances already include every flow."""
    at = (previous.marker or {}).get("at") if previous is not None else None
    if not isinstance(at, str):
        return None
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _used_live(conn: sqlite3.Connection, marker: dict[str, Any] | None) -> bool:
    """R2's second case: the mode is PAPER now, but the run that died traded LIVE (a switch
    to LIVE since it started; an emergency stop sets PAPER before it has verified VALR's
    side), or the store still has LIVE orders not known to be finished. Either way VALR may
    hold orders and fills heliosd has not seen, so the restart reconciles first."""
    started = (marker or {}).get("at")
    if isinstance(started, str):
        switched = conn.execute(
            "SELECT 1 FROM trading_mode_history WHERE new_mode = 'LIVE' AND changed_at >= ?"
            " LIMIT 1",
            (started,),
        ).fetchone()
        if switched is not None:
            return True
    unfinished = conn.execute(
        "SELECT 1 FROM orders WHERE mode = 'LIVE' AND state IN ('new','sent','placed',"
        "'partially_filled') LIMIT 1"
    ).fetchone()
    return unfinished is not None


def end_run(conn: sqlite3.Connection, *, pid: int, now: datetime | None = None) -> None:
    """The ``"clean"`` marker: the last write of an orderly shutdown (R1)."""
    mode = read_state(conn).mode
    put(conn, RUN, {"state": CLEAN, "pid": pid, "mode": mode, "at": iso(now or utcnow())})


# ---------------------------------------------------------------------- the engine's on/off


def load_engine_choice(conn: sqlite3.Connection) -> EngineChoice | None:
    """The last recorded choice (E1); an unreadable row reads as stopped (fail closed)."""
    value = get(conn, ENGINE)
    if value is None:
        return None
    strategy = value.get("strategy")
    return EngineChoice(
        running=value.get("running") is True,
        strategy=strategy if isinstance(strategy, str) and strategy else None,
        by=str(value.get("by", "")),
        at=str(value.get("at", "")),
        reason=str(value.get("reason", "")),
    )


def save_engine_choice(conn: sqlite3.Connection, choice: EngineChoice) -> None:
    put(conn, ENGINE, choice.as_json())


__all__ = [
    "CLEAN",
    "ENGINE",
    "RUN",
    "RUNNING",
    "PreviousRun",
    "begin_run",
    "end_run",
    "get",
    "load_engine_choice",
    "put",
    "save_engine_choice",
]
