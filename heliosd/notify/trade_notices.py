"""What the trade notifications say: an order (``order``), one fill or a digest of several
(``fill``), an order a risk rule refused (``risk_rejected``) and a confirmed close of
positions (``positions_close``). Re-exported by :mod:`heliosd.notify.notices`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.protocols import Event
from heliosd.core.types import Mode, OrderIntent, Verdict, VerdictAction
from heliosd.notify.notice_format import _event, _lines, _num

if TYPE_CHECKING:
    from heliosd.core.types import Fill


def order_event(order: Mapping[str, Any]) -> Event:
    """An order as the control API shows it (the ORDER object of docs/api.md)."""
    mode = str(order.get("mode", ""))
    state = str(order.get("state", ""))
    side, pair = str(order.get("side", "")), str(order.get("pair", ""))
    price = order.get("price")
    title = f"{mode} order {state}: {side} {_num(order.get('quantity'))} {pair}"
    if price not in (None, ""):
        title += f" @ {_num(price)}"
    requested = order.get("requested_quantity")
    capped = ""
    if requested not in (None, "") and str(requested) != str(order.get("quantity")):
        capped = f"Requested {_num(requested)}, capped to {_num(order.get('quantity'))}."
    filled = ""
    if order.get("filled_quantity") not in (None, "", "0"):
        filled = f"Filled {_num(order.get('filled_quantity'))}"
        if order.get("average_price") not in (None, ""):
            filled += f" at average {_num(order.get('average_price'))}"
        filled += "."
    body = _lines(
        f"Order #{order.get('id', '?')} {order.get('type', '')}"
        f" ({order.get('customer_order_id', '')})",
        capped,
        filled,
        f"Failed: {order['failed_reason']}" if order.get("failed_reason") else "",
        f"Reason: {order['reason']}" if order.get("reason") else "",
    )
    keys = ("id", "customer_order_id", "exchange_order_id", "pair", "side", "type", "quantity",
            "price", "state", "filled_quantity", "average_price")  # fmt: skip
    data = {"mode": mode, **{("order_id" if k == "id" else k): order.get(k) for k in keys}}
    return _event("order", title, body, data)


def fill_event(mode: Mode | str, fill: Fill, *, order_id: int | None = None) -> Event:
    """One execution (applied once: the caller enqueues it with the fill's INSERT)."""
    title = f"{mode} fill: {fill.side} {_num(fill.quantity)} {fill.pair} @ {_num(fill.price)}"
    value = fill.quantity * fill.price
    body = _lines(
        f"Value {_num(value)}, fee {_num(fill.fee)} {fill.fee_currency}.",
        f"Trade {fill.trade_id} at {fill.traded_at.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        + (f", order #{order_id}." if order_id is not None else "."),
    )
    data = {
        "mode": str(mode),
        "trade_id": fill.trade_id,
        "order_id": order_id,
        "customer_order_id": fill.customer_order_id,
        "pair": fill.pair,
        "side": str(fill.side),
        "price": fill.price,
        "quantity": fill.quantity,
        "fee": fill.fee,
        "fee_currency": fill.fee_currency,
        "traded_at": fill.traded_at,
    }
    return _event("fill", title, body, data)


# A digest lists each trade up to this many; past it, only the totals per pair and side.
FILLS_LISTED = 10


def fills_event(mode: Mode | str, fills: Sequence[tuple[Fill, int | None]]) -> Event:
    """Several executions that arrived together (one socket read: a market order sweeping
    the book, a reconnect's catch-up), as one notification: the totals per pair and side,
    and each trade while there are few. ``fills`` pairs each fill with its order id.

    Why one and not one per fill: a burst of 500 fills as 500 phone notifications buries
    whatever comes next (an emergency stop), and chat services throttle far below that. Each
    trade stays in the database and in ``GET /api/orders/{id}/fills``.
    """
    if len(fills) == 1:
        return fill_event(mode, fills[0][0], order_id=fills[0][1])
    groups: dict[tuple[str, str], list[Fill]] = {}
    for fill, _ in fills:
        groups.setdefault((fill.pair, str(fill.side)), []).append(fill)
    lines, totals = [], []
    for (pair, side), group in groups.items():
        quantity = sum((f.quantity for f in group), Decimal(0))
        value = sum((f.quantity * f.price for f in group), Decimal(0))
        fees: dict[str, Decimal] = {}
        for f in group:
            fees[f.fee_currency] = fees.get(f.fee_currency, Decimal(0)) + f.fee
        fee_text = ", ".join(f"{_num(v)} {c}" for c, v in fees.items())
        average = value / quantity if quantity else None
        lines.append(
            f"{side} {_num(quantity)} {pair} in {len(group)} trades, average "
            f"{_num(_significant(average))}, value {_num(value)}, fees {fee_text}."
        )
        totals.append({
            "pair": pair, "side": side, "trades": len(group), "quantity": quantity,
            "value": value, "fees": fees,
        })  # fmt: skip
    if len(fills) <= FILLS_LISTED:
        for fill, order_id in fills:
            lines.append(
                f"Trade {fill.trade_id}: {fill.side} {_num(fill.quantity)} {fill.pair} @ "
                f"{_num(fill.price)}, fee {_num(fill.fee)} {fill.fee_currency}"
                + (f", order #{order_id}." if order_id is not None else ".")
            )
    else:
        lines.append(f"{len(fills)} trades; each is in GET /api/orders/{{id}}/fills.")
    first, last = fills[0][0], fills[-1][0]
    what = ", ".join(f"{side} {pair}" for pair, side in groups)
    title = f"{mode} fills: {len(fills)} trades ({what})"
    data = {
        "mode": str(mode),
        "trades": len(fills),
        "first_trade_id": first.trade_id,
        "last_trade_id": last.trade_id,
        "totals": totals,
        "order_ids": sorted({o for _, o in fills if o is not None}),
        "from": min(f.traded_at for f, _ in fills),
        "to": max(f.traded_at for f, _ in fills),
    }
    return _event("fill", title, _lines(*lines), data)


def _significant(value: Decimal | None) -> Decimal | None:
    """An average price to 10 significant digits (a quotient has 28)."""
    if value is None or not value:
        return value
    return value.quantize(Decimal(1).scaleb(value.adjusted() - 9)).normalize()


def risk_rejected_event(
    mode: Mode | str,
    intent: OrderIntent,
    verdicts: Iterable[Verdict],
    *,
    reason: str = "",
    order_id: int | None = None,
) -> Event:
    """An order a risk rule refused (never sent). ``reason``: the router's whole refusal
    text, which also names what the verdicts alone do not (a verdict with an unknown
    action, a cap to nothing); without it, each rejecting verdict is listed."""
    # == not is: a drop-in rule may give the action as the plain string "reject".
    rejects = [v for v in verdicts if v.action == VerdictAction.REJECT]
    title = f"{mode} order rejected: {intent.side} {_num(intent.quantity)} {intent.pair}" + (
        f" ({rejects[0].rule})" if rejects else ""
    )
    body = _lines(
        *([reason] if reason else (f"{v.rule}: {v.reason}" for v in rejects)),
        f"Source: {intent.source}" + (f"; reason: {intent.reason}" if intent.reason else ""),
    )
    data = {
        "mode": str(mode),
        "pair": intent.pair,
        "side": str(intent.side),
        "type": str(intent.type),
        "quantity": intent.quantity,
        "price": intent.price,
        "source": intent.source,
        "order_id": order_id,
        "verdicts": [v.as_json() for v in rejects],
    }
    return _event("risk_rejected", title, body, data)


def positions_close_event(
    *,
    mode: Mode | str,
    target: str,
    actor: str,
    reason: str,
    orders: Sequence[Mapping[str, Any]],
    remaining: Sequence[Mapping[str, Any]],
) -> Event:
    """A confirmed close of positions (``POST /api/positions/close``): the SELLs it sent on
    ``mode``'s account, whatever the current mode, and what it left, with why."""
    sent = ", ".join(
        f"SELL {_num(o.get('quantity'))} {o.get('pair')} ({o.get('state')})" for o in orders
    )
    left = "; ".join(
        f"{_num(r.get('quantity'))} {r.get('asset') or r.get('pair')}: {r.get('why')}"
        for r in remaining
    )
    count = f"{len(orders)} SELL order{'s' if len(orders) != 1 else ''}"
    body = _lines(
        f"{target}: {reason or 'no reason given'} (by {actor}).",
        f"Sent: {sent}." if sent else "Nothing sent.",
        f"Not sold: {left}." if left else "",
    )
    data = {"mode": str(mode), "actor": actor, "reason": reason, "orders": list(orders),
            "remaining": list(remaining)}  # fmt: skip
    return _event("positions_close", f"{mode} close: {count}", body, data)
