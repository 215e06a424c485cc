"""What each notification says: one builder per kind in ``heliosd.core.config.EVENT_KINDS``.

Titles and bodies are written for a phone screen: what happened first, the mode, numbers as
plain decimals (no exponent, thousands separated). Every builder puts the mode (when there
is one) in ``data["mode"]``, which :func:`heliosd.notify.wants` uses to drop PAPER trades.
Delivery (the outbox, retries, subscribers) is :mod:`heliosd.notify`'s.

The trade notifications (order, fill, risk_rejected, positions_close) live beside this
module in :mod:`heliosd.notify.trade_notices`, and what every builder shares (number
formatting, the event and its urgency) in :mod:`heliosd.notify.notice_format`. The stop,
mode, connection, integrity and strategy notices are here; every name imported from this
module before the split still is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from heliosd.core.protocols import Event
from heliosd.core.types import GateResult, Mode
from heliosd.notify.notice_format import URGENT_KINDS as URGENT_KINDS
from heliosd.notify.notice_format import _event, _lines, _num
from heliosd.notify.trade_notices import FILLS_LISTED as FILLS_LISTED
from heliosd.notify.trade_notices import fill_event as fill_event
from heliosd.notify.trade_notices import fills_event as fills_event
from heliosd.notify.trade_notices import order_event as order_event
from heliosd.notify.trade_notices import positions_close_event as positions_close_event
from heliosd.notify.trade_notices import risk_rejected_event as risk_rejected_event


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
