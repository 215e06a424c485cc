"""The live-smoke checks judged from one order answer: the order in a daemon's answer,
the risk rules' verdicts on it, and its fill as the daemon stored it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from heliosd.control.smoke_quantity import _dec
from heliosd.control.smoke_result import FAILED, PASSED


def _order_of(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    order = body.get("order")
    if order is None and isinstance(body.get("details"), dict):
        order = body["details"].get("order")
    return order if isinstance(order, dict) and "id" in order else None


def _verdict_check(order: Mapping[str, Any], rules: list[Any]) -> tuple[str, str]:
    verdicts = [v for v in order.get("verdicts") or [] if isinstance(v, Mapping)]
    given = {v.get("rule") for v in verdicts}
    missing = [r for r in rules if r not in given]
    refused = [
        f"{v.get('rule')}: {v.get('reason')}" for v in verdicts if v.get("action") == "reject"
    ]
    text = ", ".join(f"{v.get('rule')} {v.get('action')}" for v in verdicts) or "no verdicts"
    if refused:
        return FAILED, "rejected by " + "; ".join(refused)
    if missing or not verdicts:
        return FAILED, f"rules without a verdict: {', '.join(map(str, missing)) or 'all'}"
    return PASSED, text


def _fill_check(order: Mapping[str, Any]) -> tuple[str, str]:
    filled = _dec(order.get("filled_quantity")) or Decimal(0)
    quantity = _dec(order.get("quantity")) or Decimal(0)
    price = order.get("average_price")
    # A market BUY by baseAmount fills the amount plus VALR's fee (the fee is taken from
    # the bought currency), so the fill may exceed the quantity asked for, never fall short.
    if filled <= 0 or filled < quantity or not price or not order.get("exchange_order_id"):
        return FAILED, (
            f"order {order['id']}: filled {filled} of {quantity}, average price {price}, "
            f"VALR order id {order.get('exchange_order_id')}"
        )
    return PASSED, (
        f"filled {filled} {order.get('pair')} at average {price} (VALR order "
        f"{order.get('exchange_order_id')}; fills reach the daemon only from VALR)"
    )
