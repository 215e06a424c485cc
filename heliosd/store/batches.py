"""Many rows in few statements: multi-row INSERTs and chunked ``IN (...)`` selects."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# The sqlite3 module releases the GIL around every statement and must take it back after;
# while the event loop is busy that can wait a whole switch interval (5 ms), so the writer
# thread's cost of a batch is set by its number of statements, not rows (bench/fills.py).
# A batch of rows therefore goes as few multi-row statements, of the sizes below (largest
# first): few distinct statement texts (the sqlite3 statement cache holds 128), about
# n/256 + 12 statements for n rows.
_CHUNKS = (256, 64, 16, 4, 1)


def chunks(rows: Sequence[T], per_row: int, conn: sqlite3.Connection) -> Iterator[Sequence[T]]:
    """``rows`` cut into runs of the sizes in ``_CHUNKS``, each binding at most the
    connection's limit of parameters at ``per_row`` parameters a row."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    i, n = 0, len(rows)
    for size in _CHUNKS:
        if size * per_row > limit and size > 1:
            continue
        while n - i >= size:
            yield rows[i : i + size]
            i += size


@functools.lru_cache(maxsize=64)
def _repeated(part: str, n: int) -> str:
    return ",".join([part] * n)


@functools.lru_cache(maxsize=64)
def _multi_row(head: str, row: str, n: int, tail: str) -> str:
    return f"{head} {_repeated(row, n)} {tail}"


def insert_many(
    conn: sqlite3.Connection, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> int:
    """Run ``head row, row, ... tail`` (``head`` ends in VALUES, ``row`` is one row's
    placeholders) for all ``rows``, in order; returns how many rows were written."""
    if not rows:
        return 0
    width = len(rows[0])
    written = 0
    for part in chunks(rows, width, conn):
        sql = _multi_row(head, row, len(part), tail)
        written += conn.execute(sql, [v for r in part for v in r]).rowcount
    return written


def select_in(
    conn: sqlite3.Connection, sql: str, values: Sequence[Any], args: Sequence[Any] = ()
) -> list[Any]:
    """Rows of ``sql`` (holding one ``IN ({})``, after ``args``' placeholders) for all
    ``values``, a few statements for any number of values."""
    out: list[Any] = []
    for part in chunks(values, 1, conn):
        out += conn.execute(sql.format(_repeated("?", len(part))), (*args, *part)).fetchall()
    return out
