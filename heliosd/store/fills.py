"""The ``fills`` table: store a fill once per (mode, trade id), read them back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from heliosd.core.types import Fill, Mode, Side, utcnow
from heliosd.store.batches import insert_many, select_in
from heliosd.store.timestamps import iso, parse_dt


def insert_fills(
    conn: sqlite3.Connection, mode: Mode, fills: Sequence[tuple[Fill, int | None]]
) -> int:
    """Store each (fill, order id) as :func:`insert_fill` would, in a few statements; an
    already stored trade id is skipped. Returns how many were stored."""
    m, now = str(mode), iso(utcnow())
    rows = [
        (m, f.trade_id, order_id, f.customer_order_id, f.exchange_order_id, f.pair, str(f.side),
         str(f.price), str(f.quantity), str(f.fee), f.fee_currency, iso(f.traded_at), now)
        for f, order_id in fills
    ]  # fmt: skip
    return insert_many(conn, _INSERT_FILL_HEAD, "(?,?,?,?,?,?,?,?,?,?,?,?,?)", rows,
                       "ON CONFLICT(mode, trade_id) DO NOTHING")  # fmt: skip


_INSERT_FILL_HEAD = (
    "INSERT INTO fills(mode, trade_id, order_id, customer_order_id, exchange_order_id, pair,"
    " side, price, quantity, fee, fee_currency, traded_at, recorded_at) VALUES"
)


def stored_trade_ids(conn: sqlite3.Connection, mode: Mode, trade_ids: Sequence[str]) -> set[str]:
    """Which of ``trade_ids`` are already stored for ``mode``."""
    rows = select_in(
        conn, "SELECT trade_id FROM fills WHERE mode = ? AND trade_id IN ({})", trade_ids,
        (str(mode),),
    )  # fmt: skip
    return {r[0] for r in rows}


def insert_fill(conn: sqlite3.Connection, mode: Mode, fill: Fill, order_id: int | None) -> bool:
    """Store a fill once; False when this (mode, trade_id) was already stored."""
    cur = conn.execute(
        _INSERT_FILL_HEAD + " (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(mode, trade_id) DO NOTHING",
        (
            str(mode),
            fill.trade_id,
            order_id,
            fill.customer_order_id,
            fill.exchange_order_id,
            fill.pair,
            str(fill.side),
            str(fill.price),
            str(fill.quantity),
            str(fill.fee),
            fill.fee_currency,
            iso(fill.traded_at),
            iso(utcnow()),
        ),
    )
    return cur.rowcount == 1


def load_fills(conn: sqlite3.Connection, mode: Mode) -> list[Fill]:
    rows = conn.execute(
        "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
        " exchange_order_id, customer_order_id FROM fills WHERE mode = ? ORDER BY id",
        (str(mode),),
    ).fetchall()
    return [_fill_from_row(r) for r in rows]


def load_fills_checked(
    conn: sqlite3.Connection, mode: Mode
) -> tuple[list[Fill], list[tuple[str, str, str]]]:
    """The readable fills of ``mode`` and, for each unreadable row, (trade id, pair, why).

    For the start: stored data never stops it, so a row that does not parse (a side in the
    wrong case, a price that is not a number, an unreadable time) is returned as an error
    for the caller to report, never raised.
    """
    rows = conn.execute(
        "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
        " exchange_order_id, customer_order_id FROM fills WHERE mode = ? ORDER BY id",
        (str(mode),),
    ).fetchall()
    fills: list[Fill] = []
    errors: list[tuple[str, str, str]] = []
    for r in rows:
        try:
            fills.append(_fill_from_row(r))
        except (ValueError, TypeError, ArithmeticError) as exc:
            errors.append((str(r[0]), str(r[1]), f"stored fill unreadable: {exc!r}"))
    return fills, errors


def _fill_from_row(r: Iterable[Any]) -> Fill:
    t = tuple(r)
    return Fill(
        trade_id=t[0],
        pair=t[1],
        side=Side(t[2]),
        price=Decimal(t[3]),
        quantity=Decimal(t[4]),
        fee=Decimal(t[5]),
        fee_currency=t[6],
        traded_at=parse_dt(t[7]),
        exchange_order_id=t[8],
        customer_order_id=t[9],
    )


def latest_fill_time(conn: sqlite3.Connection, mode: Mode) -> datetime | None:
    # The latest readable time: an unreadable stored time is reported by the start (see
    # load_fills_checked) and must not stop it here.
    rows = conn.execute(
        "SELECT traded_at FROM fills WHERE mode = ? ORDER BY traded_at DESC", (str(mode),)
    )
    for (text,) in rows:
        try:
            return parse_dt(text) if text else None
        except (ValueError, TypeError):
            continue
    return None
