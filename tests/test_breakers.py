"""heliosd.risk.breakers' own contract against a real SQLite file: breakers latch in the
``breakers`` table (a restart never clears one), ``trip_sql``/``clear_sql`` re-derive the
trading state of heliosd.risk.state in the caller's transaction (rolled back together), a
breaker's ``until`` ends it, and the ``Breakers`` cache reads, words and journals only what
was committed.

What other files already cover (not repeated here):

* tests/test_state.py -- derive's wording, the epoch bump on each trip, clear and mode change,
  sync after an expiry, require.
* tests/test_router_permits.py, tests/test_router_scenarios.py -- how the router refuses
  orders while a breaker is tripped.
* tests/test_stops_e2e.py, tests/test_safety_daemon.py, tests/test_risk_e2e.py -- stops,
  halts, resumes and the daily-loss halt in a running daemon.
* tests/test_monitors_failclosed.py -- monitors tripping breakers under their own names.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from heliosd.core.protocols import BreakerState
from heliosd.core.types import Mode, TradingState, utcnow
from heliosd.risk import state
from heliosd.risk.breakers import (
    BUILTIN,
    DAILY_LOSS,
    DRAWDOWN,
    EMERGENCY,
    Breakers,
    clear_sql,
    trip_sql,
)
from heliosd.store import Store, parse_dt
from heliosd.testing import wait_for

HOUR = timedelta(hours=1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state" / "heliosd.db")
    try:
        yield s
    finally:
        await s.close()


async def rows(store: Store) -> dict[str, dict[str, Any]]:
    """Every row of the breakers table, cleared ones too, by name."""

    def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        cur = conn.execute("SELECT * FROM breakers ORDER BY name")
        keys = [d[0] for d in cur.description]
        return {r[0]: dict(zip(keys, r, strict=True)) for r in cur.fetchall()}

    return await store.read(read)


async def trip(
    store: Store, name: str, reason: str = "why", *, mode: Mode | None = None,
    until: datetime | None = None,
) -> None:  # fmt: skip
    await store.write(lambda c: trip_sql(c, name, mode=mode, reason=reason, until=until))


async def clear(store: Store, *names: str, actor: str = "alice") -> int:
    cleared: int = await store.write(
        lambda c: clear_sql(c, list(names), actor=actor, reason="resume")
    )
    return cleared


class Undo(Exception):
    """Raised inside a write to roll its transaction back."""


# --------------------------------------------------------------------------- trip_sql


async def test_a_trip_latches_its_row_and_rederives_the_state_in_one_transaction(
    store: Store,
) -> None:
    epoch = store.mode_state().epoch
    await trip(store, DAILY_LOSS, "5% down", mode=Mode.LIVE, until=utcnow() + HOUR)
    row = (await rows(store))[DAILY_LOSS]
    assert (row["mode"], row["reason"], row["cleared_at"]) == ("LIVE", "5% down", None)
    assert parse_dt(row["tripped_at"]).utcoffset() == timedelta(0)  # aware UTC
    ms = store.mode_state()
    assert (ms.trading_state, ms.state_reason, ms.epoch) == (
        TradingState.REDUCING, "daily_loss: 5% down", epoch + 1,
    )  # fmt: skip

    await trip(store, "stale_prices", "no quote", mode=None)  # a plugin's name: global
    assert (await rows(store))["stale_prices"]["mode"] is None
    assert store.mode_state().trading_state is TradingState.REDUCING
    await trip(store, state.OPERATOR_HALT, "ops")
    assert store.mode_state().trading_state is TradingState.HALTED


async def test_a_trip_rolled_back_with_its_transaction_leaves_no_row_and_no_new_state(
    store: Store,
) -> None:
    before = store.mode_state()

    def tx(conn: sqlite3.Connection) -> None:
        trip_sql(conn, EMERGENCY, mode=None, reason="drill")
        raise Undo

    with pytest.raises(Undo):
        await store.write(tx)
    after = store.mode_state()
    assert await rows(store) == {}
    assert (after.trading_state, after.epoch) == (TradingState.ACTIVE, before.epoch)


async def test_re_tripping_a_cleared_breaker_latches_it_again_with_the_new_facts(
    store: Store,
) -> None:
    await trip(store, DAILY_LOSS, "old", mode=Mode.PAPER, until=utcnow() + HOUR)
    await clear(store, DAILY_LOSS)
    assert store.mode_state().trading_state is TradingState.ACTIVE
    await trip(store, DAILY_LOSS, "new", mode=Mode.LIVE)  # no until now: latched for good
    [(name, row)] = (await rows(store)).items()  # one row per name
    assert (name, row["reason"], row["mode"], row["until"]) == (DAILY_LOSS, "new", "LIVE", None)
    assert (row["cleared_at"], row["cleared_by"], row["clear_reason"]) == (None, None, None)
    assert store.mode_state().state_reason == "daily_loss: new"


async def test_a_trip_whose_until_has_passed_is_recorded_but_halts_nothing(
    store: Store,
) -> None:
    epoch = store.mode_state().epoch
    gone = utcnow() - HOUR
    await trip(store, DAILY_LOSS, "yesterday", until=gone)
    ms = store.mode_state()
    assert (ms.trading_state, ms.epoch) == (TradingState.ACTIVE, epoch + 1)
    breakers = Breakers(store)
    await breakers.load()
    assert breakers.states() == {} and breakers.halt_reason() is None
    assert (await rows(store))[DAILY_LOSS]["cleared_at"] is None  # still latched in the table


async def test_until_ends_a_breaker_in_the_cache_at_once_and_in_the_row_at_the_next_sync(
    store: Store,
) -> None:
    """The row stays stricter than it needs to be until someone syncs, never looser."""
    until = utcnow() + timedelta(milliseconds=150)
    await trip(store, DAILY_LOSS, "5%", until=until)
    breakers = Breakers(store)
    await breakers.load()
    assert breakers.is_tripped(DAILY_LOSS)
    await wait_until(until)
    assert not breakers.is_tripped(DAILY_LOSS)
    assert store.mode_state().trading_state is TradingState.REDUCING
    epoch = store.mode_state().epoch
    row = await store.write(state.sync)
    assert (row.state, row.epoch) == (TradingState.ACTIVE, epoch + 1)


async def wait_until(at: datetime) -> None:
    """Until the wall clock has passed ``at`` (a real wait: the expiry is the event)."""
    await wait_for(lambda: utcnow() > at, timeout=5.0, what=f"the clock to pass {at}")


# --------------------------------------------------------------------------- clear_sql


async def test_clear_counts_only_breakers_still_latched_and_keeps_the_first_clear(
    store: Store,
) -> None:
    await trip(store, EMERGENCY, "drill")
    await trip(store, DAILY_LOSS, "5%")
    cleared = await clear(store, EMERGENCY, DAILY_LOSS, "never_tripped", EMERGENCY)
    assert cleared == 2
    assert store.mode_state().trading_state is TradingState.ACTIVE
    epoch = store.mode_state().epoch
    assert await clear(store, EMERGENCY, actor="bob") == 0  # nothing latched: nothing cleared
    assert store.mode_state().epoch == epoch + 1  # still a transition
    table = await rows(store)
    assert set(table) == {EMERGENCY, DAILY_LOSS}  # cleared rows stay as history
    row = table[EMERGENCY]
    assert (row["cleared_by"], row["clear_reason"]) == ("alice", "resume")
    assert parse_dt(row["cleared_at"]).utcoffset() == timedelta(0)


async def test_clearing_one_breaker_keeps_the_others_in_the_derived_state(store: Store) -> None:
    await trip(store, EMERGENCY, "drill")
    await trip(store, state.UNCLEAN_EXIT, "kill -9")
    assert store.mode_state().trading_state is TradingState.HALTED
    assert await clear(store, state.UNCLEAN_EXIT) == 1
    ms = store.mode_state()
    assert (ms.trading_state, ms.state_reason) == (TradingState.REDUCING, "emergency: drill")


async def test_a_clear_rolled_back_with_its_transaction_leaves_the_stop_latched(
    store: Store,
) -> None:
    await trip(store, EMERGENCY, "drill")
    before = store.mode_state()

    def tx(conn: sqlite3.Connection) -> None:
        assert clear_sql(conn, [EMERGENCY], actor="alice", reason="resume") == 1
        raise Undo

    with pytest.raises(Undo):
        await store.write(tx)
    after = store.mode_state()
    assert (after.trading_state, after.epoch) == (TradingState.REDUCING, before.epoch)
    assert (await rows(store))[EMERGENCY]["cleared_at"] is None


# --------------------------------------------------------------------------- the cache


async def test_load_after_a_restart_restores_every_latched_breaker_and_no_cleared_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heliosd.db"
    until = (utcnow() + HOUR).replace(microsecond=0)
    first = await Store.open(path)
    try:
        await trip(first, EMERGENCY, "drill")
        await trip(first, DAILY_LOSS, "5%", mode=Mode.LIVE, until=until)
        await trip(first, "plugin_guard", "odd fills")
        await clear(first, "plugin_guard")
    finally:
        await first.close()

    second = await Store.open(path)
    try:
        breakers = Breakers(second)
        await breakers.load()
        assert dict(breakers.states()) == {
            EMERGENCY: BreakerState(EMERGENCY, True, "drill", None),
            DAILY_LOSS: BreakerState(DAILY_LOSS, True, "5%", until),
        }
        assert breakers.states()[DAILY_LOSS].until == until  # aware, same instant
        assert second.mode_state().trading_state is TradingState.REDUCING
    finally:
        await second.close()


async def test_halt_reason_names_the_emergency_first_then_the_others_by_name(
    store: Store,
) -> None:
    breakers = Breakers(store)
    await breakers.load()
    assert breakers.halt_reason() is None
    breakers.committed_trip("zeta_guard", "odd", None)
    breakers.committed_trip(DAILY_LOSS, "5%", utcnow() + HOUR)
    assert breakers.halt_reason() == "daily_loss: 5%"
    breakers.committed_trip(EMERGENCY, "drill", None)
    assert breakers.halt_reason() == "emergency: drill"
    breakers.committed_clear([EMERGENCY, DAILY_LOSS])
    assert breakers.halt_reason() == "zeta_guard: odd"
    assert not breakers.is_tripped(EMERGENCY) and breakers.is_tripped("zeta_guard")


async def test_an_expired_breaker_reads_as_not_tripped_everywhere(store: Store) -> None:
    breakers = Breakers(store)
    await breakers.load()
    live_until = utcnow() + HOUR
    breakers.committed_trip(DAILY_LOSS, "yesterday", utcnow() - HOUR)
    breakers.committed_trip("late_guard", "old", utcnow() - HOUR)
    breakers.committed_trip("guard", "now", live_until)
    assert set(breakers.states()) == {"guard"}
    assert not breakers.is_tripped(DAILY_LOSS) and breakers.halt_reason() == "guard: now"
    out = breakers.as_json()
    assert out[DAILY_LOSS] == {"tripped": False, "reason": "", "until": None}
    assert "late_guard" not in out  # an expired plugin breaker is not listed at all
    assert out["guard"]["until"] == live_until.isoformat()


async def test_as_json_lists_the_builtin_breakers_always_then_plugin_ones_by_name(
    store: Store,
) -> None:
    breakers = Breakers(store)
    await breakers.load()
    assert list(breakers.as_json()) == [EMERGENCY, DAILY_LOSS, DRAWDOWN]
    assert set(breakers.as_json()) == BUILTIN
    until = datetime(2030, 1, 2, 0, 0, tzinfo=UTC)
    breakers.committed_trip("zz", "z", None)
    breakers.committed_trip("aa", "a", None)
    breakers.committed_trip(DAILY_LOSS, "5%", until)
    out = breakers.as_json()
    assert list(out) == [EMERGENCY, DAILY_LOSS, DRAWDOWN, "aa", "zz"]
    assert out[DAILY_LOSS] == {
        "tripped": True,
        "reason": "5%",
        "until": "2030-01-02T00:00:00+00:00",
    }
    assert out[EMERGENCY] == {"tripped": False, "reason": "", "until": None}
    assert out["aa"] == {"tripped": True, "reason": "a", "until": None}


# --------------------------------------------------------------------------- the journal


def trading_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, str]]]:
    return [
        (r.levelno, dict(r.event_fields))  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", None) == "trading_state"
    ]


async def test_the_journal_gets_one_line_per_committed_change_of_the_trading_state(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    breakers = Breakers(store)
    with caplog.at_level(logging.INFO, logger="heliosd.journal"):
        await breakers.load()  # ACTIVE at start: nothing to say
        await trip(store, EMERGENCY, "drill")
        breakers.committed_trip(EMERGENCY, "drill", None)
        breakers.journal_state(EMERGENCY)  # the same state again: no second line
        await clear(store, EMERGENCY)
        breakers.committed_clear([EMERGENCY])
    epoch = store.mode_state().epoch
    assert trading_lines(caplog) == [
        (logging.WARNING, {"from": "ACTIVE", "to": "REDUCING", "reason": "emergency: drill",
                           "breaker": "emergency", "epoch": str(epoch - 1)}),
        (logging.INFO, {"from": "REDUCING", "to": "ACTIVE", "reason": "", "breaker": "emergency",
                        "epoch": str(epoch)}),
    ]  # fmt: skip


async def test_load_journals_a_stop_found_at_start(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await trip(store, state.UNCLEAN_EXIT, "kill -9")
    with caplog.at_level(logging.INFO, logger="heliosd.journal"):
        await Breakers(store).load()
    [(level, fields)] = trading_lines(caplog)
    assert level == logging.WARNING and "from" not in fields and "breaker" not in fields
    assert (fields["to"], fields["reason"]) == ("HALTED", "unclean_exit: kill -9")


# --------------------------------------------------------------------------- a small machine

NAMES = [EMERGENCY, DAILY_LOSS, DRAWDOWN, state.OPERATOR_HALT, state.UNCLEAN_EXIT, "guard"]
OPS = hs.lists(
    hs.one_of(
        hs.tuples(hs.just("trip"), hs.sampled_from(NAMES), hs.sampled_from([None, -1, 1])),
        hs.tuples(hs.just("clear"), hs.lists(hs.sampled_from(NAMES), max_size=3), hs.none()),
    ),
    min_size=1,
    max_size=12,
)


async def _run_machine(ops: Sequence[tuple[str, Any, int | None]], tmp: Path) -> None:
    """After every trip or clear: the epoch moved by exactly one, the state is the one
    derived from the breakers still latched and not expired, clear counted exactly the
    latched names it was given, and a fresh load mirrors the table."""
    store = await Store.open(tmp / "heliosd.db")
    try:
        latched: dict[str, tuple[str, datetime | None]] = {}  # name -> (reason, until)
        for n, (kind, arg, hours) in enumerate(ops):
            epoch = store.mode_state().epoch
            now = utcnow()
            if kind == "trip":
                until = None if hours is None else now + timedelta(hours=hours)
                await trip(store, arg, f"r{n}", until=until)
                latched[arg] = (f"r{n}", until)
            else:
                assert await clear(store, *arg) == len(set(arg) & set(latched))
                for name in arg:
                    latched.pop(name, None)
            counting = {k: v for k, v in latched.items() if v[1] is None or v[1] > now}
            expected = state.derive([(k, r) for k, (r, _) in counting.items()])
            ms = store.mode_state()
            assert (ms.trading_state, ms.state_reason, ms.epoch) == (*expected, epoch + 1)
            breakers = Breakers(store)
            await breakers.load()
            assert {k: (s.reason, s.until) for k, s in breakers.states().items()} == counting
    finally:
        await store.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_the_state_is_always_the_one_derived_from_the_latched_breakers(
    ops: list[tuple[str, Any, int | None]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_machine(ops, Path(tmp)))
