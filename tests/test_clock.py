"""heliosd.core.clock: the core's one wall clock, which a test holds and moves (17.10).

Every module reads the time through ``heliosd.core.types.utcnow``, however it imported the
name, so holding the clock moves all of them at once and nothing is monkeypatched. The
simulator keeps its own clock on purpose: it is the venue, and a test that moves heliosd's
time must not move VALR's (tests/test_paper_quote_age.py and test_flows_search.py hold it)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heliosd.core import clock
from heliosd.core.clock import ManualClock
from heliosd.core.types import Mode, TradingState, utcnow
from heliosd.risk import state as trading
from heliosd.risk.breakers import DAILY_LOSS, trip_sql
from heliosd.store import Store

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_the_system_clock_is_utc_aware_and_used_unless_a_test_holds_another() -> None:
    before = datetime.now(UTC)
    seen = utcnow()
    assert seen.tzinfo is UTC and before <= seen <= datetime.now(UTC)


def test_a_held_clock_stands_still_moves_when_told_and_is_released_even_on_error() -> None:
    held = ManualClock(NOW)

    def moved() -> None:
        with clock.use(held):
            assert utcnow() == NOW and utcnow() == NOW  # stands still
            held.advance(1.5)
            assert utcnow() == NOW + timedelta(seconds=1.5)
            held.set(NOW - timedelta(hours=1))  # a clock may step back (NTP): readers cope
            assert utcnow() == NOW - timedelta(hours=1)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        moved()
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)  # the system's again


def test_a_ticking_clock_stamps_each_reading_after_the_one_before() -> None:
    ticking = ManualClock(NOW, tick=timedelta(microseconds=1))
    with clock.use(ticking):
        first, second = utcnow(), utcnow()
    assert second - first == timedelta(microseconds=1) and first == NOW


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC-aware"):
        ManualClock(datetime(2026, 12, 4, 12, 0))
    with pytest.raises(ValueError, match="UTC-aware"):
        ManualClock(NOW).set(datetime(2026, 12, 4))


async def test_modules_that_imported_utcnow_by_name_follow_the_held_clock(tmp_path: Path) -> None:
    """breakers and state imported ``utcnow`` by name; a daily-loss halt stamped under the
    held clock, with an ``until`` a minute later, holds REDUCING until the test moves the
    clock past it, with no sleep and no patch."""
    store = await Store.open(tmp_path / "heliosd.db")
    held = ManualClock(NOW)
    try:
        with clock.use(held):

            def trip(conn: sqlite3.Connection) -> trading.StateRow:
                trip_sql(conn, DAILY_LOSS, mode=Mode.LIVE, reason="test",
                         until=NOW + timedelta(seconds=60))  # fmt: skip
                return trading.read(conn)

            row = await store.write(trip)
            assert row.state == TradingState.REDUCING
            sql = "SELECT tripped_at FROM breakers WHERE name = ?"
            tripped = await store.read(lambda c: c.execute(sql, (DAILY_LOSS,)).fetchone()[0])
            assert datetime.fromisoformat(tripped) == NOW  # stamped by the held clock
            held.advance(59)
            assert (await store.write(trading.sync)).state == TradingState.REDUCING
            held.advance(2)
            assert (await store.write(trading.sync)).state == TradingState.ACTIVE
    finally:
        await store.close()


def test_the_opt_in_fixture_holds_the_clock(heliosd_clock: ManualClock) -> None:
    start = utcnow()
    assert utcnow() == start  # held
    heliosd_clock.advance(3600)
    assert utcnow() - start == timedelta(hours=1)
