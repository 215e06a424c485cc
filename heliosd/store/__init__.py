"""The database: the single source of truth for mode, orders, fills, breakers and the outbox.

Contract:

* ``await Store.open(path)`` migrates the file and starts one writer task. ``Store.write(fn)``
  runs ``fn(sqlite3.Connection)`` in a transaction shared with other queued writes (group
  commit) and returns only after COMMIT; ``fn`` must not commit, and a failing ``fn`` rolls
  back alone. ``Store.submit`` is the same without waiting in line. ``Store.read`` sees
  every write submitted before it (it waits for them to settle); ``Store.read_aside`` reads
  on a connection of its own without waiting, and may miss a write not yet committed.
* ``Store.mode_state()`` is the hot-path mode read: cached, re-read only after some
  connection committed (an out-of-band ``UPDATE`` included). A LIVE row without a sealed,
  confirmed history row is not ``verified``.
* Durability: WAL with ``synchronous=FULL``.

Who owns what: :mod:`~heliosd.store.connection` (the writer, reads, backup),
:mod:`~heliosd.store.mode_read` (the mode read and the LIVE seal),
:mod:`~heliosd.store.migrations` (the schema), :mod:`~heliosd.store.queries` (mode, history,
audit), :mod:`~heliosd.store.batches` (multi-row statements), :mod:`~heliosd.store.fills`,
:mod:`~heliosd.store.timestamps`. Why it is built this way, with the measurements:
docs/internals.md, "The store". Every name callers used before the split is re-exported
here, so they import from ``heliosd.store``.
"""

from __future__ import annotations

# Re-exported, not used here: tests/test_store_mode_read.py reaches ``os.pread`` (the -shm
# read) as ``heliosd.store.os``, as it did before the package was split.
import os  # noqa: F401

from heliosd.store.batches import chunks, insert_many, select_in
from heliosd.store.connection import Store, WriteFn
from heliosd.store.fills import (
    _fill_from_row,
    insert_fill,
    insert_fills,
    latest_fill_time,
    load_fills,
    load_fills_checked,
    stored_trade_ids,
)
from heliosd.store.migrations import MIGRATIONS, _statements
from heliosd.store.mode_read import _WAL_INDEX_HEADER, ModeState
from heliosd.store.queries import audit, audit_rows, history, set_mode
from heliosd.store.timestamps import iso, parse_dt

__all__ = [
    "MIGRATIONS",
    "_WAL_INDEX_HEADER",
    "ModeState",
    "Store",
    "WriteFn",
    "_fill_from_row",
    "_statements",
    "audit",
    "audit_rows",
    "chunks",
    "history",
    "insert_fill",
    "insert_fills",
    "insert_many",
    "iso",
    "latest_fill_time",
    "load_fills",
    "load_fills_checked",
    "parse_dt",
    "select_in",
    "set_mode",
    "stored_trade_ids",
]
