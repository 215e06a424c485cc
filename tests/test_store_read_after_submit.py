"""Store.read, the *read-after-submit* invariant: a read sees every write submitted before
it began that committed, and a burst that keeps submitting cannot starve it. A real SQLite
file; writes held open in the writer's thread; and a seeded random search over
interleavings."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from heliosd.runtime.backend import store_alive
from heliosd.store import Store


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM probe").fetchone()[0])


def _ids(conn: sqlite3.Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute("SELECT x FROM probe")}


def _insert(x: int, gate: threading.Event | None = None, entered: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO probe VALUES (?)", (x,))
        if entered is not None:
            entered.set()
        if gate is not None:
            gate.wait(10)

    return fn


async def _open(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "state" / "heliosd.db")
    await store.write(lambda c: c.execute("CREATE TABLE probe(x INTEGER)"))
    return store


async def test_a_read_waits_for_the_write_submitted_before_it_and_sees_it(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    entered, release = threading.Event(), threading.Event()
    try:
        pending = store.submit(_insert(1, release, entered))
        assert await asyncio.to_thread(entered.wait, 10)
        reading = asyncio.ensure_future(store.read(_count))
        # read_aside answers at once and misses the uncommitted row; read waits.
        assert await asyncio.wait_for(store.read_aside(_count), 5) == 0
        await asyncio.sleep(0.2)
        assert not reading.done()
        release.set()
        await pending
        assert await asyncio.wait_for(reading, 5) == 1
    finally:
        release.set()
        await store.close()


async def test_a_read_waits_for_one_later_batch_at_most(tmp_path: Path) -> None:
    """A burst of fills keeps submitting; a page's read must still answer. It waits for the
    batch in flight when it began, and for at most the one batch the writer takes after it:
    held open here, so the read cannot answer until it commits, then sees it."""
    store = await _open(tmp_path)
    first_in, first_go = threading.Event(), threading.Event()
    second_in, second_go = threading.Event(), threading.Event()
    try:
        first = store.submit(_insert(1, first_go, first_in))
        assert await asyncio.to_thread(first_in.wait, 10)
        reading = asyncio.ensure_future(store.read(_ids))
        await asyncio.sleep(0)  # the read has taken its place in line
        second = store.submit(_insert(2, second_go, second_in))
        first_go.set()
        await first
        assert await asyncio.to_thread(second_in.wait, 10)  # the next batch is open
        third = store.submit(_insert(3))  # and more keeps coming
        second_go.set()
        assert await asyncio.wait_for(reading, 5) == {1, 2}
        await asyncio.gather(second, third)
    finally:
        first_go.set()
        second_go.set()
        await store.close()


async def test_a_read_is_not_starved_by_a_burst_that_never_stops(tmp_path: Path) -> None:
    """Writes keep arriving (20 every 2 ms, the fills bench's 10k/s, so the writer always has
    a batch in flight) for as long as the test reads: each read answers, and sees at least
    every write submitted before it."""
    store = await _open(tmp_path)
    stop = False
    submitted: list[asyncio.Future[None]] = []

    async def burst() -> None:
        x = 1000
        while not stop:
            submitted.extend(store.submit(_insert(x + i)) for i in range(20))
            x += 20
            await asyncio.sleep(0.002)

    flood = asyncio.ensure_future(burst())
    try:
        await asyncio.sleep(0.05)
        for _ in range(20):
            before = len(submitted)
            assert await asyncio.wait_for(store.read(_count), 5) >= before
    finally:
        stop = True
        await flood
        await asyncio.gather(*submitted)
        await store.close()


async def test_a_failed_or_cancelled_write_still_settles(tmp_path: Path) -> None:
    """A write that raises settles (the read answers, without it). A write whose caller
    cancelled its future still commits, and a read after it waits for and sees it: why the
    store counts writes instead of keeping the last write's future."""
    store = await _open(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO probe VALUES (99)")
        raise ValueError("refused")

    try:
        failing = store.submit(boom)
        assert await asyncio.wait_for(store.read(_ids), 5) == set()
        with pytest.raises(ValueError, match="refused"):
            await failing

        held = store.submit(_insert(5, release, entered))
        assert await asyncio.to_thread(entered.wait, 10)
        held.cancel()
        reading = asyncio.ensure_future(store.read(_ids))
        await asyncio.sleep(0.2)
        assert not reading.done()
        release.set()
        assert await asyncio.wait_for(reading, 5) == {5}
    finally:
        release.set()
        await store.close()


async def test_a_read_waiting_when_the_store_closes_is_answered(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    entered, release = threading.Event(), threading.Event()
    try:
        store.submit(_insert(3, release, entered))
        assert await asyncio.to_thread(entered.wait, 10)
        reading = asyncio.ensure_future(store.read(_ids))
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.wait_for(closing, 5)
        assert await asyncio.wait_for(reading, 5) == {3}
    finally:
        release.set()
        await store.close()


async def test_read_after_submit_holds_under_random_interleavings(tmp_path: Path) -> None:
    """Random writes (some fail, some are cancelled by their callers, some dawdle in the
    writer's thread) and reads interleave. Each read must see every write that committed
    and was submitted before it began, and nothing that had not been submitted when it
    ended."""
    seed = int(os.environ.get("HELIOSD_READ_AFTER_SUBMIT_SEED") or random.randrange(2**32))
    print(f"read-after-submit seed {seed} (rerun: HELIOSD_READ_AFTER_SUBMIT_SEED={seed})")
    rng = random.Random(seed)
    store = await _open(tmp_path)
    committed: set[int] = set()  # ids whose write will commit (known when submitted)
    futures: list[asyncio.Future[None]] = []
    checks: list[asyncio.Future[None]] = []
    next_id = 0

    async def read_and_check(must: frozenset[int]) -> None:
        seen = await store.read(_ids)
        submitted_by_now = set(range(next_id))
        assert must <= seen, f"seed {seed}: a read missed {sorted(must - seen)}"
        assert seen <= submitted_by_now, f"seed {seed}: a read saw an unsubmitted write"

    def write(x: int, fails: bool, dawdle: float):  # type: ignore[no-untyped-def]
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO probe VALUES (?)", (x,))
            if dawdle:
                threading.Event().wait(dawdle)
            if fails:
                raise ValueError(x)

        return fn

    try:
        for _ in range(300):
            roll = rng.random()
            if roll < 0.55:
                fails = rng.random() < 0.15
                fut = store.submit(write(next_id, fails, rng.choice([0, 0, 0, 0.002])))
                if not fails:
                    committed.add(next_id)
                if rng.random() < 0.1:
                    fut.cancel()
                futures.append(fut)
                next_id += 1
            elif roll < 0.85:
                checks.append(asyncio.ensure_future(read_and_check(frozenset(committed))))
            else:
                await asyncio.sleep(rng.choice([0, 0, 0.001]))
        await asyncio.wait_for(asyncio.gather(*checks), 30)
        await asyncio.gather(*futures, return_exceptions=True)
        assert await store.read(_ids) == committed, f"seed {seed}"
    finally:
        for check in checks:
            check.cancel()
        await asyncio.wait_for(store.close(), 30)


class _WriterKilled(BaseException):
    """Not an Exception: the writer does not survive it (as with KeyboardInterrupt)."""


async def test_a_dead_writer_is_reported_and_reads_do_not_wait_on_it(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await store.write(_insert(1))

    def kill(conn: sqlite3.Connection) -> None:
        raise _WriterKilled

    try:
        with pytest.raises(RuntimeError):  # the batch's callers get an Exception
            await store.write(kill)
        await asyncio.sleep(0)
        assert not store.writer_alive
        assert not await store_alive(store)  # the watchdog's test: it would now restart us
        orphan = store.submit(_insert(2))  # nothing will ever commit it
        assert await asyncio.wait_for(store.read(_ids), 5) == {1}  # answered, not stuck
        assert not orphan.done()
    finally:
        await store.close()  # closes the connections; it does not raise the writer's death
    held = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}  # fmt: skip
    assert not {p for p in held if p.startswith(str(tmp_path.resolve()))}, held  # db, -wal, -shm
