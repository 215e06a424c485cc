"""The built-in ledger monitors: the daily-loss auto-stop and the drawdown emergency stop.

A monitor looks at one mode's :class:`~heliosd.core.protocols.LedgerSnapshot` after every fill and
price update and may answer an :class:`~heliosd.core.types.Action`; the core trips (and persists)
the named breaker and acts on it. Monitors are pure: no I/O, no state of their own. They do
not fire again while their breaker is already tripped, so one loss produces one stop and one
notification, not one per price tick.

Thresholds are "at the limit": ``>=`` (a daily loss or drawdown exactly at its configured
percentage trips its stop).

The end of the module holds the core's rule for *any* monitor's answer (fail closed): one
that raises, or answers anything but ``None`` or a well-formed Action, is read as a HALT under
its own breaker ``monitor:<name>`` (:func:`checked_action`, :func:`failure_action`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from heliosd.core.config import Settings
from heliosd.core.protocols import LedgerSnapshot, Monitor, MonitorContext
from heliosd.core.types import Action, ActionKind
from heliosd.plugins.hookspecs import hookimpl
from heliosd.risk.ledger import next_day_start

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
STALE_PRICES = "stale_prices"

_CENT = Decimal("0.01")
# A failing monitor's reason is shown in notifications, logs and every refused order: keep
# it one short line even if the plugin's exception text is a page.
REASON_MAX = 240


def _fixed2(value: Decimal) -> str:
    return format(value.quantize(_CENT), "f")


def _tripped(ctx: MonitorContext, name: str) -> bool:
    state = ctx.breakers.get(name)
    return state is not None and state.tripped


class DailyLossMonitor:
    """Loss since 00:00 (``risk.timezone``) >= ``risk.daily_loss_pct`` of start-of-day equity
    -> HALT until the next local midnight (as UTC) or a resume."""

    name = "daily_loss"

    def on_update(self, snapshot: LedgerSnapshot, ctx: MonitorContext) -> Action | None:
        limit = ctx.settings.risk.daily_loss_pct
        if snapshot.day_start_equity <= 0 or snapshot.daily_loss_pct < limit:
            return None
        if _tripped(ctx, DAILY_LOSS):
            return None
        ref = ctx.settings.risk.reference_currency
        return Action(
            kind=ActionKind.HALT,
            breaker=DAILY_LOSS,
            reason=(
                f"{snapshot.mode} daily loss {_fixed2(snapshot.daily_loss_pct)}% reached the "
                f"{limit}% limit (equity {_fixed2(snapshot.equity)} {ref}, start of day "
                f"{_fixed2(snapshot.day_start_equity)} {ref}, loss "
                f"{_fixed2(-snapshot.daily_pnl)} {ref})"
            ),
            until=next_day_start(snapshot.at, ctx.settings.risk.tz),
        )


class DrawdownMonitor:
    """(peak - equity) / peak >= ``risk.max_drawdown_pct`` -> EMERGENCY_STOP (latched)."""

    name = "drawdown"

    def on_update(self, snapshot: LedgerSnapshot, ctx: MonitorContext) -> Action | None:
        limit = ctx.settings.risk.max_drawdown_pct
        if snapshot.peak_equity <= 0 or snapshot.drawdown_pct < limit:
            return None
        if _tripped(ctx, DRAWDOWN):
            return None
        ref = ctx.settings.risk.reference_currency
        return Action(
            kind=ActionKind.EMERGENCY_STOP,
            breaker=DRAWDOWN,
            reason=(
                f"{snapshot.mode} drawdown {_fixed2(snapshot.drawdown_pct)}% reached the "
                f"{limit}% limit (equity {_fixed2(snapshot.equity)} {ref}, peak "
                f"{_fixed2(snapshot.peak_equity)} {ref})"
            ),
        )


@hookimpl
def heliosd_register_monitors(register: Callable[[Monitor], None], config: Settings) -> None:
    """Register the daily-loss and drawdown monitors; thresholds come from ``[risk]``."""
    register(DailyLossMonitor())
    register(DrawdownMonitor())


# --------------------------------------------------------------------------- stale prices


class StaleWatch:
    """When the ``stale_prices`` breaker trips and clears, from one sweep to the next.

    Trips when holdings above dust are stale on two sweeps in a row (a REST refresh
    in flight, or the first quotes after a start, must not flap the trading state: each
    LIVE BUY is checked on its own by the ``fresh_prices`` rule meanwhile); clears on the
    first sweep where nothing is stale. ``tripped`` is the breaker as committed, so a
    resume that cleared it is tripped again if prices are still stale.
    """

    def __init__(self) -> None:
        self.previous: tuple[str, ...] = ()

    def decide(self, stale: tuple[str, ...], *, tripped: bool) -> str | None:
        previous, self.previous = self.previous, stale
        if stale and previous and not tripped:
            return "trip"
        if not stale and tripped:
            return "clear"
        return None


# --------------------------------------------------------------------------- any monitor


def failure_breaker(name: str) -> str:
    """The breaker a failing monitor trips: its own, so a resume clears exactly that."""
    return f"monitor:{name}"


def checked_action(value: object) -> Action | None:
    """A monitor's answer as an Action the core can act on; raises on anything else.

    A garbage answer is a broken monitor, and a broken monitor must not fail open. An action
    kind given as its string value ("halt") counts as that kind, as the router does for a
    verdict's action; an ``until`` must be timezone-aware (a naive one would break every
    later comparison with the clock, in the breakers every order reads).
    """
    if value is None:
        return None
    if not isinstance(value, Action):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: say so here, not as a RuntimeWarning at exit
            raise TypeError("on_update returned a coroutine; monitors must be synchronous")
        raise TypeError(f"on_update returned {type(value).__name__}, not an Action or None")
    try:
        kind = ActionKind(value.kind)
    except (ValueError, TypeError):
        raise ValueError(f"unknown action kind {value.kind!r}") from None
    if not isinstance(value.breaker, str) or not value.breaker.strip():
        raise ValueError(f"action breaker {value.breaker!r} is not a non-empty string")
    if not isinstance(value.reason, str):
        raise TypeError(f"action reason is {type(value.reason).__name__}, not a string")
    until = value.until
    if until is not None and (not isinstance(until, datetime) or until.utcoffset() is None):
        raise ValueError(f"action until {until!r} is not a timezone-aware datetime")
    if kind is value.kind:
        return value
    return Action(kind, value.breaker, value.reason, until)


def failure_action(name: str, exc: BaseException) -> Action:
    """The HALT a monitor's failure stands for: latched (no ``until``) until a resume.

    The reason names the monitor and the exception's type and text, on one line and
    truncated. The text is the plugin's own: plugins must never put a secret in one.
    """
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable exception>"
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    reason = " ".join(f"monitor {name} failed: {detail}".split())
    if len(reason) > REASON_MAX:
        reason = reason[: REASON_MAX - 3] + "..."
    return Action(ActionKind.HALT, failure_breaker(name), reason)
