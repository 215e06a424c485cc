"""Orders: the lifecycle state machine, fill application and venue reconciliation.

An order is stored (state ``new``) before it is sent; the venue's answer and every stream
event then move it forward, never backward: ``new -> sent -> placed -> partially_filled ->
filled``, or to ``cancelled`` / ``failed``; ``rejected`` is for orders a risk rule refused
(never sent). Terminal states are final, with one exception (:func:`revives`): ``failed``
may be heliosd's inference, and a later fill or status from the venue revives the order.

Fills are keyed by the venue's trade id (``UNIQUE(mode, trade_id)``): a fill delivered twice
(stream + reconciliation, or a replay after reconnect) is stored and applied once. A fill
counts only after its commit: the ledger is updated in the commit's completion, in order.

A status's executed quantity is the venue's running total, fills included: an order row's
``filled_quantity`` is the larger of it and the sum of the stored fills, never both added, so
statuses and fills may arrive in any order (a lookup answered before the stream's fill).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd import store as st
from heliosd.core.types import (
    ZERO,
    Fill,
    Mode,
    OpenOrder,
    OrderIntent,
    OrderState,
    OrderStatus,
    PlaceResult,
    Verdict,
    utcnow,
)
from heliosd.store import iso

if TYPE_CHECKING:
    from heliosd.risk.account import AccountRisk

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------- in-memory counters


class OrderCounters:
    """Cheap counts for risk rules (implements heliosd.core.protocols.OrderStats), and the one
    place every order row change passes through (:meth:`track`): it feeds each mode's
    account risk model (``accounts``), whose reserved exposure is kept from these rows."""

    def __init__(self, window: timedelta = timedelta(hours=1)) -> None:
        # Mode -> heliosd.risk.account.AccountRisk (the service wires them; empty: none).
        self.accounts: dict[Mode, AccountRisk] = {}
        self._provisional = 0  # ids of reservations made before a row exists: -1, -2, ...
        self._recent: deque[tuple[datetime, Mode]] = deque()
        self._open: dict[tuple[Mode, str], set[int]] = {}
        self._window = window
        # customerOrderIds whose placement is under way in this process (the router adds and
        # removes them): reconciliation leaves these to the placer.
        self.placing: set[str] = set()

    def sent(self, mode: Mode, at: datetime) -> None:
        self._recent.append((at, mode))
        cutoff = at - self._window
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def track(self, order: Mapping[str, Any]) -> None:
        mode = Mode(order["mode"])
        key = (mode, order["pair"])
        ids = self._open.setdefault(key, set())
        if OrderState(order["state"]).is_open:
            ids.add(order["id"])
        else:
            ids.discard(order["id"])
        account = self.accounts.get(mode)
        if account is not None:
            account.track_order(order)

    def reserve(self, mode: Mode, intent: OrderIntent, quantity: Decimal) -> Callable[[], None]:
        """Reserve an order's exposure now, before its row is stored; returns the release.

        For the router: between an order's evaluation and its stored row being tracked the
        order must already count, or another order evaluated meanwhile (while the first one
        waits for its commit) would not see it. Call the release once the stored row has
        been tracked (or the order was refused); it is idempotent.
        """
        self._provisional -= 1
        row = {
            "id": self._provisional, "mode": str(mode), "pair": intent.pair,
            "side": str(intent.side), "type": str(intent.type), "quantity": str(quantity),
            "price": None if intent.price is None else str(intent.price), "state": "new",
            "filled_quantity": "0",
        }  # fmt: skip
        account = self.accounts.get(mode)
        if account is None:
            return _nothing
        account.track_order(row)

        def release() -> None:
            account.track_order({**row, "state": str(OrderState.REJECTED)})

        return release

    def fill_applied(self, mode: Mode, order_id: int, quantity: Decimal) -> None:
        """The ledger of ``mode`` applied a fill of ``order_id`` (before the order's new row
        is tracked): the reservation moves from the order to the ledger's holdings."""
        account = self.accounts.get(mode)
        if account is not None:
            account.exposure.fill_applied(order_id, quantity)

    def orders_since(self, since: datetime, mode: Mode | None = None) -> int:
        return sum(1 for at, m in reversed(self._recent)
                   if at >= since and (mode is None or m is mode))  # fmt: skip

    def open_orders(self, pair: str | None = None, mode: Mode | None = None) -> int:
        return sum(
            len(ids) for (m, p), ids in self._open.items()
            if (pair is None or p == pair) and (mode is None or m is mode)
        )  # fmt: skip


def _nothing() -> None:
    return None


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
