"""Venue statuses and fills applied to stored order rows, forward-only, a batch at a time.

Fills are keyed by the venue's trade id (``UNIQUE(mode, trade_id)``): a fill delivered twice
(stream + reconciliation, or a replay after reconnect) is stored and applied once. A fill
counts only after its commit: the ledger is updated in the commit's completion, in order.

A status's executed quantity is the venue's running total, fills included: an order row's
``filled_quantity`` is the larger of it and the sum of the stored fills, never both added, so
statuses and fills may arrive in any order (a lookup answered before the stream's fill).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from heliosd import store as st
from heliosd.core.types import ZERO, Fill, Mode, OrderState, OrderStatus, utcnow
from heliosd.store import iso
from heliosd.trading.orders.rows import _SELECT, can_move, order_json, plain, revives


def apply_status(
    conn: sqlite3.Connection, mode: Mode, status: OrderStatus
) -> dict[str, Any] | None:
    """Move an order row to what the venue reports (forward-only), None for an order not
    stored here.

    ``executed_quantity`` is the venue's cumulative figure: it already includes every fill of
    the order, stored here or not. The row's ``filled_quantity`` is kept at max(the highest
    such figure seen, the sum of the order's stored fills) (see :func:`apply_fills`), so a
    status raises it to ``executed`` and never lowers it; it is never a sum of both. A higher
    figure is news even when the state may not move (a late lookup of a cancelled order that
    had traded first).
    """
    return apply_statuses(conn, mode, (status,))[0]


def apply_statuses(
    conn: sqlite3.Connection, mode: Mode, statuses: Sequence[OrderStatus]
) -> list[dict[str, Any] | None]:
    """:func:`apply_status` for each status in order, in a few statements for the batch (500
    cancellations after an emergency stop were 1,500 statements, each a GIL hand-off for the
    writer thread, and the stop's own audit row waited behind them). The rows returned are
    each order's state after its status; several statuses of one order apply in turn."""
    if not statuses:
        return []
    orders, by_cid, by_eid = _orders_of(conn, mode, statuses)
    now = iso(utcnow())
    out: list[dict[str, Any] | None] = []
    changed: dict[int, dict[str, Any]] = {}
    for status in statuses:
        order_id = by_cid.get(status.customer_order_id) if status.customer_order_id else None
        if order_id is None and status.exchange_order_id:
            order_id = by_eid.get(status.exchange_order_id)
        if order_id is None:
            out.append(None)
            continue
        row = orders[order_id]
        if _follow_status(row, status, now):
            changed[order_id] = row
        out.append(dict(row))
    if changed:
        conn.executemany(
            "UPDATE orders SET state = ?, exchange_order_id = ?, filled_quantity = ?,"
            " average_price = ?, failed_reason = ?, updated_at = ? WHERE id = ?",
            [(r["state"], r["exchange_order_id"], r["filled_quantity"], r["average_price"],
              r["failed_reason"], r["updated_at"], i) for i, r in changed.items()],
        )  # fmt: skip
    return out


def _follow_status(row: dict[str, Any], status: OrderStatus, now: str) -> bool:
    """Move an order row (in memory) to what ``status`` reports; False when it says nothing
    new (see :func:`apply_status` for the rules)."""
    old = OrderState(row["state"])
    filled = Decimal(row["filled_quantity"])
    # max(max(reported so far, stored fills), executed): the row already holds the first max.
    executed = max(filled, status.executed_quantity)
    new = status.state
    # A fill the stream has not delivered yet must not make a PLACED order look untouched.
    if new is OrderState.PLACED and executed > 0:
        new = OrderState.PARTIALLY_FILLED
    moves = can_move(old, new) or revives(old, new)
    if not moves and executed == filled:
        return False  # nothing new
    # Past what the row held the stored fills cannot cover the quantity: only the venue knows
    # the average of fills not received yet. At or below it, the row's average stands (the
    # fills' VWAP when they cover it).
    avg = row["average_price"]
    if status.average_price is not None and executed > 0 and (executed > filled or avg is None):
        row["average_price"] = plain(status.average_price)
    reason = status.failed_reason if moves or old is new else ""
    if moves:
        row["state"] = str(new)
    if row["exchange_order_id"] is None:
        row["exchange_order_id"] = status.exchange_order_id
    if executed != filled:
        row["filled_quantity"] = str(executed)
    if reason:
        row["failed_reason"] = reason
    row["updated_at"] = now
    return True


def apply_fill(conn: sqlite3.Connection, mode: Mode, fill: Fill) -> dict[str, Any] | None:
    """Store the fill once and advance its order. None when the fill was already stored.

    Returns ``{"order": ORDER | None}`` for a new fill.
    """
    return apply_fills(conn, mode, (fill,))[0]


def apply_fills(
    conn: sqlite3.Connection, mode: Mode, fills: Sequence[Fill]
) -> list[dict[str, Any] | None]:
    """:func:`apply_fill` for each fill in order, in the caller's transaction: the
    outcome per fill (None for one already stored, or repeated earlier in ``fills``).

    The same rows as ``apply_fill`` one by one, written with a few statements per batch, not
    a handful per fill (see ``store.chunks``: statements, not rows, set the writer thread's
    cost): one read of the touched orders' stored fills, the inserts, one update per order.
    An order's row in the outcomes is its state after that fill. Raises, having written part
    of the batch (the caller's savepoint undoes it), if the store disagrees with what was
    read at the start.

    An order's ``filled_quantity`` is max(the venue's cumulative executed quantity seen in a
    status, the sum of its stored fills): a fill a status already reported does not count
    twice, whichever came first (see :func:`_advance`).
    """
    if not fills:
        return []
    stored = st.stored_trade_ids(conn, mode, [f.trade_id for f in fills])
    orders, by_cid, by_eid = _orders_of(conn, mode, fills)
    matched: list[tuple[Fill, int | None] | None] = []  # None: already stored
    for fill in fills:
        if fill.trade_id in stored:
            matched.append(None)
            continue
        stored.add(fill.trade_id)
        order_id = None
        if fill.customer_order_id:
            order_id = by_cid.get(fill.customer_order_id)
        if order_id is None and fill.exchange_order_id:
            order_id = by_eid.get(fill.exchange_order_id)
        matched.append((fill, order_id))
    new = [m for m in matched if m is not None]
    # Read before this batch's inserts: the totals of the fills stored before it. A row at 0
    # has none (it is never below its fills), so an order's first fill reads nothing: the
    # read scans the fills table (no index on order_id yet).
    totals = _fill_totals(conn, {
        order_id for _, order_id in new
        if order_id is not None and Decimal(orders[order_id]["filled_quantity"]) > 0
    })  # fmt: skip
    now = iso(utcnow())
    outcomes: list[dict[str, Any] | None] = []
    touched: dict[int, dict[str, Any]] = {}
    for m in matched:
        if m is None:
            outcomes.append(None)
            continue
        fill, order_id = m
        if order_id is None:
            outcomes.append({"order": None})
            continue
        row = orders[order_id]
        _advance(row, fill, totals.setdefault(order_id, _FillTotals()), now)
        touched[order_id] = row
        outcomes.append({"order": dict(row)})
    written = st.insert_fills(conn, mode, new)
    if written != len(new):
        raise RuntimeError(f"stored {written} of {len(new)} new fills")
    if touched:
        conn.executemany(
            "UPDATE orders SET filled_quantity = ?, average_price = ?, state = ?,"
            " updated_at = ?, exchange_order_id = ? WHERE id = ?",
            [(r["filled_quantity"], r["average_price"], r["state"], r["updated_at"],
              r["exchange_order_id"], i) for i, r in touched.items()],
        )  # fmt: skip
    return outcomes


@dataclass(slots=True)
class _FillTotals:
    """One order's stored fills so far: total quantity and value (price x quantity), exact."""

    quantity: Decimal = ZERO
    value: Decimal = ZERO

    def add(self, fill: Fill) -> None:
        self.quantity += fill.quantity
        self.value += fill.price * fill.quantity


# A constant text, never built from input: {} becomes the placeholders (store.select_in).
_FILLS_OF_ORDERS = "SELECT order_id, quantity, price FROM fills WHERE order_id IN ({})"


def _fill_totals(conn: sqlite3.Connection, order_ids: set[int]) -> dict[int, _FillTotals]:
    """The stored fills' totals of each of ``order_ids``, a few statements for any number.
    Summed here, not with SQL SUM(): SQLite would add the Decimal texts as floats."""
    totals = {order_id: _FillTotals() for order_id in order_ids}
    if not order_ids:
        return totals
    for order_id, quantity, price in st.select_in(conn, _FILLS_OF_ORDERS, sorted(order_ids)):
        t = totals[order_id]
        q = Decimal(quantity)
        t.quantity += q
        t.value += Decimal(price) * q
    return totals


# Constant texts, never built from input: {} becomes the placeholders (store.select_in).
_BY_CUSTOMER_IDS = _SELECT + " WHERE customer_order_id IN ({})"
_BY_EXCHANGE_IDS = _SELECT + " WHERE mode = ? AND exchange_order_id IN ({}) ORDER BY id"


def _orders_of(
    conn: sqlite3.Connection, mode: Mode, fills: Sequence[Fill] | Sequence[OrderStatus]
) -> tuple[dict[int, dict[str, Any]], dict[str, int], dict[str, int]]:
    """The stored orders the fills (or statuses) name: by customer order id (any mode: ours
    are unique), else by exchange order id in ``mode`` (the oldest such order)."""
    orders: dict[int, dict[str, Any]] = {}
    by_cid: dict[str, int] = {}
    by_eid: dict[str, int] = {}
    cids = sorted({f.customer_order_id for f in fills if f.customer_order_id})
    for r in st.select_in(conn, _BY_CUSTOMER_IDS, cids):
        row = orders[r[0]] = order_json(r)
        by_cid[row["customer_order_id"]] = row["id"]
    eids = sorted({
        f.exchange_order_id for f in fills
        if f.exchange_order_id and (not f.customer_order_id or f.customer_order_id not in by_cid)
    })  # fmt: skip
    rows = st.select_in(conn, _BY_EXCHANGE_IDS, eids, (str(mode),)) if eids else []
    for r in sorted(rows, key=lambda r: int(r[0])):  # chunks are ordered each, not together
        row = orders.setdefault(r[0], order_json(r))
        by_eid.setdefault(row["exchange_order_id"], row["id"])
    return orders, by_cid, by_eid


def _advance(row: dict[str, Any], fill: Fill, totals: _FillTotals, now: str) -> None:
    """Move an order row (in memory) past one new fill: quantity, average price, state.

    ``totals`` are the order's fills before this one; they take it in. The row holds
    F = max(R, S), R the venue's highest reported executed quantity and S the fills before
    this one; with S' = S + this fill, the row becomes max(F, S') = max(R, S') (S' >= S): R
    need not be stored apart. When S' covers it the average is the fills' own VWAP; below it
    the venue's reported average stands (it has seen fills we have not), the fills' VWAP only
    if the venue gave none.
    """
    held = Decimal(row["filled_quantity"])  # F
    totals.add(fill)
    vwap = None
    if totals.quantity > 0:
        vwap = plain((totals.value / totals.quantity).quantize(Decimal("1e-12")))
    if totals.quantity >= held:
        filled = totals.quantity
        row["filled_quantity"] = str(filled)
        row["average_price"] = vwap
    else:  # this fill was already in a status's figure: it does not add again
        filled = held
        row["average_price"] = row["average_price"] or vwap
    old = OrderState(row["state"])
    target = (
        OrderState.FILLED if filled >= Decimal(row["quantity"]) else OrderState.PARTIALLY_FILLED
    )
    # A fill is the venue's fact: a "failed" order it fills (in part too) is revived.
    state = target if can_move(old, target) or revives(old, target) else old
    row["state"] = str(state)
    row["updated_at"] = now
    if row["exchange_order_id"] is None:
        row["exchange_order_id"] = fill.exchange_order_id
