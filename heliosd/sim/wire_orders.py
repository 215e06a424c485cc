"""Orders on the wire: status, summary and open-order rows, and the order events.

ORDER_STATUS_UPDATE, OPEN_ORDERS_UPDATE, ORDER_PROCESSED and FAILED_CANCEL_ORDER.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from heliosd.sim.orders import Order
from heliosd.sim.wire_format import Json, dec, iso

# -- orders ---------------------------------------------------------------------------


def order_status(order: Order) -> Json:
    """GET /v1/orders/:pair/orderid/:id (and the base of ORDER_STATUS_UPDATE)."""
    data: Json = {
        "orderId": order.order_id,
        "orderStatusType": order.status,
        "currencyPair": order.pair,
        "originalPrice": dec(order.price),
        "remainingQuantity": dec(order.remaining),
        "originalQuantity": dec(order.original_quantity),
        "orderSide": order.side,
        "orderType": order.order_type,
        "failedReason": order.failed_reason,
        "orderUpdatedAt": iso(order.updated_at),
        "orderCreatedAt": iso(order.created_at),
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    data["timeInForce"] = order.time_in_force
    return data


def order_status_update(order: Order) -> Json:
    data = order_status(order)
    tif = data.pop("timeInForce")
    data["executedPrice"] = dec(order.average_price)
    data["executedQuantity"] = dec(order.executed_quantity)
    data["executedFee"] = dec(order.executed_fee)
    data["timeInForce"] = tif
    return {"type": "ORDER_STATUS_UPDATE", "data": data}


def order_summary(order: Order) -> Json:
    """A finished order in ``/v1/orders/history`` and ``.../history/summary/...``."""
    data = order_status(order)
    data["averagePrice"] = dec(order.average_price)
    data["total"] = dec(order.executed_quote)
    data["totalExecutedQuantity"] = dec(order.executed_quantity)
    data["totalFee"] = dec(order.executed_fee)
    data["feeCurrency"] = order.fee_currency
    return data


def _filled_percentage(order: Order) -> str:
    if not order.original_quantity:
        return "0.00"
    pct = (order.original_quantity - order.remaining) / order.original_quantity * 100
    return str(pct.quantize(Decimal("0.01")))


def open_order(order: Order) -> Json:
    """A row of GET /v1/orders/open (note ``remainingQuantity``, ``status``, ``type``)."""
    data: Json = {
        "orderId": order.order_id,
        "side": order.side,
        "remainingQuantity": dec(order.remaining),
        "price": dec(order.price),
        "currencyPair": order.pair,
        "createdAt": iso(order.created_at),
        "originalQuantity": dec(order.original_quantity),
        "filledPercentage": _filled_percentage(order),
        "updatedAt": iso(order.updated_at),
        "status": order.status,
        "type": order.order_type,
        "timeInForce": order.time_in_force,
        "allowMargin": order.allow_margin,
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    return data


def open_orders_update(orders: Iterable[Order]) -> Json:
    """OPEN_ORDERS_UPDATE: the full list each time; ``quantity`` is the remaining amount."""
    rows: list[Json] = []
    for order in orders:
        row: Json = {
            "orderId": order.order_id,
            "side": order.side,
            "quantity": dec(order.remaining),
            "price": dec(order.price),
            "currencyPair": order.pair,
            "createdAt": iso(order.created_at),
            "originalQuantity": dec(order.original_quantity),
            "filledPercentage": _filled_percentage(order),
        }
        if order.customer_order_id is not None:
            row["customerOrderId"] = order.customer_order_id
        row.update(
            {
                "type": order.order_type,
                "status": order.status,
                "updatedAt": iso(order.updated_at),
                "timeInForce": order.time_in_force,
                "allowMargin": order.allow_margin,
            }
        )
        rows.append(row)
    return {"type": "OPEN_ORDERS_UPDATE", "data": rows}


def order_processed(order: Order, failure_reason: str = "") -> Json:
    data: Json = {
        "orderId": order.order_id,
        "success": not failure_reason,
        "failureReason": failure_reason,
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    return {"type": "ORDER_PROCESSED", "data": data}


def failed_cancel(order_id: str, message: str) -> Json:
    return {"type": "FAILED_CANCEL_ORDER", "data": {"orderId": order_id, "message": message}}
