"""The price path: a seeded random walk per pair, or a replayed CSV.

The walk moves each mid by a whole number of basis points drawn uniformly from
``[-volatility_bps, +volatility_bps]`` per tick, so the path is pure Decimal arithmetic and
identical for a given seed on every platform.

CSV replay: rows of ``pair,price`` (a header row naming those columns is optional; blank
lines and ``#`` comments are skipped). Each tick consumes the next row of every pair; a
pair that runs out starts again from its first row.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from itertools import cycle
from pathlib import Path

BPS = Decimal(10_000)
STATE_QUANTUM = Decimal("1e-8")


class PricePath:
    """Next mid price per pair, deterministic for a given seed (or CSV)."""

    def __init__(
        self,
        start: dict[str, Decimal],
        *,
        seed: int,
        volatility_bps: int,
        csv_path: Path | str | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._volatility = volatility_bps
        self._last = dict(start)
        self._replay: dict[str, Iterator[Decimal]] = {}
        if csv_path is not None:
            self._replay = {
                pair: cycle(prices) for pair, prices in load_csv(Path(csv_path)).items()
            }

    def next(self, pair: str) -> Decimal:
        replay = self._replay.get(pair)
        if replay is not None:
            price = next(replay)
        else:
            step = self._rng.randint(-self._volatility, self._volatility)
            # Quantised so the walk's Decimals stay short instead of growing 28 digits.
            price = (self._last[pair] * (BPS + step) / BPS).quantize(STATE_QUANTUM)
        self._last[pair] = price
        return price

    def moved_to(self, pair: str, price: Decimal) -> None:
        """An explicit ``set_price`` becomes the walk's new starting point."""
        self._last[pair] = price


def load_csv(path: Path) -> dict[str, list[Decimal]]:
    series: dict[str, list[Decimal]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}: expected 'pair,price', got {row!r}")
            pair, raw = row[0].strip(), row[1].strip()
            if pair.lower() == "pair":
                continue  # header
            try:
                price = Decimal(raw)
            except InvalidOperation:
                raise ValueError(f"{path}: bad price {raw!r} for {pair}") from None
            if not price.is_finite() or price <= 0:
                raise ValueError(f"{path}: bad price {raw!r} for {pair}")
            series.setdefault(pair, []).append(price)
    return series
