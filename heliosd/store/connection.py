"""The store's connections: one aiosqlite connection owns every write.

Writes are queued as functions of a ``sqlite3.Connection`` and executed by one writer task
that group-commits whatever is queued (one commit per row tops out near 4-5k rows/s; a batch
in one transaction reaches ~100k rows/s). A write counts only after its COMMIT, so ``write``
returns after the commit; ``submit`` returns a future for callers that must not wait in line
(the fill stream). Each queued function runs inside its own SAVEPOINT, so one failing write
rolls back alone and fails only its own caller. Reads of the mode go through a second,
read-only connection (:mod:`heliosd.store.mode_read`).

Reads come in two kinds, by what they promise (the invariant is named for tests):
- ``read`` (*read-after-submit*): every write submitted before the read began has settled,
  committed or failed, before the read runs, so it sees each of them that committed (an
  order answered ``filled`` once its fill was submitted, then GET /api/fills). It then runs
  on the writer's connection and thread. It waits for the batches in line before it, and
  for at most the one batch taken after they settle: a burst that keeps submitting cannot
  starve it. Queueing on the writer's thread alone is not enough: a write queued behind a
  batch in flight is taken into the next batch, after a read queued meanwhile.
- ``read_aside``: a kept read-only connection in a thread of its own
  (:mod:`heliosd.store.aside`), no waiting at all; a write submitted and not yet committed
  may be missed.

Durability: WAL with ``synchronous=FULL``: a commit is on disk before the write returns; the
group commit keeps the fsync count low.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from heliosd.store.aside import AsideReader
from heliosd.store.migrations import _migrate
from heliosd.store.mode_read import ModeReads, ModeState, _open_wal_index

# The package's logger name, as before the split: operators filter logs by it.
log = logging.getLogger("heliosd.store")

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]


class Store(ModeReads):
    """See the module docstring. Create with ``await Store.open(path)``."""

    def __init__(self, path: Path, db: aiosqlite.Connection, reader: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._reader = reader
        self._queue: list[tuple[WriteFn[Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._mode_cache: ModeState | None = None
        self._shm = _open_wal_index(path)
        self._shm_seen: bytes | None = None  # WAL-index header at the last full mode read
        self._seal_key = self._load_seal_key(path.parent / "mode.key")
        self.commits = 0  # for benchmarks and tests: how many group commits ran
        # read-after-submit: writes are numbered as submitted; ``_settled`` is the number of
        # the last one whose batch has finished (batches run in submission order). A
        # counter, not the last write's future, because a caller may cancel that future
        # while its write still commits.
        self._submitted = 0
        self._settled = 0
        self._settle_waiters: collections.deque[tuple[int, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._aside = AsideReader(path)
        self._reads = 0  # reads begun and not yet answered: close() waits for them
        self._no_reads = asyncio.Event()
        self._no_reads.set()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await _in_worker(db, _migrate, db._conn)
        except BaseException:
            await db.close()
            raise
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=2000")
        store = cls(path, db, reader)
        store._writer = asyncio.get_running_loop().create_task(store._write_loop())
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            # Waited for, not awaited: a writer that died has said why (its batch failed
            # with it, and the watchdog's test fails), and the connections must close still.
            await asyncio.wait([self._writer])
            if not self._writer.cancelled() and self._writer.exception() is not None:
                log.error("store writer had died: %r", self._writer.exception())
        # A read begun before the close may still be waiting on the last batch: it is
        # answered before the connection goes (reads begun after it are refused).
        await self._no_reads.wait()
        await self._aside.close()
        self._reader.close()
        await self._db.close()
        if self._shm is not None:  # only now: closing it earlier would drop SQLite's locks
            os.close(self._shm)
            self._shm = None

    # ------------------------------------------------------------------ writes

    def submit(self, fn: WriteFn[T]) -> asyncio.Future[T]:
        """Queue a write; the future resolves after its COMMIT (or with its exception)."""
        if self._closed:
            raise RuntimeError("store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        self._submitted += 1
        self._wake.set()
        return fut

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(conn)`` in a transaction and return its result once committed."""
        return await self.submit(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on the writer's connection once every write submitted
        before this call has settled (see the module docstring: *read-after-submit*)."""
        if self._closed:
            raise RuntimeError("store is closed")
        self._reads += 1
        self._no_reads.clear()
        try:
            target = self._submitted
            # A writer that is gone settles nothing more: read what was committed.
            if self._settled < target and self.writer_alive:
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._settle_waiters.append((target, waiter))
                await waiter
            result: T = await _in_worker(self._db, fn, self._db._conn)
            return result
        finally:
            self._reads -= 1
            if not self._reads:
                self._no_reads.set()

    @property
    def writer_alive(self) -> bool:
        """The writer task runs: False once it ended (closed, or died of an exception that
        was not an ``Exception``, which fails its batch and is not survived)."""
        return self._writer is not None and not self._writer.done()

    async def read_aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on a read-only connection of its own, in a thread.

        It sees every commit made before it starts (WAL: a reader takes the last commit as
        its snapshot), but neither waits behind a group commit nor delays one; so a write
        submitted and not yet committed is not seen. For reads that tolerate that: the
        equity curve (its points are submitted, never awaited) and /metrics. It runs on a
        kept connection in a thread of its own (:mod:`heliosd.store.aside`)."""
        return await self._aside.read(fn)

    def _settle(self, upto: int) -> None:
        """Writes up to number ``upto`` have settled: release the reads waiting on them."""
        self._settled = max(self._settled, upto)
        waiters = self._settle_waiters
        while waiters and waiters[0][0] <= self._settled:
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        finally:
            # The writer is gone (closed, or died): nothing more will settle, so no read
            # waits on it; each reads what was committed.
            self._settle(self._submitted)

    async def _write_batches(self) -> None:
        while True:
            # Sleep only with nothing queued and not closed, checked each time round: a
            # close() whose wake lands while a batch is in flight (the wake already set by
            # a submit) must still end the loop once the queue drains.
            if not self._queue:
                if self._closed:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            upto = self._submitted  # the queue held every write not yet in a batch
            try:
                # aiosqlite's public API runs one statement per thread hop (~65 us each);
                # _execute runs our whole batch in its worker thread in one hop. It has been
                # the core of aiosqlite since its first releases.
                outcomes = await _in_worker(self._db, self._run_batch, batch)
            except BaseException as exc:  # the COMMIT itself failed: nothing was written
                log.error("store commit failed: %s", exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
                if not isinstance(exc, Exception):
                    raise
                self._settle(upto)
                continue
            self.commits += 1
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            self._settle(upto)

    def _run_batch(
        self, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        conn = self._db._conn
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, value))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes

    # ------------------------------------------------------------------ backup

    async def backup(self, dest: Path) -> Path:
        """A consistent copy through SQLite's online backup API.

        Written as ``.<name>.partial`` and renamed: a file with a backup's name is complete,
        so pruning (heliosd.runtime.backup) never counts a torn one as the newest."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = dest.with_name(f".{dest.name}.partial")
        try:
            target = await aiosqlite.connect(partial)
            try:
                await self._db.backup(target)
            finally:
                await target.close()
            with contextlib.suppress(OSError):
                os.chmod(partial, 0o600)
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return dest


async def _in_worker(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in aiosqlite's worker thread in one hop (its internal _execute)."""
    result: T = await db._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result
