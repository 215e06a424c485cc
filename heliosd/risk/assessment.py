"""Every holding valued in the reference currency, with the dust rule (P4) and the unvalued
rule (P5) of :mod:`heliosd.risk.prices` applied: :func:`assess` and its :class:`Assessment`,
and :func:`describe_stale`, the stale list as reasons and notifications show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from heliosd.core.types import ZERO, utcnow
from heliosd.risk.snapshot import NO_PRICE, Price

if TYPE_CHECKING:
    from heliosd.risk.prices import Pricer


@dataclass(frozen=True, slots=True)
class Assessment:
    """Every holding valued: ``values`` per asset (0 when no price), the assets that are
    ``dust``, the ones above dust that are not fresh (``stale``), and among those the ones
    with no price at all (``unpriced``). ``prices`` holds the answers that needed the full
    search (every stale one among them); fresh answers from the pricer's memo are not
    built as Price objects, for speed."""

    values: Mapping[str, Decimal]
    prices: Mapping[str, Price]
    dust: tuple[str, ...]
    stale: tuple[str, ...]
    unpriced: tuple[str, ...]
    # Held, with no market on the venue at all (no direct, inverse or cross route): P5.
    unvalued: tuple[str, ...] = ()


def assess(
    pricer: Pricer,
    totals: Iterable[tuple[str, Decimal]],
    *,
    dust_value: Decimal,
    max_age_s: float,
    now: datetime | None = None,
) -> Assessment:
    """Value each ``(asset, total)`` and apply the dust rule (P4)."""
    now = utcnow() if now is None else now
    values: dict[str, Decimal] = {}
    prices: dict[str, Price] = {}
    dust: list[str] = []
    stale: list[str] = []
    unpriced: list[str] = []
    unvalued: list[str] = []
    quick = pricer.value
    ref = pricer.reference
    for asset, total in totals:
        if not total:
            continue
        if asset == ref:
            values[asset] = abs(total)
            continue
        hit = quick(asset, now)
        if hit is not None:  # fresh, from the market's latest quotes
            worth = abs(total) * hit
            values[asset] = worth
            if worth < dust_value:
                dust.append(asset)
            continue
        price = pricer.price(asset, now)
        prices[asset] = price
        value = abs(total) * price.value if price.value is not None else None
        values[asset] = ZERO if value is None else value
        if value is None and not pricer.has_market(asset):
            unvalued.append(asset)  # P5: outside measured equity, never a blocker
            continue
        if value is not None and value < dust_value:
            dust.append(asset)
            pricer.note_dust(asset)
            continue
        pricer.note_not_dust(asset)
        if not price.fresh(max_age_s):
            stale.append(asset)
            if value is None:
                unpriced.append(asset)
    return Assessment(values, prices, tuple(dust), tuple(sorted(stale)), tuple(sorted(unpriced)),
                      tuple(sorted(unvalued)))  # fmt: skip


def describe_stale(assessment: Assessment) -> str:
    """``"ETH (no price), BTC (stream 42 s old)"`` for reasons and notifications."""
    parts = []
    for asset in assessment.stale:
        price = assessment.prices.get(asset, NO_PRICE)
        if price.value is None:
            parts.append(f"{asset} (no price)")
        elif price.age_s is None:
            parts.append(f"{asset} ({price.source}, age unknown)")
        else:
            parts.append(f"{asset} ({price.source} {price.age_s:.0f} s old)")
    return ", ".join(parts)
