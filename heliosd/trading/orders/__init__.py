"""Orders: the lifecycle state machine, fill application and venue reconciliation.

Who owns what: :mod:`~heliosd.trading.orders.rows` (the state machine, the order row's
columns, JSON and SQL, the stored fills' reads), :mod:`~heliosd.trading.orders.updates`
(venue statuses and fills applied to order rows), :mod:`~heliosd.trading.orders.counters`
(``OrderCounters``). Every name callers used before the split is re-exported here, so they
import from ``heliosd.trading.orders``.
"""

from __future__ import annotations

from heliosd.trading.orders.counters import OrderCounters
from heliosd.trading.orders.rows import (
    _SELECT,
    ORDER_COLUMNS,
    Callback,
    NewOrder,
    apply_result,
    can_move,
    fill_json,
    fills_of_order,
    get_order_row,
    insert_order,
    list_orders,
    new_customer_order_id,
    open_orders_by_id,
    order_json,
    plain,
    recent_fills,
    revives,
    with_fees,
)
from heliosd.trading.orders.updates import apply_fill, apply_fills, apply_status, apply_statuses

__all__ = [
    "ORDER_COLUMNS",
    "_SELECT",
    "Callback",
    "NewOrder",
    "OrderCounters",
    "apply_fill",
    "apply_fills",
    "apply_result",
    "apply_status",
    "apply_statuses",
    "can_move",
    "fill_json",
    "fills_of_order",
    "get_order_row",
    "insert_order",
    "list_orders",
    "new_customer_order_id",
    "open_orders_by_id",
    "order_json",
    "plain",
    "recent_fills",
    "revives",
    "with_fees",
]
