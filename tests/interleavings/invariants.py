"""The five safety invariants, each a function from what the world shows to what is wrong.

Each returns a list of human sentences (empty: holds). I1, I2 and I5 must hold after every
step, whatever is in flight; I3 and I4 are about agreement, so they are checked at quiet
points (no fault on, nothing of ours in flight) after a settle wait that polls with a
deadline. See ``test_search`` for the statement of each.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .world import OPEN_STATES, PAIR, StopRecord, World, parse_time

# The breakers of an emergency stop: it forces PAPER, so LIVE may not coexist with them.
STOPPING = ("emergency", "drawdown")


@dataclass(frozen=True)
class LiveWindow:
    start: datetime
    end: datetime | None  # None: still LIVE
    ended_by_stop: bool


def live_windows(world: World) -> list[LiveWindow]:
    from .world import read_db

    rows = read_db(
        world.db, "SELECT new_mode, changed_at, reason FROM trading_mode_history ORDER BY id"
    )
    windows: list[LiveWindow] = []
    start: datetime | None = None
    for new_mode, changed_at, reason in rows:
        at = parse_time(changed_at)
        if new_mode == "LIVE" and start is None:
            start = at
        elif new_mode == "PAPER" and start is not None:
            windows.append(LiveWindow(start, at, "emergency stop" in (reason or "")))
            start = None
    if start is not None:
        windows.append(LiveWindow(start, None, False))
    return windows


def _window_of(windows: list[LiveWindow], at: datetime) -> LiveWindow | None:
    for w in windows:
        if w.start <= at and (w.end is None or at < w.end):
            return w
    return None


def i1_no_order_after_stop(world: World, notes: list[str]) -> list[str]:
    """(I1) no place request reaches the venue after a stop has answered (until a new LIVE
    switch committed after that answer, and the order was checked after it), and every one
    that does reach it is a LIVE order checked in the LIVE period it arrived in."""
    from .world import read_db

    problems: list[str] = []
    windows = live_windows(world)
    has_epoch = "epoch" in _order_columns(world)
    select = "customer_order_id, mode, created_at, state" + (", epoch" if has_epoch else "")
    orders = {row[0]: row for row in read_db(world.db, f"SELECT {select} FROM orders")}
    for cid, arrived in world.arrivals():
        row = orders.get(cid)
        if row is None:
            problems.append(
                f"I1: {cid} reached the venue at {arrived:%T.%f} but heliosd has no"
                " stored order for it"
            )
            continue
        mode, created = row[1], parse_time(row[2])
        if mode != "LIVE":
            problems.append(f"I1: {cid} reached the venue but is stored as a {mode} order")
            continue
        checked_in = _window_of(windows, created)
        arrived_in = _window_of(windows, arrived)
        if checked_in is None:
            problems.append(
                f"I1: {cid} checked at {created:%T.%f} while not LIVE reached the"
                f" venue at {arrived:%T.%f}"
            )
        elif arrived_in is not checked_in:
            end = checked_in.end
            late = f"{(arrived - end).total_seconds() * 1000:.0f} ms" if end else "?"
            if arrived_in is not None:
                problems.append(
                    f"I1: {cid} checked in the LIVE period from"
                    f" {checked_in.start:%T.%f} reached the venue in a later LIVE"
                    f" period ({late} after its own ended)"
                )
            else:  # after the switch committed, before any stop answered: see below
                cause = "an emergency stop" if checked_in.ended_by_stop else "a switch to PAPER"
                notes.append(f"{cid} reached the venue {late} after {cause} committed")
        if has_epoch and row[4] is not None:
            newer = [e for at, e in world.epochs if at < arrived and e > int(row[4])]
            if newer:  # noted: a send begun before the change may land after it (its start
                # is not visible from outside); the stop's answer is the bound we can see
                notes.append(
                    f"{cid} checked under epoch {row[4]} reached the venue at"
                    f" {arrived:%T.%f}, after epoch {newer[0]} was visible"
                )
        for stop in world.stops:
            if stop.answered_at < arrived and not any(
                stop.answered_at < w.start <= created for w in windows
            ):
                ms = (arrived - stop.answered_at).total_seconds() * 1000
                problems.append(
                    f"I1: {cid} ({row[3]}) reached the venue {ms:.0f} ms after the"
                    f" emergency stop of step {stop.step} had answered"
                    f" {stop.body!r}"
                )
                break
    return problems


def _order_columns(world: World) -> set[str]:
    from .world import columns

    return columns(world.db, "orders")


def i2_live_never_with_stop(world: World, mode_body: dict[str, Any]) -> list[str]:
    """(I2) LIVE never coexists with an active emergency stop (the drawdown stop is one),
    neither in the control API's answer nor in one consistent read of the database (mode row
    and breakers together); and no switch to LIVE ever committed while any breaker (stop or
    halt) was active. A halt that keeps the mode (the daily-loss halt, ``unclean_exit``:
    "HALTED (LIVE)") is not a LIVE that outlived a stop: nothing but reducing orders or
    cancels pass in it, and a LIVE switch is refused unless ACTIVE."""
    problems: list[str] = []
    reason = str(mode_body.get("halt_reason") or mode_body.get("state_reason") or "")
    if mode_body.get("mode") == "LIVE" and mode_body.get("halted") and _stopping(reason):
        problems.append(f"I2: GET /api/trading/mode says LIVE with {mode_body!r}")
    conn = sqlite3.connect(f"file:{world.db}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("BEGIN")  # one snapshot: the mode row and the breakers at one instant
        mode = conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()
        breakers = conn.execute(
            "SELECT name, tripped_at, cleared_at, until FROM breakers"
        ).fetchall()
        switches = conn.execute(
            "SELECT id, changed_at FROM trading_mode_history WHERE new_mode = 'LIVE'"
        ).fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    active = [name for name, _, cleared, _ in breakers if cleared is None and _stopping(name)]
    if mode is not None and mode[0] == "LIVE" and active:
        problems.append(f"I2: the database holds LIVE with active breakers {active}")
    for row_id, changed_at in switches:
        at = parse_time(changed_at)
        during = [
            name
            for name, tripped, cleared, until in breakers
            if parse_time(tripped) < at
            and (cleared is None or at < parse_time(cleared))
            and (until is None or at < parse_time(until))
        ]
        if during:
            problems.append(f"I2: the switch to LIVE of history row {row_id} ({at:%T.%f})"
                            f" committed while {during} was active")  # fmt: skip
    return problems


def _stopping(name: str) -> bool:
    return any(name.startswith(s) for s in STOPPING)


def i3_fills_once(world: World, live_position: Decimal) -> list[str]:
    """(I3) every venue trade of the account is stored exactly once as a LIVE fill (nothing
    missing, nothing invented, nothing twice), and the ledger's position is the venue's."""
    from .world import read_db

    stored = [r[0] for r in read_db(world.db, "SELECT trade_id FROM fills WHERE mode = 'LIVE'")]
    venue = {t["id"] for t in world.sim.sim.trades(world.sim.account)}
    problems = []
    twice = sorted({t for t in stored if stored.count(t) > 1})
    if twice:
        problems.append(f"I3: fills stored twice: {twice}")
    if set(stored) != venue:
        problems.append(
            f"I3: {len(venue - set(stored))} venue trades not stored,"
            f" {len(set(stored) - venue)} stored fills unknown to the venue"
        )
    held = world.venue_btc()
    if live_position != held:
        problems.append(f"I3: the LIVE ledger holds {live_position} BTC, the venue {held}")
    return problems


def i4_open_orders_agree(world: World) -> list[str]:
    """(I4) after reconciliation the venue's open orders are exactly heliosd's open LIVE
    orders (by exchange order id), both ways."""
    from .world import read_db

    marks = ",".join("?" * len(OPEN_STATES))
    rows = read_db(
        world.db,
        "SELECT exchange_order_id, customer_order_id FROM orders"
        f" WHERE mode = 'LIVE' AND state IN ({marks})",
        OPEN_STATES,
    )
    ours = {r[0] or f"(no exchange id: {r[1]})" for r in rows}
    venue = {o["orderId"] for o in world.venue_open()}
    problems = []
    if venue - ours:
        problems.append(f"I4: open at the venue, not open in heliosd: {sorted(venue - ours)}")
    if ours - venue:
        problems.append(f"I4: open in heliosd, not at the venue: {sorted(ours - venue)}")
    return problems


def i5_stop_answer_matches(stop: StopRecord) -> list[str]:
    """(I5) a stop answers 200 (never a 5xx), says PAPER, and its ``remaining_open_orders``
    is the number of orders open at the venue when it answered."""
    body = stop.body if isinstance(stop.body, dict) else {}
    problems = []
    if stop.status != 200:
        problems.append(f"I5: the stop of step {stop.step} answered {stop.status} {stop.body!r}")
        return problems
    if body.get("mode") != "PAPER":
        problems.append(f"I5: the stop of step {stop.step} answered mode {body.get('mode')}")
    remaining = body.get("remaining_open_orders")
    at_venue = len(stop.venue_open)
    if remaining is None:
        if at_venue == 0:
            return problems  # "could not check" is honest, and nothing was left
        problems.append(
            f"I5: the stop of step {stop.step} could not check the venue, which"
            f" had {at_venue} open orders"
        )
    elif remaining != at_venue:
        ids = [o.get("customerOrderId") or o.get("orderId") for o in stop.venue_open]
        problems.append(
            f"I5: the stop of step {stop.step} answered remaining_open_orders ="
            f" {remaining}, the venue had {at_venue} open: {ids}"
        )
    return problems


__all__ = [
    "PAIR",
    "i1_no_order_after_stop",
    "i2_live_never_with_stop",
    "i3_fills_once",
    "i4_open_orders_agree",
    "i5_stop_answer_matches",
    "live_windows",
]
