"""What each notification says: one builder per kind in ``heliosd.core.config.EVENT_KINDS``.

Titles and bodies are written for a phone screen: what happened first, the mode, numbers as
plain decimals (no exponent, thousands separated). Every builder puts the mode (when there
is one) in ``data["mode"]``, which :func:`heliosd.notify.wants` uses to drop PAPER trades.
Delivery (the outbox, retries, subscribers) is :mod:`heliosd.notify`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.protocols import Event
from heliosd.core.types import GateResult, Mode, OrderIntent, Verdict, VerdictAction, utcnow

if TYPE_CHECKING:
    from heliosd.core.types import Fill

# Stops and integrity alarms: a human should look now.
URGENT_KINDS = frozenset({"halt", "emergency_stop", "integrity"})


def _num(value: Any) -> str:
    """A quantity or price as plain text: no exponent, thousands separated when large."""
    if value is None or value == "":
        return "?"
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if not d.is_finite():
        return str(d)
    if abs(d) >= 1000:
        return f"{d:,f}"
    return f"{d:f}"


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _event(kind: str, title: str, body: str, data: Mapping[str, Any]) -> Event:
    return Event(
        kind=kind,
        title=title,
        body=body,
        at=utcnow(),
        urgent=kind in URGENT_KINDS,
        data={k: v for k, v in data.items() if v is not None},
    )


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


def mode_change_event(
    old: Mode | str | None,
    new: Mode | str,
    *,
    actor: str,
    reason: str,
    open_orders: int = 0,
    positions: Mapping[str, Decimal] | None = None,
    simulator: bool = False,
) -> Event:
    """A committed mode change. ``open_orders``/``positions``: what LIVE left open.
    ``simulator``: LIVE is the VALR simulator, and the title says so instead."""
    title = f"Trading mode {old or '?'} -> {new}"
    live = str(new) == Mode.LIVE
    if live:
        title += ": simulator (not real money)" if simulator else ": orders are real from now on"
    left = ""
    if open_orders or positions:
        held = ", ".join(f"{p} {_num(q)}" for p, q in (positions or {}).items())
        left = f"Left open on the live account: {open_orders} orders" + (
            f"; positions {held}." if held else "."
        )
    body = _lines(f"By {actor}: {reason or 'no reason given'}", left)
    data = {
        "old_mode": str(old) if old else None,
        "new_mode": str(new),
        "actor": actor,
        "reason": reason,
        "open_orders": open_orders,
        "positions": dict(positions or {}),
    }
    event = _event("mode_change", title, body, data)
    # Real money from now on: a switch to LIVE is urgent (if it was not you, act now).
    return replace(event, urgent=True) if live else event


def live_refused_event(actor: str, *, gates: Sequence[GateResult] = (), reason: str = "") -> Event:
    """A refused switch to LIVE: failed gates, or ``reason`` (e.g. an integrity refusal)."""
    failed = [g for g in gates if not g.ok]
    reasons = [reason] if reason else []
    reasons += [g.reason or f"{g.name} failed" for g in failed]
    body = _lines(
        f"Requested by {actor}. Trading stays in PAPER.",
        *(f"- {r}" for r in reasons),
    )
    data = {
        "actor": actor,
        "reason": reason or None,
        "gates": [{"name": g.name, "ok": g.ok, "reason": g.reason} for g in gates],
    }
    return _event("live_refused", "LIVE switch refused", body, data)


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


def halt_event(
    *,
    breaker: str,
    reason: str,
    mode: Mode | str | None = None,
    until: datetime | None = None,
    cancelled_orders: int | None = None,
) -> Event:
    """A halt (daily-loss style): engine stopped, new risk-increasing orders refused. Urgent."""
    where = f" ({mode})" if mode else ""
    body = _lines(
        reason,
        f"Cancelled {cancelled_orders} open orders." if cancelled_orders is not None else "",
        "New risk-increasing orders are refused until "
        + (f"{until.strftime('%Y-%m-%d %H:%M')} UTC or a resume." if until else "a resume."),
    )
    data = {
        "mode": str(mode) if mode else None,
        "breaker": breaker,
        "reason": reason,
        "until": until,
        "cancelled_orders": cancelled_orders,
    }
    return _event("halt", f"HALT{where}: trading stopped by {breaker}", body, data)


def emergency_stop_event(
    *,
    reason: str,
    actor: str,
    cancelled_orders: int | None = None,
    remaining_open_orders: int | None = None,
    breaker: str = "emergency_stop",
    checked: bool = True,
) -> Event:
    """An emergency stop: orders cancelled, mode PAPER, latched until a resume. Urgent.

    Sent when the stop latches (before the cancellations: counts None, so it goes out even
    if heliosd dies next), and once more after them only when orders may remain open at the
    exchange (``remaining_open_orders`` above 0, or ``checked`` False when the exchange could
    not be asked): the operator must then act at VALR.
    """
    title = "EMERGENCY STOP: trading halted"
    if cancelled_orders is None:
        what = "Cancelling every open order; mode is PAPER; latched until a resume."
    else:
        what = f"Cancelled {cancelled_orders} orders; mode is PAPER; latched until a resume."
        if not checked or remaining_open_orders:
            title = "EMERGENCY STOP: CHECK VALR NOW"
    if not checked:
        left = "Could not list the exchange's open orders: CHECK VALR NOW."
    elif remaining_open_orders:
        left = f"{remaining_open_orders} orders still open on the exchange: CHECK VALR NOW."
    elif remaining_open_orders == 0:
        left = "No orders left open on the exchange."
    else:
        left = ""
    body = _lines(f"{reason or 'no reason given'} (by {actor}).", what, left)
    data = {
        "breaker": breaker,
        "reason": reason,
        "actor": actor,
        "cancelled_orders": cancelled_orders,
        "remaining_open_orders": remaining_open_orders,
        "checked": checked,
    }
    return _event("emergency_stop", title, body, data)


def resume_event(*, actor: str, reason: str, breakers: Sequence[str] = ()) -> Event:
    """A latched stop cleared by an operator."""
    cleared = ", ".join(breakers) if breakers else "stop"
    body = f"{cleared} cleared by {actor}: {reason or 'no reason given'}"
    data = {"actor": actor, "reason": reason, "breakers": list(breakers)}
    return _event("resume", "Trading resumed", body, data)


def connection_lost_event(
    *, venue: str, stream: str, detail: str = "", mode: Mode | str | None = None
) -> Event:
    """An exchange stream went down (the client reconnects and reconciles by itself)."""
    body = _lines(
        detail,
        "Reconnecting; open orders and missed trades are reconciled after it is back.",
    )
    data = {"venue": venue, "stream": stream, "detail": detail, "mode": mode and str(mode)}
    return _event("connection_lost", f"{venue} {stream} connection lost", body, data)


def connection_restored_event(
    *, venue: str, stream: str, detail: str = "", down_for: timedelta | None = None
) -> Event:
    """An exchange stream is back."""
    after = f" after {down_for.total_seconds():.0f} s" if down_for is not None else ""
    data = {"venue": venue, "stream": stream, "detail": detail, "down_for": down_for}
    return _event(
        "connection_restored", f"{venue} {stream} connection restored{after}", detail, data
    )


def integrity_event(
    problem: str, *, action: str = "", details: Mapping[str, Any] | None = None
) -> Event:
    """Something that must not happen happened (e.g. LIVE without a confirmed switch). Urgent.

    ``action`` says what heliosd did about it (e.g. "orders are refused").
    """
    data = {"problem": problem, "action": action or None, "details": dict(details or {})}
    return _event("integrity", "INTEGRITY ALERT", _lines(problem, action), data)


def strategy_error_event(strategy: str, error: str, *, mode: Mode | str | None = None) -> Event:
    """The engine stopped a strategy on an error: automatic trading is off until a person
    starts it again. Not urgent (stopping is the safe direction), but worth knowing."""
    where = f" ({mode})" if mode else ""
    body = _lines(
        error,
        "Automatic trading is off until someone starts it again: heliosctl engine start.",
    )
    data = {"strategy": strategy, "error": error, "mode": str(mode) if mode else None}
    return _event("strategy_error", f"Strategy {strategy} stopped on an error{where}", body, data)


def stale_prices_event(
    *, started: bool, mode: Mode | str, assets: Sequence[str], detail: str = ""
) -> Event:
    """Holdings above dust could not be valued fresh (trading REDUCING: only orders that
    reduce a holding pass), or they can again. Sent once when it starts, once when it ends;
    the start is a ``halt`` (urgent), the end a ``resume``."""
    names = ", ".join(assets)
    data = {"mode": str(mode), "assets": list(assets), "detail": detail or None,
            "breaker": "stale_prices", "started": started}  # fmt: skip
    if started:
        body = _lines(
            f"No fresh price for {detail or names}.",
            "Trading is REDUCING (only orders that reduce a holding pass) until prices are"
            " fresh again; the daily-loss and drawdown figures use the last prices meanwhile.",
        )
        return _event("halt", f"{mode} prices stale: {names}", body, data)
    body = "The stale_prices breaker cleared itself."
    return _event("resume", f"{mode} prices fresh again", body, data)


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
