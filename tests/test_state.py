"""heliosd.risk.state against a real SQLite file: the trading state is derived from the breakers,
every transition bumps the epoch in its own transaction, and require() refuses a stale
premise inside the transaction that would commit it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from heliosd.core.errors import StateChanged
from heliosd.core.types import Mode, TradingState, utcnow
from heliosd.risk import state
from heliosd.risk.breakers import DAILY_LOSS, EMERGENCY, clear_sql, trip_sql
from heliosd.store import Store, set_mode


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state" / "heliosd.db")
    try:
        yield s
    finally:
        await s.close()


def test_derive_names_halting_breakers_first_then_the_emergency_stop() -> None:
    assert state.derive([]) == (TradingState.ACTIVE, "")
    assert state.derive([("daily_loss", "5%")]) == (TradingState.REDUCING, "daily_loss: 5%")
    assert state.derive([("zeta", ""), ("daily_loss", "5%"), ("emergency", "drill")]) == (
        TradingState.REDUCING, "emergency: drill; daily_loss: 5%; zeta",
    )  # fmt: skip
    got = state.derive([("emergency", "drill"), ("halt", "ops"), ("unclean_exit", "kill")])
    assert got == (TradingState.HALTED, "halt: ops; unclean_exit: kill; emergency: drill")


async def test_every_transition_bumps_the_epoch_and_rederives(store: Store) -> None:
    start = store.mode_state()
    assert (start.trading_state, start.state_reason) == (TradingState.ACTIVE, "")
    epoch = start.epoch

    await store.write(lambda c: trip_sql(c, EMERGENCY, mode=None, reason="drill"))
    ms = store.mode_state()
    assert (ms.trading_state, ms.state_reason, ms.epoch) == (
        TradingState.REDUCING, "emergency: drill", epoch + 1,
    )  # fmt: skip

    await store.write(lambda c: trip_sql(c, state.OPERATOR_HALT, mode=None, reason="ops"))
    ms = store.mode_state()
    assert (ms.trading_state, ms.epoch) == (TradingState.HALTED, epoch + 2)

    # A clear that clears nothing is still a transition (the caller meant one).
    await store.write(lambda c: clear_sql(c, ["nothing"], actor="t", reason="t"))
    assert store.mode_state().epoch == epoch + 3

    await store.write(
        lambda c: clear_sql(c, [EMERGENCY, state.OPERATOR_HALT], actor="t", reason="t")
    )
    ms = store.mode_state()
    assert (ms.trading_state, ms.state_reason, ms.epoch) == (TradingState.ACTIVE, "", epoch + 4)

    await store.write(
        lambda c: set_mode(store, c, Mode.LIVE, actor="t", reason="t", confirmed=True)
    )
    ms = store.mode_state()
    assert (ms.mode, ms.epoch, ms.verified) == (Mode.LIVE, epoch + 5, True)


async def test_an_expired_breaker_counts_only_until_sync_rederives(store: Store) -> None:
    until = utcnow() + timedelta(milliseconds=50)
    await store.write(lambda c: trip_sql(c, DAILY_LOSS, mode=Mode.PAPER, reason="5%", until=until))
    assert store.mode_state().trading_state is TradingState.REDUCING
    later = until + timedelta(seconds=1)
    row = await store.write(lambda c: state.sync(c, later))
    assert (row.state, row.reason) == (TradingState.ACTIVE, "")
    assert store.mode_state().trading_state is TradingState.ACTIVE


async def test_require_refuses_a_stale_epoch_or_a_state_other_than_asked(store: Store) -> None:
    epoch = store.mode_state().epoch
    assert (await store.write(lambda c: state.require(c, epoch=epoch))).epoch == epoch

    await store.write(lambda c: trip_sql(c, EMERGENCY, mode=None, reason="drill"))
    with pytest.raises(StateChanged) as info:
        await store.write(lambda c: state.require(c, epoch=epoch))
    assert info.value.details == {
        "epoch": epoch + 1, "trading_state": "REDUCING", "reason": "emergency: drill",
    }  # fmt: skip
    assert "epoch" in info.value.message and "nothing was changed" in info.value.message
    # Right epoch, wrong state: still refused.
    with pytest.raises(StateChanged):
        await store.write(lambda c: state.require(c, epoch=epoch + 1))
    row = await store.write(
        lambda c: state.require(c, epoch=epoch + 1, state=TradingState.REDUCING)
    )
    assert row.state is TradingState.REDUCING


async def test_a_missing_row_or_an_unknown_state_reads_as_halted_never_active(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):  # the schema refuses an unknown state
        await store.write(
            lambda c: c.execute("UPDATE trading_mode_state SET trading_state = 'BOGUS'")
        )
    await store.write(lambda c: c.execute("DELETE FROM trading_mode_state"))
    ms = store.mode_state()
    assert (ms.mode, ms.trading_state, ms.epoch) == (Mode.PAPER, TradingState.HALTED, -1)
    row = await store.read(state.read)
    assert row.state is TradingState.HALTED
