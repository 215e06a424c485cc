"""Drop-in risk rule: at most N orders sent per rolling minute, per mode.

Install (see plugins/README.md): copy this file into a directory named by
``daemon.plugin_dirs``, owned by root or the daemon's user and not group- or world-writable
(``install -m 0644``), then ``systemctl reload heliosd`` (SIGHUP) or restart.

Config (optional; without the section the default below applies)::

    [max_orders_per_minute]
    max_orders = 10   # orders sent to the venue in the last 60 s, in the order's mode

Why: a strategy stuck in a loop, or a script retrying a "failed" order that actually went
through, multiplies fees and exposure within seconds, long before any position limit notices
a trend. A human rarely sends more than a few orders a minute; an engine on a 5 s interval
sends at most one per pair per tick.

Only orders that were *sent* count (``ctx.order_stats.orders_since``): refused orders never
reached the venue, so refusing more of them costs nothing. Counts are per mode, so PAPER
rehearsals never use up LIVE's allowance.

Reducing orders pass even at the limit: a run of reducing orders ends when the position is
flat (after that nothing reduces), and refusing them could trap an operator in a position
exactly when the loop that hit the limit needs undoing.

Settings are read from ``ctx.settings.plugins`` on every call: a copy dropped in by SIGHUP,
whose section the running daemon never parsed, runs with the default until the next restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from heliosd import (
    ConfigError,
    OrderIntent,
    RiskContext,
    RiskRule,
    Settings,
    Verdict,
    hookimpl,
    p_int,
    reduces_position,
)

SECTION = "max_orders_per_minute"
WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class MaxOrdersPerMinuteSettings:
    max_orders: int = 10


DEFAULTS = MaxOrdersPerMinuteSettings()


def parse(raw: Mapping[str, Any], source: str) -> MaxOrdersPerMinuteSettings:
    """Validate ``[max_orders_per_minute]``; ConfigError names the offending key (exit 78)."""
    for key in raw:
        if key != "max_orders":
            raise ConfigError(
                f"unknown key; known keys of [{SECTION}]: max_orders",
                key=f"{SECTION}.{key}",
                source=source,
            )
    key = f"{SECTION}.max_orders"
    max_orders = p_int(raw.get("max_orders", DEFAULTS.max_orders), key, source)
    if max_orders < 1:
        raise ConfigError("must be at least 1", key=key, source=source)
    return MaxOrdersPerMinuteSettings(max_orders)


class MaxOrdersPerMinute:
    """Reject a risk-increasing order once ``max_orders`` were sent in the last 60 s."""

    name = "max_orders_per_minute"

    def __init__(self) -> None:
        # Verdicts are immutable: the common answers are built once, not per order.
        self._reduces = Verdict.accept(self.name, "reduces the position")
        self._within = Verdict.accept(self.name, "within the order rate limit")

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        cfg = ctx.settings.plugins.get(SECTION, DEFAULTS)
        sent = ctx.order_stats.orders_since(ctx.now - WINDOW, ctx.mode)
        if sent < cfg.max_orders:
            return self._within
        if reduces_position(intent, ctx.ledger.position(intent.pair)):
            return self._reduces
        return Verdict.reject(
            self.name,
            f"{sent} orders sent in the last 60 s in {ctx.mode} "
            f"(limit {cfg.max_orders} per minute); only reducing orders pass until the "
            "rate drops",
            {"sent": str(sent), "limit": str(cfg.max_orders)},
        )


@hookimpl
def heliosd_config_sections() -> Mapping[str, Callable[[Mapping[str, Any], str], Any]]:
    return {SECTION: parse}


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    register(MaxOrdersPerMinute())
