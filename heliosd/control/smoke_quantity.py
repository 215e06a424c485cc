"""The quantity of a live-smoke BUY: reading the daemon's decimals, and the smallest
MARKET BUY a pair's limits (from ``GET /api/risk``) allow."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Final

# A market buy's value is checked against the pair's minimum at the price it fills at: keep
# a margin over the current ask so a small move between now and the fill cannot undercut it.
PRICE_MARGIN: Final = Decimal("1.02")


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() else None


def minimum_quantity(limits: Mapping[str, Any]) -> Decimal:
    """The smallest MARKET BUY quantity (base currency) the pair's limits allow.

    ``limits`` is one entry of ``GET /api/risk``'s ``pairs``: ``min_base`` (required),
    ``base_decimals``, ``min_quote`` and a price (``ask``, else ``mark``). The answer is at
    least ``min_base`` and worth at least ``min_quote`` at the price plus PRICE_MARGIN,
    rounded *up* to the base decimals (rounding down could fall under the minimum).
    Raises ValueError when the limits are unusable.
    """
    min_base = _dec(limits.get("min_base"))
    if min_base is None or min_base <= 0:
        raise ValueError("the pair's min_base is missing")
    decimals = limits.get("base_decimals")
    quantum = Decimal(1).scaleb(-decimals) if isinstance(decimals, int) else None
    quantity = min_base
    min_quote = _dec(limits.get("min_quote"))
    price = _dec(limits.get("ask")) or _dec(limits.get("mark"))
    if min_quote is not None and price is not None and price > 0:
        quantity = max(quantity, min_quote * PRICE_MARGIN / price)
    if quantum is not None:
        quantity = quantity.quantize(quantum, rounding=ROUND_CEILING)
    return quantity
