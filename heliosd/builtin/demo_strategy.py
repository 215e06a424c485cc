"""The ``demo`` strategy: a moving-average crossover on mid prices, sized by half-Kelly.

It exists to show the machinery working (engine -> router -> risk rules -> venue -> ledger),
not to make money. On a random walk, such as the simulator's price path, a crossover has no
edge and the fees make it lose slowly; the sizing below is deliberately small so that a demo
never risks much.

Decisions, per pair of ``[engine] pairs``, on every *new* mid price (a quote whose timestamp
moved; an unchanged quote seen again on an interval tick is not a new sample, so a dead feed
freezes the averages instead of flattening them):

* keep the last ``long_window`` mids; once full, compare the simple moving average of the last
  ``short_window`` mids (SMA short) with that of all of them (SMA long). SMA short is *above*
  when it exceeds SMA long by more than ``threshold_bps`` of it, *below* when it is that far
  under; inside the band the previous side stands, so prices wobbling on the line do not
  trade;
* up-cross (from below to above) while flat: BUY at market;
* down-cross (from above to below) while holding: SELL the whole held quantity at market;
* otherwise hold. The first side seen is a starting point, not a cross.

"Flat" and "held" read the mode's ledger (``position(pair)``): less than the pair's minimum
order is flat (dust cannot be sold). So a refused buy simply leaves the pair flat, and a
down-cross with nothing held does nothing.

Sizing: :func:`heliosd.builtin.sizing.kelly_quantity` with fixed, conservative estimates, as
no honest estimate of a crossover's edge exists: ``win_probability`` 0.53 and
``payoff_ratio`` 1.0 give full Kelly ``0.53 - 0.47 / 1 = 6 %`` of equity, scaled by
``risk.kelly_fraction`` (default 0.5): 3 % of equity per buy. The position cap passed to the
sizer is 90 % of ``risk.max_position_pct``, so a fill a few basis points above the quote still
stays under the limit (the risk rules check every order anyway).

Windows: defaults 5 and 20 samples with a 2 bps band. On the simulator's random walk
(``price_interval_s`` 0.5 s, 5 bps steps) the averages are ready after 10 s, the first buy
comes within about 45 s, and both pairs together cross about 10 times a minute. Each round
trip pays the spread, slippage and two taker fees (about 0.4 % of its size in PAPER with the
defaults), so left running for hours the demo loses a few percent an hour and eventually
meets the daily-loss halt, which is the safety net doing its job. Everything is configurable
in an optional ``[demo_strategy]`` table: ``short_window``, ``long_window``,
``threshold_bps``, ``win_probability``, ``payoff_ratio``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from heliosd.builtin.sizing import kelly_quantity
from heliosd.core.config import Settings, p_decimal, p_int
from heliosd.core.errors import ConfigError
from heliosd.core.protocols import MarketSnapshot, Strategy, StrategyContext
from heliosd.core.types import OrderIntent, OrderType, PairInfo, Side
from heliosd.plugins.hookspecs import hookimpl

NAME = "demo"
SECTION = "demo_strategy"
_CAP_HEADROOM = Decimal("0.9")
_CENTS = Decimal("0.01")
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class DemoSettings:
    short_window: int = 5
    long_window: int = 20
    # SMA short must sit this far (basis points of SMA long) from SMA long to count as a side.
    threshold_bps: Decimal = Decimal(2)
    win_probability: Decimal = Decimal("0.53")
    payoff_ratio: Decimal = Decimal("1.0")


_PARSERS: dict[str, Callable[[Any, str, str], Any]] = {
    "short_window": p_int,
    "long_window": p_int,
    "threshold_bps": p_decimal,
    "win_probability": p_decimal,
    "payoff_ratio": p_decimal,
}


def parse_demo_settings(raw: Mapping[str, Any], source: str) -> DemoSettings:
    """Validate the ``[demo_strategy]`` table (unknown keys are errors, as everywhere)."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{SECTION}.{key}"
        if key not in _PARSERS:
            raise ConfigError(
                f"unknown key; known keys of [{SECTION}]: {', '.join(_PARSERS)}",
                key=full,
                source=source,
            )
        values[key] = _PARSERS[key](value, full, source)
    out = DemoSettings(**values)
    if not 1 <= out.short_window < out.long_window:
        raise ConfigError(
            f"need 1 <= short_window ({out.short_window}) < long_window ({out.long_window})",
            key=f"{SECTION}.short_window",
            source=source,
        )
    if not Decimal(0) < out.win_probability < Decimal(1):
        raise ConfigError(
            "must be between 0 and 1", key=f"{SECTION}.win_probability", source=source
        )
    if out.threshold_bps < 0:
        raise ConfigError("must not be negative", key=f"{SECTION}.threshold_bps", source=source)
    if out.payoff_ratio <= 0:
        raise ConfigError("must be above 0", key=f"{SECTION}.payoff_ratio", source=source)
    return out


