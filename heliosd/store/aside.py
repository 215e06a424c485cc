"""Reads aside from the writer: one kept read-only connection, in a thread of its own.

For reads that must neither wait behind a group commit nor delay one, and that tolerate
missing a write submitted and not yet committed: the equity curve and ``/metrics``
(``Store.read_aside``). A connection is kept because opening one per read (a connect and a
schema read) cost ~570 us of CPU against ~180 us for the read itself (bench/RESULTS.md
section 10): a third of a dashboard refresh, and part of every scrape.

Invariant (*fresh snapshot*): each read sees every commit made before it began. A kept
connection could break it: SQLite keeps a read transaction open while any statement on the
connection is still active (a cursor read half way and still referenced), so the next read
would see that old snapshot; in WAL mode it would also hold back every checkpoint, and the
``-wal`` would grow for as long as the daemon runs. A ROLLBACK does not end it: SQLite
(3.40 here) lets a pending read statement keep its snapshot after one, and only resetting
the statement releases it. So the connection records every cursor a read opens
(:class:`_TrackingConnection`: ``cursor()`` and ``execute()``, what a read uses), and after
the read each is closed (which resets its statement), and a transaction it left open is
rolled back. A read that wants one snapshot across its statements begins a transaction
itself (``/metrics``' fill counts do). One thread owns the connection, so reads run one at
a time, in the order asked. tests/test_store_read_aside.py leaves a cursor half read on
purpose.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _read_only_uri(path: Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database at ``path`` (its URI built by pathlib, so a
    ``?``, ``#`` or ``%`` in the path is a character of the name, not of the URI)."""
    return sqlite3.connect(_read_only_uri(path), uri=True)


class _TrackingConnection(sqlite3.Connection):
    """A connection that records the cursors it opens, ``execute``'s included, so that a
    read's statements can all be reset when it returns (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[sqlite3.Cursor] = []

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = super().cursor(*args, **kwargs)
        self.opened.append(cursor)
        return cursor

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self.cursor().execute(sql, parameters)
        return cursor

    def reset_all(self) -> None:
        for cursor in self.opened:
            cursor.close()
        self.opened.clear()


class AsideReader:
    """The kept connection and its thread; opened on the first read, closed by ``close``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heliosd-aside")
        self._conn: _TrackingConnection | None = None
        self._closed = False

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, fn)

    async def close(self) -> None:
        """Close after the reads already asked for (the thread runs them in order)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = sqlite3.connect(  # connect_read_only's URI, our factory
                _read_only_uri(self._path), uri=True, isolation_level=None,
                factory=_TrackingConnection,
            )  # fmt: skip
            conn.execute("PRAGMA busy_timeout=2000")
        try:
            return fn(conn)
        finally:
            conn.reset_all()  # before any ROLLBACK: it alone would leave a snapshot held
            if conn.in_transaction:  # a read that began one (for one snapshot) and raised
                conn.execute("ROLLBACK")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
