"""Store.read_aside: a display read on a kept connection of its own. It sees every commit made
before it (*fresh snapshot*, even after a read that left a cursor half read), never an
uncommitted write, and does not wait behind a group commit (a real SQLite file, a write held
open in the writer's thread)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from heliosd.store import Store


async def test_read_aside_does_not_wait_for_a_commit_and_sees_only_committed_rows(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state" / "heliosd.db")
    try:
        await store.write(lambda c: c.execute("CREATE TABLE probe(x INTEGER)"))
        await store.write(lambda c: c.execute("INSERT INTO probe VALUES (1)"))
        inside, release = threading.Event(), threading.Event()

        def held(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO probe VALUES (2)")
            inside.set()
            release.wait(10)  # the writer's thread is busy in a batch until released

        pending = store.submit(held)
        assert await asyncio.to_thread(inside.wait, 10)

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM probe").fetchone()[0])

        # Answered while the batch is open: the committed row only.
        assert await asyncio.wait_for(store.read_aside(count), 5) == 1
        # Store.read runs on the writer's thread: it waits for the batch.
        behind = asyncio.ensure_future(store.read(count))
        await asyncio.sleep(0.2)
        assert not behind.done()
        release.set()
        await pending
        assert await behind == 2
        assert await store.read_aside(count) == 2
    finally:
        release.set()
        await store.close()


async def test_the_equity_curve_is_read_beside_an_open_commit(tmp_path: Path) -> None:
    """The interleaving GET /api/equity guards against: a point being written (its batch open
    in the writer's thread) while the curve is read. The read answers at once with the
    committed points, never the half-written one, and the next read has it."""
    from heliosd.core.types import Mode
    from heliosd.risk.equity import EquityRecorder

    store = await Store.open(tmp_path / "state" / "heliosd.db")
    inside, release = threading.Event(), threading.Event()
    try:
        recorder = EquityRecorder(store, retention_days=30, kick=lambda _mode: None)
        row = ("INSERT INTO equity_points(mode, at, kind, equity, peak, day_start_equity,"
               " daily_pnl) VALUES ('LIVE', ?, 'fill', '100', '100', '100', '0')")  # fmt: skip
        await store.write(lambda c: c.execute(row, ("2026-12-04T10:00:00.000000+00:00",)))

        def held(conn: sqlite3.Connection) -> None:
            conn.execute(row, ("2026-12-04T10:01:00.000000+00:00",))
            inside.set()
            release.wait(10)

        pending = store.submit(held)
        assert await asyncio.to_thread(inside.wait, 10)
        during = await asyncio.wait_for(recorder.points(Mode.LIVE, None), 5)
        assert [p["at"] for p in during["points"]] == ["2026-12-04T10:00:00.000000+00:00"]
        release.set()
        await pending
        after = await recorder.points(Mode.LIVE, None)
        assert after["total"] == 2 and after["points"][-1]["at"].startswith("2026-12-04T10:01")
    finally:
        release.set()
        await store.close()


async def test_a_cursor_left_half_read_pins_no_snapshot_and_no_checkpoint(tmp_path: Path) -> None:
    """The kept connection's invariant (heliosd.store.aside): a read that returns with a
    statement still active, its cursor still referenced, must not leave the next read on
    an old snapshot, nor hold back the WAL checkpoint of a long-running daemon."""
    db = tmp_path / "state" / "heliosd.db"
    store = await Store.open(db)
    kept: list[sqlite3.Cursor] = []
    try:
        await store.write(lambda c: c.execute("CREATE TABLE probe(x INTEGER)"))
        await store.write(lambda c: c.executemany("INSERT INTO probe VALUES (?)", [(1,), (2,)]))

        def half(conn: sqlite3.Connection) -> int:
            cursor = conn.execute("SELECT x FROM probe ORDER BY x")
            kept.append(cursor)  # still referenced, one row of two read
            return int(cursor.fetchone()[0])

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM probe").fetchone()[0])

        assert await store.read_aside(half) == 1
        await store.write(lambda c: c.execute("INSERT INTO probe VALUES (3)"))
        assert await store.read_aside(count) == 3  # a fresh snapshot, not the half read's

        checkpoint = sqlite3.connect(db)
        try:
            busy, log, done = checkpoint.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            checkpoint.close()
        assert busy == 0 and done == log, (busy, log, done)  # no reader holds the WAL back
        # Many at once share the one connection, one at a time, each answered.
        assert await asyncio.gather(*(store.read_aside(count) for _ in range(20))) == [3] * 20
    finally:
        kept.clear()
        await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.read_aside(count)
