"""heliosd.state on a real SQLite file: derived from the breakers, every transition bumps the
epoch in its own transaction, require() refuses a stale premise, and a passed ``until``
syncs the row exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from heliosd import state
from heliosd import store as st
from heliosd.breakers import Breakers, clear_sql, expire_sql, trip_sql
from heliosd.errors import StateChanged
from heliosd.store import Store
from heliosd.types import Mode, TradingState, utcnow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        yield s
    finally:
        await s.close()


def test_derive_orders_halting_first_then_the_emergency_then_by_name() -> None:
    assert state.derive([]) == (TradingState.ACTIVE, "")
    assert state.derive([("daily_loss", "5%")]) == (TradingState.REDUCING, "daily_loss: 5%")
    got = state.derive([("zeta", "z"), ("emergency", "e"), ("halt", "h"), ("alpha", "")])
    assert got == (TradingState.HALTED, "halt: h; emergency: e; alpha; zeta: z")
    assert state.derive([("unclean_exit", "kill -9")])[0] is TradingState.HALTED


async def test_every_transition_bumps_the_epoch_and_the_state_follows_the_breakers(
    store: Store,
) -> None:
    first = store.mode_state()
    assert (first.trading_state, first.state_reason) == (TradingState.ACTIVE, "")
    epochs = [first.epoch]

    async def step(fn: object) -> None:
        await store.write(fn)  # type: ignore[arg-type]
        epochs.append(store.mode_state().epoch)

    await step(lambda c: trip_sql(c, "emergency", mode=None, reason="drill"))
    assert store.mode_state().trading_state is TradingState.REDUCING
    await step(lambda c: trip_sql(c, "halt", mode=None, reason="look"))
    assert store.mode_state().trading_state is TradingState.HALTED
    assert store.mode_state().state_reason == "halt: look; emergency: drill"
    await step(lambda c: clear_sql(c, ["halt"], actor="t", reason="ok"))
    assert store.mode_state().trading_state is TradingState.REDUCING
    await step(lambda c: clear_sql(c, ["emergency"], actor="t", reason="ok"))
    assert store.mode_state().trading_state is TradingState.ACTIVE
    await step(lambda c: st.set_mode(store, c, Mode.PAPER, actor="t", reason="r",
                                     confirmed=False))  # fmt: skip
    assert epochs == list(range(epochs[0], epochs[0] + len(epochs)))  # +1 each, no gaps


async def test_require_raises_state_changed_and_the_transaction_rolls_back(store: Store) -> None:
    epoch = store.mode_state().epoch

    def switch(conn: object) -> None:
        state.require(conn, epoch=epoch)  # type: ignore[arg-type]
        st.set_mode(store, conn, Mode.LIVE, actor="t", reason="r", confirmed=True)  # type: ignore[arg-type]

    await store.write(lambda c: trip_sql(c, "emergency", mode=None, reason="stop"))
    with pytest.raises(StateChanged) as info:
        await store.write(switch)
    assert info.value.details["trading_state"] == "REDUCING"
    assert info.value.details["epoch"] == epoch + 1
    assert store.mode_state().mode is Mode.PAPER  # nothing written
    # Right epoch but not ACTIVE is refused too.
    with pytest.raises(StateChanged):
        await store.write(lambda c: state.require(c, epoch=epoch + 1))
    await store.write(lambda c: clear_sql(c, ["emergency"], actor="t", reason="r"))
    now = store.mode_state().epoch
    row = await store.write(lambda c: state.require(c, epoch=now))
    assert row.state is TradingState.ACTIVE


async def test_an_expired_until_syncs_the_row_once(store: Store) -> None:
    breakers = Breakers(store)
    soon = utcnow() + timedelta(milliseconds=1)
    await store.write(lambda c: trip_sql(c, "daily_loss", mode=Mode.PAPER, reason="5%",
                                         until=soon))  # fmt: skip
    breakers.committed_trip("daily_loss", "5%", soon)
    assert store.mode_state().trading_state is TradingState.REDUCING
    assert breakers.next_expiry() == soon
    while utcnow() <= soon:
        pass
    before = store.mode_state().epoch
    assert await store.write(expire_sql) is True
    after = store.mode_state()
    assert (after.trading_state, after.epoch) == (TradingState.ACTIVE, before + 1)
    assert await store.write(expire_sql) is False  # already says so: no new epoch
    assert store.mode_state().epoch == before + 1
    breakers.drop_expired()
    assert breakers.next_expiry() is None and not breakers.states()


async def test_a_missing_row_reads_as_halted(store: Store) -> None:
    await store.write(lambda c: c.execute("DELETE FROM trading_mode_state"))
    row = await store.read(state.read)
    assert row.state is TradingState.HALTED and row.epoch == -1
