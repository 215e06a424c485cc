"""Reading VALR's fields: decimals (strict, and the account stream's comma forms), times,
texts, sides, order types and order states, VALR's texts, and :class:`ParseError`.

The building blocks of :mod:`heliosd.builtin.valr.parse`, which re-exports every name here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from heliosd.core.types import OrderState, OrderType, Side

Json = Mapping[str, Any]


class ParseError(ValueError):
    """A VALR payload lacks a field or holds a value we cannot read."""


# --------------------------------------------------------------------------- scalars


def dec(value: Any, field: str) -> Decimal:
    """A decimal string (or JSON number) -> Decimal. Floats go through their text."""
    if isinstance(value, str):
        try:
            out = Decimal(value)
        except InvalidOperation:
            raise ParseError(f"{field} is not a decimal number") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        out = Decimal(value)
    elif isinstance(value, float):
        out = Decimal(repr(value))
    else:
        raise ParseError(f"{field} is missing or not a number")
    if not out.is_finite():
        raise ParseError(f"{field} is not finite")
    return out


# "114,953" (thousands) and "0,00102078" (decimal comma) both occur in VALR's published
# account-stream samples. Digit groups of exactly
# three after a non-zero leading group of one to three digits read as thousands; any other
# single comma reads as a decimal comma.
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(,\d{3})+(\.\d+)?")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


def dec_lenient(value: Any, field: str) -> Decimal:
    """Like :func:`dec`, also tolerating the comma forms of the account-stream samples.

    Only the account stream's order and trade events use this (the one place VALR's samples
    show commas); REST answers stay strict.
    """
    if isinstance(value, str) and "," in value:
        if _THOUSANDS.fullmatch(value):
            value = value.replace(",", "")
        elif _DECIMAL_COMMA.fullmatch(value):
            value = value.replace(",", ".")
        else:
            raise ParseError(f"{field} is not a decimal number")
    return dec(value, field)


def opt_dec(value: Any, field: str, *, lenient: bool = False) -> Decimal | None:
    if value is None or value == "":
        return None
    return dec_lenient(value, field) if lenient else dec(value, field)


def ts(value: Any, field: str) -> datetime:
    """ISO-8601 (``...Z``, any fraction length) or epoch milliseconds -> aware UTC."""
    if isinstance(value, str):
        try:
            out = datetime.fromisoformat(value)
        except ValueError:
            raise ParseError(f"{field} is not an ISO-8601 time") from None
        if out.tzinfo is None:
            return out.replace(tzinfo=UTC)
        return out.astimezone(UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    raise ParseError(f"{field} is missing or not a time")


def opt_ts(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    return ts(value, field)


def text(obj: Json, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(f"{key} is missing")
    return value


def opt_text(obj: Json, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def side(value: Any, field: str = "side") -> Side:
    if isinstance(value, str):
        low = value.lower()
        if low == "buy":
            return Side.BUY
        if low == "sell":
            return Side.SELL
    raise ParseError(f"{field} is not buy or sell")


def order_type(value: Any) -> OrderType:
    """``limit``, ``post-only limit``, stop variants -> LIMIT; ``market`` -> MARKET."""
    if isinstance(value, str) and value.lower().startswith("market"):
        return OrderType.MARKET
    return OrderType.LIMIT


# --------------------------------------------------------------------------- order states

_STATES: dict[str, OrderState] = {
    "placed": OrderState.PLACED,
    "active": OrderState.PLACED,
    "order modified": OrderState.PLACED,
    "order price has been modified due to slippage limits": OrderState.PLACED,
    "partially filled": OrderState.PARTIALLY_FILLED,
    "filled": OrderState.FILLED,
    "cancelled": OrderState.CANCELLED,
    "expired": OrderState.CANCELLED,
    "partially filled and cancelled due to slippage": OrderState.CANCELLED,
    "failed": OrderState.FAILED,
}


def order_state(status: Any) -> OrderState:
    """VALR's order status display string -> OrderState, case-insensitively."""
    if isinstance(status, str):
        state = _STATES.get(status.strip().lower())
        if state is not None:
            return state
    raise ParseError("order status is missing or unknown")


def failed_reason(value: Any) -> str:
    """``"None"`` (seen by CCXT) and ``""`` both mean "not failed"."""
    if not isinstance(value, str) or value == "None":
        return ""
    return venue_text(value)


_SPACE_BEFORE_STOP = re.compile(r" +\.(?=\s|$)")


def venue_text(text: str) -> str:
    """VALR's message as operators read it: VALR writes "Minimum order size not met .
    Minimum amount: ..." (VALR's -12007); the stray space before the full stop goes,
    so the order's reason reads the same whether VALR, the paper venue or our own
    pre-check refused it. Codes, not texts, are what the code matches on."""
    return _SPACE_BEFORE_STOP.sub(".", text)
