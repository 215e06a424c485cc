"""Drop-in risk rule: cap how many orders may be open at once.

Install (see plugins/README.md): copy this file into a directory named by
``daemon.plugin_dirs``, owned by root or the daemon's user and not group- or world-writable
(``install -m 0644``), then ``systemctl reload heliosd`` (SIGHUP) or restart.

Config (optional; without the section the defaults below apply)::

    [max_open_orders]
    max_open = 10          # open orders in the order's mode, all pairs together
    max_open_per_pair = 4  # open orders in the order's mode and pair; 0 = no per-pair cap

Why: every resting order is exposure that exists nowhere in the position figures until it
fills, and a strategy that forgets to cancel piles them up unnoticed. Past the cap something
is wrong, so new orders are refused until orders fill or are cancelled.

Reducing MARKET orders always pass: they never rest, so they cannot add to the pile, and
refusing them would stop an operator from closing a position at the worst moment. Reducing
LIMIT orders are counted like any other: a resting order is exactly what this rule limits.

Counts come from ``ctx.order_stats`` (the core's in-memory counters, no I/O) and are per
mode, so PAPER orders never use up LIVE's allowance. Settings are read from
``ctx.settings.plugins`` on every call: a SIGHUP reload re-reads the config file, so an
edited ``[max_open_orders]`` section applies from the next order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from heliosd import (
    ConfigError,
    OrderIntent,
    OrderType,
    RiskContext,
    RiskRule,
    Settings,
    Verdict,
    hookimpl,
    p_int,
    reduces_position,
)

SECTION = "max_open_orders"


@dataclass(frozen=True)
class MaxOpenOrdersSettings:
    """``[max_open_orders]``; ``max_open_per_pair`` 0 turns the per-pair cap off."""

    max_open: int = 10
    max_open_per_pair: int = 0


DEFAULTS = MaxOpenOrdersSettings()


def parse(raw: Mapping[str, Any], source: str) -> MaxOpenOrdersSettings:
    """Validate ``[max_open_orders]``; ConfigError names the offending key (exit 78)."""
    known = ("max_open", "max_open_per_pair")
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown key; known keys of [{SECTION}]: {', '.join(known)}",
                key=f"{SECTION}.{key}",
                source=source,
            )
    values = {
        key: p_int(raw.get(key, getattr(DEFAULTS, key)), f"{SECTION}.{key}", source)
        for key in known
    }
    if values["max_open"] < 1:
        raise ConfigError("must be at least 1", key=f"{SECTION}.max_open", source=source)
    if values["max_open_per_pair"] < 0:
        raise ConfigError(
            "must be 0 (off) or more", key=f"{SECTION}.max_open_per_pair", source=source
        )
    return MaxOpenOrdersSettings(**values)


class MaxOpenOrders:
    """Reject a new order while the mode already has ``max_open`` orders open (or the pair
    has ``max_open_per_pair``). The order being checked is not yet stored, so it is not in
    the counts: with ``max_open = 3`` the fourth order is the first refused."""

    name = "max_open_orders"

    def __init__(self) -> None:
        # Verdicts are immutable: the common answers are built once, not per order.
        self._reduces = Verdict.accept(self.name, "a reducing market order never rests")
        self._within = Verdict.accept(self.name, "within the open-order cap")

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        if intent.type is OrderType.MARKET and reduces_position(
            intent, ctx.ledger.position(intent.pair)
        ):
            return self._reduces
        cfg = ctx.settings.plugins.get(SECTION, DEFAULTS)
        total = ctx.order_stats.open_orders(mode=ctx.mode)
        if total >= cfg.max_open:
            return Verdict.reject(
                self.name,
                f"{total} orders already open in {ctx.mode} (limit {cfg.max_open}); "
                "cancel some or wait for fills",
                {"open": str(total), "limit": str(cfg.max_open)},
            )
        if cfg.max_open_per_pair:
            in_pair = ctx.order_stats.open_orders(pair=intent.pair, mode=ctx.mode)
            if in_pair >= cfg.max_open_per_pair:
                return Verdict.reject(
                    self.name,
                    f"{in_pair} {intent.pair} orders already open in {ctx.mode} "
                    f"(limit {cfg.max_open_per_pair} per pair); cancel some or wait for fills",
                    {"open": str(in_pair), "limit": str(cfg.max_open_per_pair)},
                )
        return self._within


@hookimpl
def heliosd_config_sections() -> Mapping[str, Callable[[Mapping[str, Any], str], Any]]:
    return {SECTION: parse}


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    register(MaxOpenOrders())
