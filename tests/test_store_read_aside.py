"""Store.read_aside: a display read on a connection of its own. It sees every commit made
before it, never an uncommitted write, and does not wait behind a group commit (a real
SQLite file, a write held open in the writer's thread)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

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