def _mean(values: list[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)


class DemoStrategy:
    """See the module docstring. One instance keeps the price windows of every pair."""

    name: str = NAME

    def __init__(self, settings: DemoSettings | None = None) -> None:
        self.settings = settings or DemoSettings()
        self._mids: dict[str, deque[Decimal]] = {}
        self._seen: dict[str, datetime] = {}
        self._side: dict[str, int] = {}  # +1 short above long, -1 below (ties keep it)

    def on_market(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for pair in ctx.settings.engine.pairs:
            quote = snapshot.quotes.get(pair)
            if quote is None or quote.mid is None:
                continue
            last_seen = self._seen.get(pair)
            if last_seen is not None and quote.at <= last_seen:
                continue  # not a new price
            self._seen[pair] = quote.at
            cross = self._sample(pair, quote.mid)
            if cross is None:
                continue
            intent = self._act(pair, cross, ctx)
            if intent is not None:
                intents.append(intent)
        return intents

    def _sample(self, pair: str, mid: Decimal) -> tuple[int, Decimal, Decimal] | None:
        """Add a mid; return ``(direction, sma_short, sma_long)`` when the SMAs crossed."""
        cfg = self.settings
        mids = self._mids.setdefault(pair, deque(maxlen=cfg.long_window))
        mids.append(mid)
        if len(mids) < cfg.long_window:
            return None
        window = list(mids)
        short = _mean(window[-cfg.short_window :])
        long = _mean(window)
        band = long * cfg.threshold_bps / _BPS
        side = 1 if short > long + band else -1 if short < long - band else 0
        previous = self._side.get(pair)
        if side == 0:
            return None
        self._side[pair] = side
        if previous is None or previous == side:
            return None  # the first comparison is a starting point, not a cross
        return side, short, long

    def _act(
        self, pair: str, cross: tuple[int, Decimal, Decimal], ctx: StrategyContext
    ) -> OrderIntent | None:
        direction, short, long = cross
        info = ctx.pairs.get(pair) or ctx.market.pair(pair)
        if info is None:
            return None
        held = ctx.ledger.position(pair)
        flat = held < info.min_base
        cfg = self.settings
        averages = (
            f"SMA{cfg.short_window} {short.quantize(_CENTS)} "
            f"{'>' if direction > 0 else '<'} SMA{cfg.long_window} {long.quantize(_CENTS)}"
        )
        if direction > 0 and flat:
            return self._buy(pair, info, ctx, f"demo: up-cross, {averages}")
        if direction < 0 and not flat:
            quantity = info.round_quantity(held)
            price = ctx.market.price_for(pair, Side.SELL)
            if quantity < info.min_base or (
                price is not None and quantity * price < info.min_quote
            ):
                return None
            return OrderIntent(
                pair, Side.SELL, OrderType.MARKET, quantity, reason=f"demo: down-cross, {averages}"
            )
        return None

    def _buy(
        self, pair: str, info: PairInfo, ctx: StrategyContext, reason: str
    ) -> OrderIntent | None:
        price = ctx.market.price_for(pair, Side.BUY)
        if price is None:
            return None
        risk = ctx.settings.risk
        quantity = kelly_quantity(
            equity=ctx.ledger.equity(),
            price=price,
            win_probability=self.settings.win_probability,
            payoff_ratio=self.settings.payoff_ratio,
            fraction=risk.kelly_fraction,
            max_position_pct=risk.max_position_pct * _CAP_HEADROOM,
            pair=info,
        )
        if quantity <= 0:
            return None
        return OrderIntent(pair, Side.BUY, OrderType.MARKET, quantity, reason=reason)


def demo_settings(config: Settings) -> DemoSettings:
    found = config.plugins.get(SECTION)
    return found if isinstance(found, DemoSettings) else DemoSettings()


@hookimpl
def heliosd_config_sections() -> Mapping[str, Callable[[Mapping[str, Any], str], Any]]:
    return {SECTION: parse_demo_settings}


@hookimpl
def heliosd_register_strategies(register: Callable[[Strategy], None], config: Settings) -> None:
    register(DemoStrategy(demo_settings(config)))
