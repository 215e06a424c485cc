"""Amounts and events as heliosctl shows them to people.

The control API answers with exact decimal text (``"0.06003125"``, sometimes ``"1E-11"``);
scripts use ``--json`` and get exactly that. A person reading a table wants an amount in
its currency's usual precision and never an exponent, so tables go through :func:`amount`:
rounded to the currency's decimals (ZAR 2, BTC 8), plain digits always. The table is small
and local because the control API does not publish currency precisions; a currency it
does not list gets :data:`DEFAULT_DECIMALS`, enough for any crypto asset VALR lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

# Display precision per currency: fiat and stablecoins in cents, crypto in VALR's base
# decimals for its ZAR pairs.
DECIMALS: Final[Mapping[str, int]] = {
    "ZAR": 2, "USD": 2, "EUR": 2, "GBP": 2, "USDC": 2, "USDT": 2,
    "BTC": 8, "ETH": 8, "SOL": 8, "XRP": 6, "ADA": 6, "DOGE": 8, "LTC": 8, "BNB": 8,
}  # fmt: skip
DEFAULT_DECIMALS: Final = 8
# Quote currencies VALR uses, longest first so "USDC" wins over a shorter suffix.
QUOTES: Final = ("USDC", "USDT", "ZAR", "USD", "EUR", "BTC", "ETH")


def decimal_of(value: Any) -> Decimal | None:
    """``value`` as a finite Decimal, or None when it is not a number (bools are not)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def plain(value: Decimal) -> str:
    """Fixed-point digits, never an exponent ("1E-11" -> "0.00000000001")."""
    return format(value, "f")


def decimals(currency: str | None) -> int:
    return DECIMALS.get((currency or "").upper(), DEFAULT_DECIMALS)


def amount(value: Any, currency: str | None) -> str:
    """``value`` rounded to ``currency``'s decimals, plain digits; "-" for nothing."""
    number = decimal_of(value)
    if number is None:
        return "-" if value is None or value == "" else str(value)
    places = decimals(currency)
    rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if rounded.is_zero():
        rounded = abs(rounded)  # "-0.00" reads as a loss that is not there
    return plain(rounded)


def split_pair(pair: Any) -> tuple[str | None, str | None]:
    """ "BTCZAR" -> ("BTC", "ZAR"); (None, None) when the quote is not one VALR uses."""
    if not isinstance(pair, str):
        return None, None
    symbol = pair.upper()
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None, None


def plain_text(value: Any) -> Any:
    """A number-like string in exponent form made plain; anything else unchanged."""
    if isinstance(value, str) and ("E" in value or "e" in value):
        number = decimal_of(value)
        if number is not None:
            return plain(number)
    return value


# --------------------------------------------------------------------------- orders


