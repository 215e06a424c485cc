"""What every part of the ledger shares: :class:`LedgerError` and :func:`decimal_text`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

_MONEY_PLACES = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class LedgerError:
    """A stored fill the ledger could not apply (reported, never raised at startup)."""

    trade_id: str
    pair: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"trade_id": self.trade_id, "pair": self.pair, "reason": self.reason}


def decimal_text(value: Decimal, places: Decimal = _MONEY_PLACES) -> str:
    """Fixed-point text for JSON: rounded to ``places``, no exponent, no trailing zeros."""
    text = format(value.quantize(places, rounding=ROUND_HALF_EVEN), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
