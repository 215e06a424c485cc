"""The built-in ledger monitors: the daily-loss auto-stop and the drawdown emergency stop.

A monitor looks at one mode's :class:`~heliosd.protocols.LedgerSnapshot` after every fill and
price update and may answer an :class:`~heliosd.types.Action`; the core trips (and persists)
the named breaker and acts on it. Monitors are pure: no I/O, no state of their own. They do
not fire again while their breaker is already tripped, so one loss produces one stop and one
notification, not one per price tick.

Thresholds are "at the limit": ``>=`` (design.md section 4, "At the limit: ...").
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from heliosd.config import Settings
from heliosd.hookspecs import hookimpl
from heliosd.ledger import next_day_start
from heliosd.protocols import LedgerSnapshot, Monitor, MonitorContext
from heliosd.types import Action, ActionKind

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"

_CENT = Decimal("0.01")


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
