"""VALR payloads (REST answers, WebSocket events, order statuses) -> heliosd value types.

Every function takes one decoded JSON object and returns a frozen heliosd type, or raises
:class:`ParseError` naming the missing or malformed field (never echoing the payload, which
may hold account data). Callers on the streams log the error and skip the message; callers
on REST turn it into a :class:`~heliosd.core.errors.TransientError` (a garbled answer is worth
retrying, never worth guessing).

Rules applied everywhere:

* numeric strings become :class:`~decimal.Decimal` (never ``float``); ``sequenceId`` stays an
  ``int`` (it is above 2**53);
* order status strings compare case-insensitively (older docs used ``"placed"``);
* times are ISO-8601 and become aware UTC datetimes.

These run on the account stream's hot path (>= 20k fills/s), so they are plain functions over
dict lookups: no validation framework, no per-call allocation beyond the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from heliosd.builtin.valr.fields import Json as Json
from heliosd.builtin.valr.fields import ParseError as ParseError
from heliosd.builtin.valr.fields import dec as dec
from heliosd.builtin.valr.fields import dec_lenient as dec_lenient
from heliosd.builtin.valr.fields import failed_reason as failed_reason
from heliosd.builtin.valr.fields import opt_dec as opt_dec
from heliosd.builtin.valr.fields import opt_text as opt_text
from heliosd.builtin.valr.fields import opt_ts as opt_ts
from heliosd.builtin.valr.fields import order_state as order_state
from heliosd.builtin.valr.fields import order_type as order_type
from heliosd.builtin.valr.fields import side as side
from heliosd.builtin.valr.fields import text as text
from heliosd.builtin.valr.fields import ts as ts
from heliosd.builtin.valr.fields import venue_text as venue_text
from heliosd.core.types import (
    ApiKeyInfo,
    Balance,
    Fill,
    FuturesPosition,
    OpenOrder,
    OrderState,
    OrderStatus,
    PairInfo,
)

# --------------------------------------------------------------------------- public data


def pair_info(obj: Json) -> PairInfo:
    """One row of ``/v1/public/pairs``. ``baseDecimalPlaces`` is an int held in a string."""
    try:
        decimals = int(obj["baseDecimalPlaces"])
    except (KeyError, TypeError, ValueError):
        raise ParseError("baseDecimalPlaces is missing or not an integer") from None
    tick = dec(obj.get("tickSize"), "tickSize")
    if tick <= 0:
        raise ParseError("tickSize must be positive")
    return PairInfo(
        symbol=text(obj, "symbol"),
        base=text(obj, "baseCurrency"),
        quote=text(obj, "quoteCurrency"),
        min_base=dec(obj.get("minBaseAmount"), "minBaseAmount"),
        max_base=dec(obj.get("maxBaseAmount"), "maxBaseAmount"),
        min_quote=dec(obj.get("minQuoteAmount"), "minQuoteAmount"),
        max_quote=dec(obj.get("maxQuoteAmount"), "maxQuoteAmount"),
        tick_size=tick,
        base_decimals=decimals,
        active=obj.get("active") is not False,
    )


def server_time(obj: Json) -> datetime:
    """``/v1/public/time``: ``time`` (ISO, nanoseconds) or else ``epochTime`` (seconds)."""
    if isinstance(obj.get("time"), str):
        return ts(obj["time"], "time")
    epoch = obj.get("epochTime")
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return datetime.fromtimestamp(epoch, UTC)
    raise ParseError("time is missing")


@dataclass(frozen=True, slots=True)
class MarketSummary:
    """The fields of a VALR market summary the client uses."""

    pair: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    mark: Decimal | None


def market_summary(obj: Json, pair: str | None = None) -> MarketSummary:
    """REST summary or MARKET_SUMMARY_UPDATE data (``currencyPair`` or the older
    ``currencyPairSymbol``). ``"0"`` prices mean "none" (an empty side)."""
    symbol = opt_text(obj, "currencyPair") or opt_text(obj, "currencyPairSymbol") or pair
    if symbol is None:
        raise ParseError("currencyPair is missing")

    def price(key: str) -> Decimal | None:
        value = opt_dec(obj.get(key), key)
        return value if value else None

    return MarketSummary(
        symbol, price("bidPrice"), price("askPrice"), price("lastTradedPrice"), price("markPrice")
    )


def book_top(obj: Json) -> tuple[Decimal | None, Decimal | None]:
    """Best bid and ask of an aggregated book (``Bids[0].price``, ``Asks[0].price``)."""
    bids, asks = obj.get("Bids"), obj.get("Asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise ParseError("Bids/Asks are missing")
    bid = dec(bids[0].get("price"), "Bids[0].price") if bids else None
    ask = dec(asks[0].get("price"), "Asks[0].price") if asks else None
    return bid, ask


# --------------------------------------------------------------------------- account


def api_key_info(obj: Json) -> ApiKeyInfo:
    perms = obj.get("permissions")
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise ParseError("permissions is missing")
    return ApiKeyInfo(
        label=str(obj.get("label") or ""),
        permissions=frozenset(perms),
        is_subaccount=obj.get("isSubAccount") is True,
    )


def balance(obj: Json) -> Balance:
    """A REST balance row (``currency`` is the code) or BALANCE_UPDATE data (``currency`` is
    an object whose ``shortName`` is the code: ZAR's ``symbol`` is ``"R"``)."""
    cur = obj.get("currency")
    code = (cur.get("shortName") or cur.get("symbol")) if isinstance(cur, Mapping) else cur
    if not isinstance(code, str) or not code:
        raise ParseError("currency is missing")
    return Balance(
        currency=code,
        available=dec(obj.get("available"), "available"),
        reserved=dec(obj.get("reserved", "0"), "reserved"),
    )


def fill(obj: Json, *, lenient: bool = False) -> Fill:
    """A trade-history row or NEW_ACCOUNT_TRADE data -> Fill (``id`` is the trade id).

    The fee is :func:`fill_fee`'s: a maker rebate (``makerReward``) is a negative fee.
    """
    num = dec_lenient if lenient else dec
    fee, fee_currency = fill_fee(obj, lenient=lenient)
    return Fill(
        trade_id=text(obj, "id"),
        pair=text(obj, "currencyPair"),
        side=side(obj.get("side")),
        price=num(obj.get("price"), "price"),
        quantity=num(obj.get("quantity"), "quantity"),
        fee=fee,
        fee_currency=fee_currency,
        traded_at=ts(obj.get("tradedAt"), "tradedAt"),
        exchange_order_id=opt_text(obj, "orderId"),
        customer_order_id=opt_text(obj, "customerOrderId"),
    )


def fill_fee(obj: Json, *, lenient: bool = False) -> tuple[Decimal, str]:
    """``(fee, fee currency)`` of a trade row; a maker rebate is a negative fee.

    VALR's maker fills may carry ``makerReward`` and ``makerRewardCurrency`` in place of, or
    beside, ``fee``/``feeCurrency`` (one third-party capture: low
    confidence), so every combination is read and none is guessed:

    * no ``makerReward`` (absent, null, empty) or a zero one: the ``fee`` as before (absent
      means 0);
    * a reward and a zero or absent fee: ``-reward`` in ``makerRewardCurrency``;
    * both non-zero in one currency: ``fee - reward`` (the net the account paid);
    * a reward that is not a number, is negative (a "reward" that charges: its meaning is
      unknown), has no ``makerRewardCurrency``, or comes with a non-zero fee in another
      currency (one fill carries one fee): :class:`ParseError`, so the message is skipped
      and counted like any garbled one, never booked with a made-up fee.
    """
    num = dec_lenient if lenient else dec
    fee = num(obj.get("fee", "0"), "fee")
    fee_currency = str(obj.get("feeCurrency") or "")
    raw = obj.get("makerReward")
    if raw is None or raw == "":
        return fee, fee_currency
    reward = num(raw, "makerReward")
    if reward < 0:
        raise ParseError("makerReward is negative")
    if not reward:
        return fee, fee_currency
    reward_currency = obj.get("makerRewardCurrency")
    if not isinstance(reward_currency, str) or not reward_currency:
        raise ParseError("makerRewardCurrency is missing")
    if not fee:
        return -reward, reward_currency
    if fee_currency != reward_currency:
        raise ParseError("fee and makerReward are in different currencies")
    return fee - reward, fee_currency


def order_status(obj: Json, *, lenient: bool = False) -> OrderStatus:
    """Status endpoints, order-history summaries and ORDER_STATUS_UPDATE data.

    Reads ``orderStatusType`` and falls back to ``status`` (reported on live streams).
    ``executedQuantity`` (stream) or ``totalExecutedQuantity`` (history) is used when present,
    else it is derived as original - remaining.
    """
    num = dec_lenient if lenient else dec
    status = obj.get("orderStatusType") or obj.get("status")
    original = num(obj.get("originalQuantity", "0"), "originalQuantity")
    remaining = num(obj.get("remainingQuantity", "0"), "remainingQuantity")
    executed_raw = obj.get("executedQuantity", obj.get("totalExecutedQuantity"))
    executed = (
        num(executed_raw, "executedQuantity")
        if executed_raw not in (None, "")
        else max(original - remaining, Decimal(0))
    )
    avg_raw = obj.get("averagePrice", obj.get("executedPrice"))
    average = opt_dec(avg_raw, "averagePrice", lenient=lenient)
    return OrderStatus(
        pair=text(obj, "currencyPair"),
        state=order_state(status),
        exchange_order_id=opt_text(obj, "orderId"),
        customer_order_id=opt_text(obj, "customerOrderId"),
        original_quantity=original,
        remaining_quantity=remaining,
        executed_quantity=executed,
        average_price=average if average else None,
        failed_reason=failed_reason(obj.get("failedReason")),
        updated_at=opt_ts(obj.get("orderUpdatedAt"), "orderUpdatedAt"),
    )


def order_processed_failure(obj: Json) -> OrderStatus | None:
    """ORDER_PROCESSED data: a FAILED status when ``success`` is false, else None.

    The event carries no pair; ``pair`` is left empty for the core to fill from its own
    record of the order (matched by exchange or customer order id).
    """
    if obj.get("success") is not False:
        return None
    return OrderStatus(
        pair="",
        state=OrderState.FAILED,
        exchange_order_id=opt_text(obj, "orderId"),
        customer_order_id=opt_text(obj, "customerOrderId"),
        failed_reason=failed_reason(obj.get("failureReason")) or "order failed",
    )


def open_order(obj: Json, *, lenient: bool = False) -> OpenOrder:
    """A row of ``/v1/orders/open`` (``remainingQuantity``) or of OPEN_ORDERS_UPDATE
    (``quantity`` holds the remaining amount)."""
    num = dec_lenient if lenient else dec
    remaining_raw = obj.get("remainingQuantity", obj.get("quantity"))
    price_raw = obj.get("price")
    price = opt_dec(price_raw, "price", lenient=lenient)
    return OpenOrder(
        exchange_order_id=text(obj, "orderId"),
        pair=text(obj, "currencyPair"),
        side=side(obj.get("side")),
        type=order_type(obj.get("type")),
        price=price if price else None,
        original_quantity=num(obj.get("originalQuantity"), "originalQuantity"),
        remaining_quantity=num(remaining_raw, "remainingQuantity"),
        customer_order_id=opt_text(obj, "customerOrderId"),
        created_at=opt_ts(obj.get("createdAt"), "createdAt"),
    )


def futures_position(obj: Json) -> FuturesPosition:
    """A row of ``/v1/positions/open`` (``pair``, not ``currencyPair``; buy = long)."""
    return FuturesPosition(
        pair=text(obj, "pair"),
        side=side(obj.get("side")),
        quantity=dec(obj.get("quantity"), "quantity"),
        average_entry_price=dec(obj.get("averageEntryPrice"), "averageEntryPrice"),
        unrealised_pnl=dec(obj.get("unrealisedPnl", "0"), "unrealisedPnl"),
    )


@dataclass(frozen=True, slots=True)
class MarginStatus:
    """``/v1/margin/status``: the figures a risk view needs (absent ones are None)."""

    reference_currency: str
    margin_fraction: Decimal | None
    leverage_multiple: Decimal | None
    available_in_reference: Decimal | None
    unrealised_futures_pnl_in_reference: Decimal | None


def margin_status(obj: Json) -> MarginStatus:
    return MarginStatus(
        reference_currency=str(obj.get("referenceCurrency") or ""),
        margin_fraction=opt_dec(obj.get("marginFraction"), "marginFraction"),
        leverage_multiple=opt_dec(obj.get("leverageMultiple"), "leverageMultiple"),
        available_in_reference=opt_dec(obj.get("availableInReference"), "availableInReference"),
        unrealised_futures_pnl_in_reference=opt_dec(
            obj.get("totalUnrealisedFuturesPnlInReference"), "totalUnrealisedFuturesPnlInReference"
        ),
    )


def rows(payload: Any, what: str) -> list[Json]:
    """A JSON array of objects (REST list answers)."""
    if not isinstance(payload, list) or not all(isinstance(r, Mapping) for r in payload):
        raise ParseError(f"{what}: expected a list of objects")
    return payload


def obj(payload: Any, what: str) -> Json:
    if not isinstance(payload, Mapping):
        raise ParseError(f"{what}: expected an object")
    return payload
