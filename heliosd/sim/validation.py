"""Turning order/cancel request bodies into typed requests, as strictly as VALR.

Rules (VALR's order placement docs): ``side`` must be upper case ``BUY``/``SELL`` (lower
case is -11), ``price`` must be a multiple of ``tickSize``, ``quantity`` is truncated to
``baseDecimalPlaces`` and must then lie within ``minBaseAmount..maxBaseAmount`` and its
notional within ``minQuoteAmount..maxQuoteAmount`` (-12007 below the minimum),
``customerOrderId`` is at most 50 characters of ``[0-9A-Za-z-]``.

Stricter than VALR may be: amounts must be JSON *strings* (a number is -11). heliosd keeps
money in Decimal, so a float on the wire is a client bug worth failing on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from heliosd.sim.config import PairSpec
from heliosd.sim.errors import ApiError, invalid_request, unsupported_pair
from heliosd.sim.orders import Side
from heliosd.sim.wire import dec

_CUSTOMER_ID = re.compile(r"^[0-9A-Za-z-]{1,50}$")
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK"})


@dataclass(frozen=True, slots=True)
class LimitRequest:
    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    post_only: bool
    time_in_force: str
    customer_order_id: str | None
    allow_margin: bool


@dataclass(frozen=True, slots=True)
class MarketRequest:
    pair: str
    side: Side
    base_amount: Decimal | None
    quote_amount: Decimal | None
    customer_order_id: str | None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pair: str
    order_id: str | None
    customer_order_id: str | None


OrderRequest = LimitRequest | MarketRequest


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_request()
    return body


def _pair(body: dict[str, Any], specs: dict[str, PairSpec]) -> PairSpec:
    pair = body.get("pair")
    if not isinstance(pair, str) or not pair:
        raise invalid_request()
    spec = specs.get(pair)
    if spec is None:
        raise unsupported_pair()
    return spec


def _side(body: dict[str, Any]) -> Side:
    # Strict upper case since Feb 2024; "buy" is rejected like any other bad value.
    side = body.get("side")
    if side == "BUY":
        return "buy"
    if side == "SELL":
        return "sell"
    raise invalid_request()


def _amount(body: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    raw = body.get(name)
    if raw is None and not required:
        return None
    if not isinstance(raw, str):
        raise invalid_request()
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise invalid_request() from None
    if not value.is_finite() or value <= 0:
        raise invalid_request()
    return value


def _required(body: dict[str, Any], name: str) -> Decimal:
    value = _amount(body, name)
    if value is None:
        raise invalid_request()
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    raw = body.get(name, False)
    if isinstance(raw, bool):
        return raw
    # PM's own samples send allowMargin as the string "false".
    if raw in ("true", "false"):
        return bool(raw == "true")
    raise invalid_request()


def _customer_order_id(body: dict[str, Any]) -> str | None:
    raw = body.get("customerOrderId")
    if raw is None:
        return None
    if not isinstance(raw, str) or not _CUSTOMER_ID.match(raw):
        raise invalid_request()
    return raw


def min_size_error(spec: PairSpec) -> ApiError:
    # VALR's format, including the stray space before the full stop.
    return ApiError(
        400,
        -12007,
        f"Minimum order size not met . Minimum amount: {dec(spec.min_base)} {spec.base}, "
        f"minimum total: {dec(spec.min_quote)} {spec.quote}",
    )


def max_size_error(spec: PairSpec) -> ApiError:
    return invalid_request(
        f"Maximum order size exceeded . Maximum amount: {dec(spec.max_base)} {spec.base}, "
        f"maximum total: {dec(spec.max_quote)} {spec.quote}"
    )


def check_size(spec: PairSpec, base: Decimal, quote: Decimal) -> None:
    if base < spec.min_base or quote < spec.min_quote:
        raise min_size_error(spec)
    if base > spec.max_base or quote > spec.max_quote:
        raise max_size_error(spec)


def parse_limit(body: Any, specs: dict[str, PairSpec]) -> LimitRequest:
    obj = _object(body)
    spec = _pair(obj, specs)
    side = _side(obj)
    quantity = _required(obj, "quantity")
    price = _required(obj, "price")
    tif = obj.get("timeInForce", "GTC")
    if tif not in _TIME_IN_FORCE:
        raise invalid_request()
    post_only = _flag(obj, "postOnly")
    if post_only and tif != "GTC":
        raise invalid_request()
    if price % spec.tick_size:
        raise invalid_request(f"Price must be a multiple of the tick size {dec(spec.tick_size)}")
    quantity = quantity.quantize(spec.base_quantum, rounding=ROUND_DOWN)
    check_size(spec, quantity, quantity * price)
    return LimitRequest(
        pair=spec.symbol,
        side=side,
        quantity=quantity,
        price=price,
        post_only=post_only,
        time_in_force=str(tif),
        customer_order_id=_customer_order_id(obj),
        allow_margin=_flag(obj, "allowMargin"),
    )


def parse_market(
    body: Any, specs: dict[str, PairSpec], mids: Mapping[str, Decimal]
) -> MarketRequest:
    """``mids`` (current mid per pair) turn base into quote for the size checks."""
    obj = _object(body)
    spec = _pair(obj, specs)
    reference = mids[spec.symbol]
    side = _side(obj)
    base = _amount(obj, "baseAmount", required=False)
    quote = _amount(obj, "quoteAmount", required=False)
    if (base is None) == (quote is None):  # exactly one of them
        raise invalid_request()
    if base is not None:
        base = base.quantize(spec.base_quantum, rounding=ROUND_DOWN)
        check_size(spec, base, base * reference)
    else:
        assert quote is not None
        check_size(spec, quote / reference, quote)
    return MarketRequest(
        pair=spec.symbol,
        side=side,
        base_amount=base,
        quote_amount=quote,
        customer_order_id=_customer_order_id(obj),
    )


def parse_cancel(body: Any, specs: dict[str, PairSpec]) -> CancelRequest:
    obj = _object(body)
    spec = _pair(obj, specs)
    order_id = obj.get("orderId")
    customer_order_id = obj.get("customerOrderId")
    if (order_id is None) == (customer_order_id is None):  # never both, never neither
        raise invalid_request()
    for value in (order_id, customer_order_id):
        if value is not None and (not isinstance(value, str) or not value):
            raise invalid_request()
    return CancelRequest(spec.symbol, order_id, customer_order_id)
