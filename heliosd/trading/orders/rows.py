"""Order rows: the lifecycle state machine, the row's columns and JSON, and their SQL.

An order is stored (state ``new``) before it is sent; the venue's answer and every stream
event then move it forward, never backward: ``new -> sent -> placed -> partially_filled ->
filled``, or to ``cancelled`` / ``failed``; ``rejected`` is for orders a risk rule refused
(never sent). Terminal states are final, with one exception (:func:`revives`): ``failed``
may be heliosd's inference, and a later fill or status from the venue revives the order.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from heliosd import store as st
from heliosd.core.types import (
    Fill,
    Mode,
    OpenOrder,
    OrderIntent,
    OrderState,
    PlaceResult,
    Verdict,
    utcnow,
)
from heliosd.store import iso

_RANK = {
    OrderState.NEW: 0,
    OrderState.SENT: 1,
    OrderState.PLACED: 2,
    OrderState.PARTIALLY_FILLED: 3,
}

ORDER_COLUMNS = (
    "id", "customer_order_id", "exchange_order_id", "mode", "pair", "side", "type",
    "requested_quantity", "quantity", "price", "state", "reason", "source", "actor", "verdicts",
    "filled_quantity", "average_price", "failed_reason", "created_at", "updated_at",
)  # fmt: skip
# Built from the constant column list above, never from input.
_SELECT = "SELECT " + ", ".join(ORDER_COLUMNS) + " FROM orders"  # noqa: S608


def plain(value: Decimal) -> str:
    """Fixed-point text without trailing zeros: never "5.005E+4" in an API answer."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def new_customer_order_id() -> str:
    """VALR allows <= 50 chars of [0-9A-Za-z-]; unique among open orders (we keep it global)."""
    return "hd-" + uuid.uuid4().hex


def can_move(old: OrderState, new: OrderState) -> bool:
    """Forward only: terminal states are final; open states only advance."""
    if old.is_terminal:
        return False
    if new.is_terminal:
        return True
    return _RANK[new] > _RANK[old]


def revives(old: OrderState, new: OrderState) -> bool:
    """The one way back from a terminal state: "failed" may be our inference (an answer
    lost, a lookup VALR's lagging views answered "not found"), so a later venue fact that
    the order exists (a fill, or a status other than failed) wins and the order counts
    again: open if it is open at the venue. Cancelled, filled and rejected stay final."""
    return old is OrderState.FAILED and new in _VENUE_KNOWS


# States only an order the venue knows can be in.
_VENUE_KNOWS = frozenset(
    (OrderState.PLACED, OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED)
)


def order_json(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(ORDER_COLUMNS, row, strict=True))
    out["verdicts"] = json.loads(out["verdicts"])
    return out


@dataclass(frozen=True, slots=True)
class NewOrder:
    mode: Mode
    intent: OrderIntent
    quantity: Decimal
    verdicts: Sequence[Verdict]
    actor: str
    state: OrderState = OrderState.NEW
    customer_order_id: str = ""


# ---------------------------------------------------------------------- SQL (writer thread)


def insert_order(conn: sqlite3.Connection, order: NewOrder) -> dict[str, Any]:
    now = iso(utcnow())
    i = order.intent
    cid = order.customer_order_id or new_customer_order_id()
    cur = conn.execute(
        "INSERT INTO orders(customer_order_id, mode, pair, side, type, requested_quantity,"
        " quantity, price, state, reason, source, actor, verdicts, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            cid, str(order.mode), i.pair, str(i.side), str(i.type), str(i.quantity),
            str(order.quantity), None if i.price is None else str(i.price), str(order.state),
            i.reason, i.source, order.actor,
            json.dumps([v.as_json() for v in order.verdicts]), now, now,
        ),
    )  # fmt: skip
    return get_order_row(conn, int(cur.lastrowid or 0))


