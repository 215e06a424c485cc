"""An order's request body: the part of :class:`~heliosd.builtin.valr.client.ValrClient` that
validates an order against the pair's limits and rounds it onto VALR's grid (``_order_body``),
refusing locally, before any request; and the decimal texts it writes.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from heliosd.core.errors import ExchangeRejected
from heliosd.core.protocols import MarketView
from heliosd.core.types import OrderType, PairInfo, PlaceRequest, Side


def wire_decimal(value: Decimal) -> str:
    """Plain decimal text for a request body (never an exponent)."""
    return format(value, "f")


def plain(value: Decimal) -> str:
    """Decimal text for people: no exponent, no trailing zeros ("9", "0.0001")."""
    return format(value.normalize(), "f")


class _OrderBody:
    """The order's request body; a base class of _Placing (ValrClient owns the state)."""

    _market: MarketView | None

    def _order_body(self, request: PlaceRequest, pair: PairInfo) -> tuple[str, dict[str, Any]]:
        """Validate and round ``request`` against the pair's limits; return (path, body).

        Quantity is truncated to the base decimals (VALR truncates too). A limit price is
        moved onto the tick grid in the direction that never worsens it for us: down for a
        buy, up for a sell. Violations raise ExchangeRejected locally, before any request.
        """

        def reject(message: str, venue_code: int | None = None) -> ExchangeRejected:
            return ExchangeRejected(message, venue_code=venue_code, details={"local": True})

        # VALR's own texts and codes for the size limits (VALR's -12007; the maximum's
        # text is the simulator's), without VALR's stray space before the full stop (as
        # parse.venue_text tidies VALR's answers): refused here, before a request, the
        # operator reads what VALR would have said, and what the paper venue says.
        def below_minimum() -> ExchangeRejected:
            return reject(
                f"Minimum order size not met. Minimum amount: {plain(pair.min_base)} "
                f"{pair.base}, minimum total: {plain(pair.min_quote)} {pair.quote}",
                -12007,
            )

        def above_maximum() -> ExchangeRejected:
            return reject(
                f"Maximum order size exceeded. Maximum amount: {plain(pair.max_base)} "
                f"{pair.base}, maximum total: {plain(pair.max_quote)} {pair.quote}",
                -11,
            )

        symbol = pair.symbol
        if not pair.active:
            raise reject(f"{symbol} is not active on VALR")
        qty = pair.round_quantity(request.quantity)
        if qty <= 0 or qty < pair.min_base:
            raise below_minimum()
        if qty > pair.max_base:
            raise above_maximum()
        price: Decimal | None
        if request.type is OrderType.LIMIT:
            if request.price is None or request.price <= 0:
                raise reject("A limit order needs a positive price")
            rounding = ROUND_FLOOR if request.side is Side.BUY else ROUND_CEILING
            ticks = (request.price / pair.tick_size).to_integral_value(rounding=rounding)
            price = ticks * pair.tick_size
            if price <= 0:
                raise reject(f"Price {request.price} is below one tick ({pair.tick_size})")
        else:
            # A market order's notional is an estimate at the current touch, when we have one.
            price = self._market.price_for(symbol, request.side) if self._market else None
        if price is not None:
            notional = qty * price
            if notional < pair.min_quote:
                raise below_minimum()
            if notional > pair.max_quote:
                raise above_maximum()
        if request.type is OrderType.LIMIT:
            assert price is not None
            return "/v2/orders/limit", {
                "side": request.side.value,
                "quantity": wire_decimal(qty),
                "price": wire_decimal(price),
                "pair": symbol,
                "postOnly": False,
                "customerOrderId": request.customer_order_id,
                "timeInForce": "GTC",
            }
        return "/v2/orders/market", {
            "side": request.side.value,
            "baseAmount": wire_decimal(qty),
            "pair": symbol,
            "customerOrderId": request.customer_order_id,
        }
