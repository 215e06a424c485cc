"""Drop-in risk rule: new risk only during trading hours.

Install (see plugins/README.md): copy this file into a directory named by
``daemon.plugin_dirs``, owned by root or the daemon's user and not group- or world-writable
(``install -m 0644``), then ``systemctl reload heliosd`` (SIGHUP) or restart.

Config (optional; without the section the defaults below apply)::

    [trading_hours]
    days = ["mon", "tue", "wed", "thu", "fri"]
    start = "08:00"                # local time, inclusive
    end = "17:00"                  # local time, exclusive; "24:00" = midnight
    timezone = "Africa/Johannesburg"  # default: risk.timezone

``end`` before ``start`` is an overnight session that belongs to the day it starts on:
``days = ["fri"]``, ``start = "22:00"``, ``end = "06:00"`` is open from Friday 22:00 to
Saturday 06:00. All day is ``start = "00:00"``, ``end = "24:00"``. Local times follow the
time zone's daylight saving rules.

Why: crypto trades around the clock, the people watching the daemon do not. Outside the
hours nobody reacts to a fill, an alert or a runaway strategy, so no new risk is taken then.

Reducing orders pass at any hour: closing a position must always be possible, and refusing
it would turn this rule into a trap.

Settings are read from ``ctx.settings.plugins`` on every call: a copy dropped in by SIGHUP,
whose section the running daemon never parsed, runs with the defaults until the next restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from heliosd import (
    ConfigError,
    OrderIntent,
    RiskContext,
    RiskRule,
    Settings,
    Verdict,
    hookimpl,
    p_str,
    p_strs,
    p_timezone,
    reduces_position,
)

SECTION = "trading_hours"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class TradingHoursSettings:
    """``days`` are weekday numbers (Monday 0); ``start``/``end`` minutes after midnight."""

    days: frozenset[int] = frozenset(range(5))
    start: int = 8 * 60
    end: int = 17 * 60
    timezone: str | None = None  # None: risk.timezone

    def is_open(self, local: datetime) -> bool:
        """Whether ``local`` (a time in the rule's zone) falls inside a session."""
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        # Overnight: the evening part belongs to today, the morning part to yesterday.
        yesterday = (today - 1) % 7
        return (today in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )

    def describe(self, zone: str) -> str:
        """``mon,wed 08:00-17:00 Africa/Johannesburg`` (shown in every refusal)."""
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)} {zone}"


DEFAULTS = TradingHoursSettings()


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(value: Any, key: str, source: str, *, allow_24: bool) -> int:
    text = p_str(value, key, source)
    hours, sep, mins = text.partition(":")
    if not (sep and len(hours) == 2 and len(mins) == 2 and hours.isdigit() and mins.isdigit()):
        raise ConfigError(f'must be a time like "08:00", got {text!r}', key=key, source=source)
    total = int(hours) * 60 + int(mins)
    if int(mins) > 59 or total > (MINUTES_PER_DAY if allow_24 else MINUTES_PER_DAY - 1):
        bound = "24:00" if allow_24 else "23:59"
        raise ConfigError(
            f"must be between 00:00 and {bound}, got {text!r}", key=key, source=source
        )
    return total


def parse(raw: Mapping[str, Any], source: str) -> TradingHoursSettings:
    """Validate ``[trading_hours]``; ConfigError names the offending key (exit 78)."""
    known = ("days", "start", "end", "timezone")
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown key; known keys of [{SECTION}]: {', '.join(known)}",
                key=f"{SECTION}.{key}",
                source=source,
            )
    days = DEFAULTS.days
    if "days" in raw:
        key = f"{SECTION}.days"
        names = [n.lower() for n in p_strs(raw["days"], key, source)]
        unknown = [n for n in names if n not in DAY_NAMES]
        if unknown:
            raise ConfigError(
                f"unknown day {unknown[0]!r}; use {', '.join(DAY_NAMES)}", key=key, source=source
            )
        if not names:
            # An empty schedule would quietly refuse every new order forever: say so instead.
            raise ConfigError(
                "must name at least one day (to stop trading, use heliosctl stop)",
                key=key,
                source=source,
            )
        days = frozenset(DAY_NAMES.index(n) for n in names)
    start = DEFAULTS.start
    if "start" in raw:
        start = _minutes(raw["start"], f"{SECTION}.start", source, allow_24=False)
    end = DEFAULTS.end
    if "end" in raw:
        end = _minutes(raw["end"], f"{SECTION}.end", source, allow_24=True)
    if start == end:
        raise ConfigError(
            f"equals start ({_hhmm(start)}), which is ambiguous; for all day use "
            'start = "00:00" and end = "24:00"',
            key=f"{SECTION}.end",
            source=source,
        )
    zone = None
    if "timezone" in raw:
        zone = p_timezone(raw["timezone"], f"{SECTION}.timezone", source)
    return TradingHoursSettings(days, start, end, zone)


class TradingHours:
    """Reject risk-increasing orders outside the configured sessions (local time)."""

    name = "trading_hours"

    def __init__(self) -> None:
        # Verdicts are immutable: the common answers are built once, not per order.
        self._open = Verdict.accept(self.name, "within trading hours")
        self._reduces = Verdict.accept(self.name, "outside trading hours; the order reduces")

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        cfg = ctx.settings.plugins.get(SECTION, DEFAULTS)
        zone = cfg.timezone or ctx.settings.risk.timezone
        local = ctx.now.astimezone(ZoneInfo(zone))
        if cfg.is_open(local):
            return self._open
        if reduces_position(intent, ctx.ledger.position(intent.pair)):
            return self._reduces
        return Verdict.reject(
            self.name,
            f"outside trading hours ({cfg.describe(zone)}; now "
            f"{DAY_NAMES[local.weekday()]} {local:%H:%M}); only reducing orders pass",
            {"now": local.isoformat(timespec="minutes"), "hours": cfg.describe(zone)},
        )


@hookimpl
def heliosd_config_sections() -> Mapping[str, Callable[[Mapping[str, Any], str], Any]]:
    return {SECTION: parse}


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    register(TradingHours())