def get_order_row(conn: sqlite3.Connection, order_id: int) -> dict[str, Any]:
    row = conn.execute(_SELECT + " WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise KeyError(order_id)
    return order_json(row)


def apply_result(conn: sqlite3.Connection, order_id: int, result: PlaceResult) -> dict[str, Any]:
    """Record a placement's immediate answer (forward-only)."""
    row = get_order_row(conn, order_id)
    old = OrderState(row["state"])
    new = result.state
    if can_move(old, new):
        conn.execute(
            "UPDATE orders SET state = ?, exchange_order_id = COALESCE(?, exchange_order_id),"
            " failed_reason = CASE WHEN ? != '' THEN ? ELSE failed_reason END, updated_at = ?"
            " WHERE id = ?",
            (str(new), result.exchange_order_id, result.reason, result.reason, iso(utcnow()),
             order_id),
        )  # fmt: skip
    elif result.exchange_order_id and not row["exchange_order_id"]:
        conn.execute(
            "UPDATE orders SET exchange_order_id = ? WHERE id = ?",
            (result.exchange_order_id, order_id),
        )
    return get_order_row(conn, order_id)


def list_orders(
    conn: sqlite3.Connection, *, open_only: bool, limit: int, mode: Mode | None = None
) -> list[dict[str, Any]]:
    where = []
    args: list[Any] = []
    if open_only:
        where.append("state IN ('new','sent','placed','partially_filled')")
    if mode is not None:
        where.append("mode = ?")
        args.append(str(mode))
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    return [order_json(r) for r in conn.execute(sql, args).fetchall()]


def with_fees(conn: sqlite3.Connection, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each order plus ``"fees"``: its fills' fees summed per currency, exact decimal text
    (summed as Decimal here: SQL would sum the TEXT column as floats)."""
    ids = [int(o["id"]) for o in orders]
    totals: dict[int, dict[str, Decimal]] = {i: {} for i in ids}
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for order_id, fee, currency in conn.execute(
            f"SELECT order_id, fee, fee_currency FROM fills WHERE order_id IN ({marks})",  # noqa: S608 - only placeholders
            chunk,
        ):
            per = totals[int(order_id)]
            per[currency] = per.get(currency, Decimal(0)) + Decimal(fee)
    return [
        {**o, "fees": {c: plain(v) for c, v in totals[int(o["id"])].items() if v}} for o in orders
    ]


def open_orders_by_id(orders: Sequence[OpenOrder]) -> tuple[set[str], set[str]]:
    """Exchange ids and customer ids of a venue's open-order snapshot."""
    return (
        {o.exchange_order_id for o in orders},
        {o.customer_order_id for o in orders if o.customer_order_id},
    )


Callback = Callable[[dict[str, Any]], None]


def fills_of_order(conn: sqlite3.Connection, order_id: int) -> list[Fill]:
    rows = conn.execute(
        "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
        " exchange_order_id, customer_order_id FROM fills WHERE order_id = ? ORDER BY id",
        (order_id,),
    ).fetchall()
    return [st._fill_from_row(r) for r in rows]  # one row->Fill mapping, the store's


def recent_fills(
    conn: sqlite3.Connection, limit: int, mode: Mode | None
) -> list[tuple[Fill, int | None, str]]:
    """The newest ``limit`` stored fills (of ``mode``, or both), newest first, each with its
    order's id (None for a trade heliosd did not place) and its mode. One indexed read per
    mode (``fills_traded``), merged here: never a sort of the whole table."""
    rows: list[Any] = []
    for m in (mode,) if mode is not None else tuple(Mode):
        rows += conn.execute(
            "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
            " exchange_order_id, customer_order_id, order_id, mode, id FROM fills"
            " WHERE mode = ? ORDER BY traded_at DESC, id DESC LIMIT ?",
            (str(m), limit),
        ).fetchall()
    rows.sort(key=lambda r: (r[7], r[12]), reverse=True)
    return [(st._fill_from_row(r[:10]), r[10], str(r[11])) for r in rows[:limit]]


def fill_json(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id, "pair": fill.pair, "side": str(fill.side),
        "price": plain(fill.price), "quantity": plain(fill.quantity), "fee": plain(fill.fee),
        "fee_currency": fill.fee_currency, "traded_at": iso(fill.traded_at),
    }  # fmt: skip
