"""Kelly position sizing for strategies.

The Kelly criterion gives the fraction of equity that maximises long-run growth for a bet won
with probability ``p`` paying ``b`` times the stake (lost stake 1): ``f* = p - (1 - p) / b``.
Full Kelly is brutal on estimation error, so strategies scale it by ``risk.kelly_fraction``
(default one half) and never exceed the position limit. Sizing is advice to a strategy: the
risk rules still check every order.
"""

from __future__ import annotations

from decimal import Decimal

from heliosd.core.types import ZERO, PairInfo

_ONE = Decimal(1)
_HUNDRED = Decimal(100)


def kelly_fraction(win_probability: Decimal, payoff_ratio: Decimal) -> Decimal:
    """``p - (1 - p) / b`` clamped to [0, 1]; 0 means "no edge, do not bet".

    Raises ValueError when ``p`` is not in [0, 1] or ``b`` is not positive: those are bugs in
    the caller's estimate, not market conditions.
    """
    if not (win_probability.is_finite() and payoff_ratio.is_finite()):
        raise ValueError("win probability and payoff ratio must be finite")
    if not ZERO <= win_probability <= _ONE:
        raise ValueError(f"win probability {win_probability} is not in [0, 1]")
    if payoff_ratio <= 0:
        raise ValueError(f"payoff ratio {payoff_ratio} must be positive")
    f = win_probability - (_ONE - win_probability) / payoff_ratio
    return min(_ONE, max(ZERO, f))


def kelly_quantity(
    equity: Decimal,
    price: Decimal,
    win_probability: Decimal,
    payoff_ratio: Decimal,
    fraction: Decimal,
    max_position_pct: Decimal,
    pair: PairInfo,
) -> Decimal:
    """Base quantity to hold: ``equity * min(kelly * fraction, max_position_pct / 100) / price``.

    Rounded down to the pair's base decimals and to its maximum order; 0 when the result is
    below the pair's minimum (``min_base`` or ``min_quote``), when there is no edge, or when
    equity or price is not positive (nothing honest to size against).
    """
    if not ZERO <= fraction <= _ONE:
        raise ValueError(f"Kelly fraction {fraction} is not in [0, 1]")
    if equity <= 0 or price <= 0 or max_position_pct <= 0:
        return ZERO
    share = min(
        kelly_fraction(win_probability, payoff_ratio) * fraction, max_position_pct / _HUNDRED
    )
    if share <= 0:
        return ZERO
    quantity = pair.round_quantity(equity * share / price)
    if pair.max_base > 0 and quantity > pair.max_base:
        quantity = pair.round_quantity(pair.max_base)
    if pair.max_quote > 0 and quantity * price > pair.max_quote:
        quantity = pair.round_quantity(pair.max_quote / price)
    if quantity <= 0 or quantity < pair.min_base or quantity * price < pair.min_quote:
        return ZERO
    return quantity
