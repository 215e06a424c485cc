"""The store against a real SQLite file: migrations, group commit, mode seal, out-of-band SQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd import store as st
from heliosd.core.types import Fill, Mode, Side
from heliosd.store import Store


async def test_fresh_db_is_paper_with_runbook_tables(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        state = s.mode_state()
        assert state.mode is Mode.PAPER and state.verified
        cols = await s.read(
            lambda c: [r[1] for r in c.execute("PRAGMA table_info(trading_mode_state)")]
        )
        assert cols[:4] == ["id", "current_mode", "updated_at", "updated_by"]
        hcols = await s.read(
            lambda c: [r[1] for r in c.execute("PRAGMA table_info(trading_mode_history)")]
        )
        assert hcols[:6] == ["id", "old_mode", "new_mode", "changed_at", "changed_by", "reason"]
        journal = await s.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert journal == "wal"
    finally:
        await s.close()
    # the singleton cannot hold a second row nor an unknown mode
    conn = sqlite3.connect(tmp_path / "heliosd.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO trading_mode_state(id, current_mode, updated_at, updated_by)"
            " VALUES (2, 'PAPER', 'x', 'y')"
        )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE trading_mode_state SET current_mode = 'YOLO' WHERE id = 1")
    conn.close()


async def test_sealed_live_survives_reopen_and_history_is_written_together(tmp_path: Path) -> None:
    path = tmp_path / "heliosd.db"
    s = await Store.open(path)
    await s.write(
        lambda c: st.set_mode(s, c, Mode.LIVE, actor="alice", reason="go", confirmed=True)
    )
    assert s.mode_state().mode is Mode.LIVE and s.mode_state().verified
    await s.close()
    s2 = await Store.open(path)
    try:
        state = s2.mode_state()
        assert state.mode is Mode.LIVE and state.verified and state.updated_by == "alice"
        rows = await s2.read(lambda c: st.history(c, 10))
        assert [(r["old_mode"], r["new_mode"], r["changed_by"]) for r in rows] == [
            ("PAPER", "LIVE", "alice")
        ]
    finally:
        await s2.close()


async def test_out_of_band_sql_is_seen_next_read_and_unsealed_live_is_untrusted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heliosd.db"
    s = await Store.open(path)
    try:
        await s.write(
            lambda c: st.set_mode(s, c, Mode.LIVE, actor="alice", reason="go", confirmed=True)
        )
        assert s.mode_state().verified
        # The operator runbook's rollback, from another process/connection:
        other = sqlite3.connect(path)
        other.execute("UPDATE trading_mode_state SET current_mode = 'PAPER' WHERE id = 1")
        other.commit()
        assert s.mode_state().mode is Mode.PAPER  # no restart needed
        # ... and a hand-made LIVE is never trusted, even back to the sealed value
        other.execute("UPDATE trading_mode_state SET current_mode = 'LIVE' WHERE id = 1")
        other.commit()
        other.close()
        state = s.mode_state()
        assert state.mode is Mode.LIVE and not state.verified
        rows = await s.read(lambda c: st.history(c, 10))
        assert [(r["new_mode"], r["changed_by"]) for r in rows[:2]] == [
            ("LIVE", "out-of-band SQL"),
            ("PAPER", "out-of-band SQL"),
        ]
    finally:
        await s.close()


async def test_failing_write_rolls_back_alone_in_a_group_commit(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:

        def good(i: int) -> st.WriteFn[None]:
            return lambda c: st.audit(c, actor="t", action=f"a{i}", outcome="ok")

        def bad(c: sqlite3.Connection) -> None:
            st.audit(c, actor="t", action="bad", outcome="ok")
            raise ValueError("boom")

        futs = [s.submit(good(i)) for i in range(50)] + [s.submit(bad)]
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert isinstance(results[-1], ValueError)
        rows = await s.read(lambda c: st.audit_rows(c, 100))
        actions = {r["action"] for r in rows}
        assert "bad" not in actions and len(actions) == 50
        assert s.commits < 51  # grouped, not one commit per write
    finally:
        await s.close()


async def test_close_during_a_commit_with_a_write_queued_drains_and_returns(
    tmp_path: Path,
) -> None:
    """Shutdown during a burst: close() arrives while one batch commits in the writer's
    thread and another write waits its turn. Both writes commit and close() returns (it
    used to hang for good: the wake close() sent was spent on the queued batch)."""
    s = await Store.open(tmp_path / "heliosd.db")
    entered, gate = threading.Event(), threading.Event()

    def held(c: sqlite3.Connection) -> None:
        st.audit(c, actor="t", action="held", outcome="ok")
        entered.set()
        gate.wait(10)

    try:
        first = s.submit(held)
        assert await asyncio.to_thread(entered.wait, 5)
        second = s.submit(lambda c: st.audit(c, actor="t", action="queued", outcome="ok"))
        closing = asyncio.ensure_future(s.close())
        await asyncio.sleep(0.05)  # close() has sent its wake while the batch is in flight
        assert not closing.done()
    finally:
        gate.set()
    await asyncio.wait_for(closing, 5)
    await first
    await second
    conn = sqlite3.connect(tmp_path / "heliosd.db")
    actions = {r[0] for r in conn.execute("SELECT action FROM audit")}
    conn.close()
    assert {"held", "queued"} <= actions


async def test_fill_stored_once(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    fill = Fill(
        trade_id="t-1",
        pair="BTCZAR",
        side=Side.BUY,
        price=Decimal("1000000"),
        quantity=Decimal("0.01"),
        fee=Decimal("0.00001"),
        fee_currency="BTC",
        traded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    try:
        assert await s.write(lambda c: st.insert_fill(c, Mode.LIVE, fill, None))
        assert not await s.write(lambda c: st.insert_fill(c, Mode.LIVE, fill, None))
        assert await s.write(lambda c: st.insert_fill(c, Mode.PAPER, fill, None))
        fills = await s.read(lambda c: st.load_fills(c, Mode.LIVE))
        assert fills == [fill]
    finally:
        await s.close()


async def test_online_backup_is_a_consistent_copy(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        await s.write(lambda c: st.set_mode(s, c, Mode.LIVE, actor="a", reason="r", confirmed=True))
        dest = await s.backup(tmp_path / "backups" / "copy.db")
    finally:
        await s.close()
    conn = sqlite3.connect(dest)
    assert conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()[0] == "LIVE"
    conn.close()
    assert (dest.stat().st_mode & 0o777) == 0o600


async def test_a_group_commit_runs_in_one_worker_thread_hop(tmp_path: Path) -> None:
    """store.py relies on aiosqlite's internal ``Connection._execute`` (pyproject caps the
    version for it): every job of a batch runs in aiosqlite's worker thread, never on the
    event loop's, and concurrent writes share one commit."""
    store = await Store.open(tmp_path / "h.db")
    try:
        loop_thread = threading.get_ident()
        commits = store.commits

        def job(conn: sqlite3.Connection) -> int:
            conn.execute("SELECT 1").fetchone()
            return threading.get_ident()

        threads = await asyncio.gather(*(store.write(job) for _ in range(20)))
        assert len(set(threads)) == 1 and threads[0] != loop_thread
        assert store.commits - commits <= 2  # the first job, then the 19 queued behind it
    finally:
        await store.close()


async def test_migration_2_indexes_fills_by_order_and_upgrades_an_old_file(tmp_path: Path) -> None:
    """A database made at version 1 (before the index) is upgraded in place on open, and the
    query that sums an order's fills uses the index instead of scanning every fill."""
    path = tmp_path / "h.db"
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.execute("BEGIN")
        for statement in st._statements(st.MIGRATIONS[0]):
            raw.execute(statement)
        raw.execute("INSERT INTO trading_mode_state(id, current_mode, updated_at, updated_by)"
                    " VALUES (1, 'PAPER', '2026-01-01T00:00:00+00:00', 'v1')")  # fmt: skip
        raw.execute("PRAGMA user_version = 1")
        raw.execute("COMMIT")
    store = await Store.open(path)
    try:
        version = await store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == len(st.MIGRATIONS) >= 2
        plan = await store.read(lambda c: c.execute(
            "EXPLAIN QUERY PLAN SELECT order_id, quantity, price FROM fills"
            " WHERE order_id IN (?, ?)", (1, 2)).fetchall())  # fmt: skip
        assert any("fills_order" in str(row) for row in plan), plan
    finally:
        await store.close()