def order_rows(orders: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Orders shaped for the table, and whether any row needs the NET note.

    VALR (and the paper venue, which copies it) takes a BUY's fee in the base currency:
    to hold QUANTITY after the fee, the order buys a little more, so FILLED (gross) is
    above QUANTITY and NET (what was received: filled less the base-currency fee) is what
    the position grew by.
    """
    rows: list[dict[str, Any]] = []
    net_shown = False
    for o in orders:
        base, quote = split_pair(o.get("pair"))
        fees: Mapping[str, Any] = o.get("fees") or {}
        filled = decimal_of(o.get("filled_quantity"))
        base_fee = decimal_of(fees.get(base)) if base else None
        net: Any = None
        if filled is not None:
            net = filled - base_fee if base_fee else filled
            net_shown = net_shown or bool(base_fee)
        rows.append({
            "id": o.get("id"),
            "created_at": short_time(o.get("created_at")),
            "mode": o.get("mode"),
            "pair": o.get("pair"),
            "side": o.get("side"),
            "type": o.get("type"),
            "quantity": amount(o.get("quantity"), base),
            "price": amount(o.get("price"), quote),
            "state": o.get("state"),
            "filled": amount(o.get("filled_quantity"), base),
            "net": amount(net, base),
            "avg_price": amount(o.get("average_price"), quote),
            "fee": fee_text(fees),
            "reason": o.get("failed_reason") or o.get("reason"),
        })  # fmt: skip
    return rows, net_shown


ORDER_TABLE: Final = (
    "id", "created_at", "mode", "pair", "side", "type", "quantity", "price", "state",
    "filled", "net", "avg_price", "fee", "reason",
)  # fmt: skip
NET_NOTE: Final = (
    "FILLED is gross; NET is FILLED less a fee taken in the base currency (a BUY's fee on "
    "VALR): QUANTITY is what the order asked to hold, so FILLED can exceed it."
)


def fee_text(fees: Mapping[str, Any]) -> str:
    """``{"ETH": "0.00006004"}`` -> ``0.00006004 ETH``; several currencies joined by " + "."""
    parts = [f"{amount(v, c)} {c}" for c, v in sorted(fees.items()) if decimal_of(v)]
    return " + ".join(parts) or "-"


# --------------------------------------------------------------------------- positions


# Which currency each amount column of a position row is in: "asset" the base, "currency"
# the reference currency the row values in.
POSITION_AMOUNTS: Final[Mapping[str, str]] = {
    "quantity": "asset", "average_cost": "currency", "mark": "currency",
    "notional": "currency", "unrealized_pnl": "currency", "realized_pnl": "currency",
    "fees": "currency",
}  # fmt: skip


def position_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        shaped = dict(row)
        for column, unit in POSITION_AMOUNTS.items():
            if column in shaped:
                shaped[column] = amount(shaped[column], row.get(unit))
        out.append(shaped)
    return out


# --------------------------------------------------------------------------- events


def short_time(value: Any) -> Any:
    """An ISO timestamp to the second, UTC ("2026-12-03 06:00:56Z"); others unchanged."""
    if not isinstance(value, str):
        return value
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    if at.tzinfo is None:
        return value
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _order_summary(order: Mapping[str, Any]) -> str:
    base, quote = split_pair(order.get("pair"))
    price = f" @ {amount(order['price'], quote)}" if order.get("price") else ""
    text = (
        f"#{order.get('id')} {order.get('mode')} {order.get('side')} "
        f"{amount(order.get('quantity'), base)} {order.get('pair')} {order.get('type')}{price}"
        f": {order.get('state')}"
    )
    filled = decimal_of(order.get("filled_quantity"))
    if filled:
        text += f", {amount(filled, base)} done"
        if order.get("average_price"):
            text += f" at {amount(order['average_price'], quote)}"
    if order.get("failed_reason"):
        text += f" ({order['failed_reason']})"
    return text


def _fill_summary(data: Mapping[str, Any]) -> str:
    base, quote = split_pair(data.get("pair"))
    currency = str(data.get("fee_currency") or "")
    return (
        f"{data.get('mode')} order #{data.get('order_id')} {data.get('side')} "
        f"{amount(data.get('quantity'), base)} {data.get('pair')} @ "
        f"{amount(data.get('price'), quote)} fee {amount(data.get('fee'), currency)} {currency}"
    )


def _scalars(data: Mapping[str, Any]) -> str:
    parts = []
    for key, value in data.items():
        if key in ("type", "at") or isinstance(value, dict | list) or value in (None, ""):
            continue
        shown = "yes" if value is True else "no" if value is False else plain_text(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def event_line(kind: str, data: Any, now: datetime | None = None) -> str:
    """One readable line per event: time, type, the few fields that matter."""
    at = data.get("at") if isinstance(data, dict) else None
    when = short_time(at) if at else short_time((now or datetime.now(UTC)).isoformat())
    if not isinstance(data, dict):
        summary = str(data)
    elif kind == "order" and isinstance(data.get("order"), dict):
        summary = _order_summary(data["order"])
    elif kind == "fill":
        summary = _fill_summary(data)
    elif kind == "notification":
        summary = str(data.get("title") or data.get("kind") or "")
        if data.get("urgent"):
            summary = "URGENT " + summary
    elif kind == "dropped":  # the stream's budget or buffer: the database has every one
        summary = f"{data.get('count')} events not shown (see heliosctl orders, GET /api/fills)"
    elif kind == "mode":
        summary = f"{data.get('mode')} {data.get('trading_state')} epoch {data.get('epoch')}"
        if data.get("state_reason"):
            summary += f" ({data['state_reason']})"
    else:
        summary = str(data.get("message") or data.get("title") or _scalars(data))
        if not summary:
            rest = {k: v for k, v in data.items() if k not in ("type", "at")}
            summary = json.dumps(rest, separators=(",", ":"), ensure_ascii=False)
    return f"{when}  {kind:<16} {' '.join(summary.split())}"
