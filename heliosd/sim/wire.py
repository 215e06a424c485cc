"""VALR's wire shapes: every JSON object the simulator sends is built here.

Field names, order and types follow VALR's documented payloads (PM shapes): decimals are
strings, sides are lower case in responses, books use capitalised ``Asks``/``Bids``/
``LastChange``/``SequenceNumber``, times are ISO-8601 UTC with milliseconds. The fixtures in
``tests/fixtures/valr`` are captured from these functions and the sim's tests check the
two never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from heliosd.sim.accounts import ApiKey, Balance
from heliosd.sim.config import CURRENCIES, CurrencySpec, PairSpec
from heliosd.sim.market import Market
from heliosd.sim.orders import Order, PublicTrade, Trade

Json = dict[str, Any]

# One serialisation per message, compact like VALR's own frames. A shared encoder avoids
# json.dumps building a new JSONEncoder per call (it does whenever options are passed),
# which dominated inject_fills' profile.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

REFERENCE_CURRENCY = "ZAR"


def dec(value: Decimal) -> str:
    """Plain decimal text: no exponent, no trailing zeros ("0.0001", "1000000", "0")."""
    if not value:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_last_iso: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "")


def iso(ts: datetime) -> str:
    """``2025-07-17T08:36:04.866Z`` (always UTC, milliseconds)."""
    global _last_iso
    # Bursts stamp many objects with the same instant; strftime is the costly part.
    if _last_iso[0] == ts:
        return _last_iso[1]
    utc = ts.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    _last_iso = (ts, text)
    return text


def iso_ns(ns: int) -> str:
    """``/v1/public/time`` carries nanoseconds: ``2025-06-17T13:02:41.280178906Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    ts = datetime.fromtimestamp(seconds, UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{frac:09d}Z"


def currency_spec(code: str) -> CurrencySpec:
    return CURRENCIES.get(code) or CurrencySpec(code, code, code, 8)


# -- public market data ---------------------------------------------------------------


def pair_info(spec: PairSpec) -> Json:
    return {
        "symbol": spec.symbol,
        "baseCurrency": spec.base,
        "quoteCurrency": spec.quote,
        "shortName": f"{spec.base}/{spec.quote}",
        "active": True,
        "minBaseAmount": dec(spec.min_base),
        "maxBaseAmount": dec(spec.max_base),
        "minQuoteAmount": dec(spec.min_quote),
        "maxQuoteAmount": dec(spec.max_quote),
        "tickSize": dec(spec.tick_size),
        "baseDecimalPlaces": str(spec.base_decimal_places),
        "marginTradingAllowed": False,
        "currencyPairType": "SPOT",
    }


def currency_info(code: str) -> Json:
    spec = currency_spec(code)
    return {
        "symbol": spec.symbol,
        "isActive": True,
        "shortName": spec.short_name,
        "longName": spec.long_name,
        "decimalPlaces": str(spec.decimal_places),
        "withdrawalDecimalPlaces": str(spec.decimal_places),
        "collateral": True,
        "collateralWeight": "1",
    }


def market_summary(market: Market) -> Json:
    ask, bid = market.best_ask(), market.best_bid()
    return {
        "currencyPair": market.spec.symbol,
        "askPrice": dec(ask) if ask is not None else "0",
        "bidPrice": dec(bid) if bid is not None else "0",
        "lastTradedPrice": dec(market.last_traded_price),
        "previousClosePrice": dec(market.previous_close),
        "baseVolume": dec(market.base_volume),
        "quoteVolume": dec(market.quote_volume),
        "highPrice": dec(market.high),
        "lowPrice": dec(market.low),
        "created": iso(datetime.now(UTC)),
        "changeFromPrevious": dec(market.change_from_previous()) if market.previous_close else "0",
        "markPrice": dec(market.mid),
    }


def order_book(market: Market, depth: int = 40) -> Json:
    pair = market.spec.symbol

    def side_rows(side: str) -> list[Json]:
        return [
            {
                "side": side,
                "quantity": dec(qty),
                "price": dec(price),
                "currencyPair": pair,
                "orderCount": count,
            }
            for price, qty, count in market.aggregated(side, depth)
        ]

    return {
        "Asks": side_rows("sell"),
        "Bids": side_rows("buy"),
        "LastChange": iso(market.last_change),
        "SequenceNumber": market.sequence,
    }


def public_trade(trade: PublicTrade) -> Json:
    return {
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "currencyPair": trade.pair,
        "tradedAt": iso(trade.traded_at),
        "takerSide": trade.taker_side,
        "sequenceId": trade.sequence_id,
        "id": trade.trade_id,
        "quoteVolume": dec(trade.price * trade.quantity),
    }


# -- account --------------------------------------------------------------------------


def api_key_info(key: ApiKey) -> Json:
    return {
        "label": key.label,
        "permissions": list(key.permissions),
        "addedAt": iso(key.added_at),
        "isSubAccount": key.is_sub_account,
    }


def balance_row(currency: str, bal: Balance) -> Json:
    return {
        "currency": currency,
        "available": dec(bal.available),
        "reserved": dec(bal.reserved),
        "total": dec(bal.total),
        "updatedAt": iso(bal.updated_at),
        "lendReserved": "0",
        "borrowReserved": "0",
        "borrowedAmount": "0",
    }


def _ws_currency(code: str) -> Json:
    # CCXT's capture of a live BALANCE_UPDATE: numbers for decimal places, booleans as the
    # strings "True"/"False", collateralWeight a decimal string.
    spec = currency_spec(code)
    return {
        "symbol": spec.symbol,
        "decimalPlaces": spec.decimal_places,
        "isActive": "True",
        "shortName": spec.short_name,
        "longName": spec.long_name,
        "supportedWithdrawDecimalPlaces": spec.decimal_places,
        "collateral": "True",
        "collateralWeight": "1",
    }


_WS_CURRENCY_CACHE: dict[str, Json] = {}


def balance_update(currency: str, bal: Balance, reference_price: Decimal) -> Json:
    ws_currency = _WS_CURRENCY_CACHE.get(currency)
    if ws_currency is None:
        ws_currency = _WS_CURRENCY_CACHE[currency] = _ws_currency(currency)
    total = bal.total
    in_ref = dec(total * reference_price)
    return {
        "type": "BALANCE_UPDATE",
        "data": {
            "currency": ws_currency,
            "available": dec(bal.available),
            "reserved": dec(bal.reserved),
            "total": dec(total),
            "updatedAt": iso(bal.updated_at),
            "lendReserved": "0",
            "borrowCollateralReserved": "0",
            "borrowedAmount": "0",
            "totalInReference": in_ref,
            "totalInReferenceWeighted": in_ref,
            "referenceCurrency": REFERENCE_CURRENCY,
        },
    }


def fee_fields(trade: Trade) -> Json:
    """``fee``/``feeCurrency``, or for a maker rebate (a negative maker fee) the
    ``makerReward`` fields its ``reward_shape`` asks for (one third-party capture, low
    confidence: maker fills may carry ``makerReward``/``makerRewardCurrency`` in place of,
    or beside, the fee)."""
    if trade.maker and trade.fee < 0 and trade.reward_shape != "fee":
        reward = {"makerReward": dec(-trade.fee), "makerRewardCurrency": trade.fee_currency}
        if trade.reward_shape == "both":
            return {"fee": "0", "feeCurrency": trade.fee_currency, **reward}
        return reward
    return {"fee": dec(trade.fee), "feeCurrency": trade.fee_currency}


def account_trade(trade: Trade) -> Json:
    """Trade-history row (REST); NEW_ACCOUNT_TRADE reuses it minus ``sequenceId``."""
    return {
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "currencyPair": trade.pair,
        "tradedAt": iso(trade.traded_at),
        "side": trade.side,
        "sequenceId": trade.sequence_id,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        **fee_fields(trade),
    }


def new_account_trade(trade: Trade) -> Json:
    data = {
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "currencyPair": trade.pair,
        "tradedAt": iso(trade.traded_at),
        "side": trade.side,
        "orderId": trade.order_id,
        "id": trade.trade_id,
        **fee_fields(trade),
    }
    if trade.customer_order_id is not None:
        data["customerOrderId"] = trade.customer_order_id
    return {"type": "NEW_ACCOUNT_TRADE", "currencyPairSymbol": trade.pair, "data": data}


_TRADE_TYPES = {
    ("LIMIT", "buy"): ("LIMIT_BUY", "Limit Buy"),
    ("LIMIT", "sell"): ("LIMIT_SELL", "Limit Sell"),
    ("MARKET", "buy"): ("MARKET_BUY", "Market Buy"),
    ("MARKET", "sell"): ("MARKET_SELL", "Market Sell"),
}


def new_account_history_record(trade: Trade, base: str, quote: str, market: bool) -> Json:
    """The account-stream ledger row VALR pushes with each trade (VALR's API
    reference and Hummingbot's connector): the REST transaction-history row's shape, but with each
    currency as the stream's currency object. Sim choices where VALR is silent: sent after
    the trade's balance updates; ``id`` is the trade id (as the sim's REST ledger rows);
    ``creditValue`` of a buy is the gross base quantity, the fee given apart."""
    kind, description = _TRADE_TYPES[("MARKET" if market else "LIMIT", trade.side)]
    cost, qty = dec(trade.price * trade.quantity), dec(trade.quantity)
    debit, debit_value, credit, credit_value = (
        (quote, cost, base, qty) if trade.side == "buy" else (base, qty, quote, cost)
    )
    data: Json = {
        "transactionType": {"type": kind, "description": description},
        "debitCurrency": _ws_currency(debit),
        "debitValue": debit_value,
        "creditCurrency": _ws_currency(credit),
        "creditValue": credit_value,
    }
    if trade.fee:
        data["feeCurrency"] = _ws_currency(trade.fee_currency)
        data["feeValue"] = dec(trade.fee)
    data["eventAt"] = iso(trade.traded_at)
    data["additionalInfo"] = {
        "costPerCoin": dec(trade.price),
        "costPerCoinSymbol": quote,
        "currencyPairSymbol": trade.pair,
        "orderId": trade.order_id,
    }
    data["id"] = trade.trade_id
    return {"type": "NEW_ACCOUNT_HISTORY_RECORD", "data": data}


def fees(pairs: Iterable[str], maker_pct: Decimal, taker_pct: Decimal) -> list[Json]:
    return [
        {
            "currencyPair": pair,
            "makerPercentage": dec(maker_pct),
            "takerPercentage": dec(taker_pct),
            "simplePercentage": "1.6",
        }
        for pair in pairs
    ]


def margin_status_v1() -> Json:
    # A spot account with no exposure: marginFraction and leverageMultiple are absent
    # (as in VALR's documented sample).
    return {
        "collateralisedMarginFraction": "0",
        "initialMarginFraction": "0",
        "totalBorrowedInReference": "0",
        "collateralisedBalancesInReference": "0",
        "referenceCurrency": "USDC",
        "initialRequiredInReference": "0",
        "availableInReference": "0",
        "maintenanceMarginFraction": "0",
        "autoCloseMarginFraction": "0",
        "totalPositionsAtEntryInReference": "0",
        "totalUnrealisedFuturesPnlInReference": "0",
    }


# -- orders ---------------------------------------------------------------------------


def order_status(order: Order) -> Json:
    """GET /v1/orders/:pair/orderid/:id (and the base of ORDER_STATUS_UPDATE)."""
    data: Json = {
        "orderId": order.order_id,
        "orderStatusType": order.status,
        "currencyPair": order.pair,
        "originalPrice": dec(order.price),
        "remainingQuantity": dec(order.remaining),
        "originalQuantity": dec(order.original_quantity),
        "orderSide": order.side,
        "orderType": order.order_type,
        "failedReason": order.failed_reason,
        "orderUpdatedAt": iso(order.updated_at),
        "orderCreatedAt": iso(order.created_at),
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    data["timeInForce"] = order.time_in_force
    return data


def order_status_update(order: Order) -> Json:
    data = order_status(order)
    tif = data.pop("timeInForce")
    data["executedPrice"] = dec(order.average_price)
    data["executedQuantity"] = dec(order.executed_quantity)
    data["executedFee"] = dec(order.executed_fee)
    data["timeInForce"] = tif
    return {"type": "ORDER_STATUS_UPDATE", "data": data}


def order_summary(order: Order) -> Json:
    """A finished order in ``/v1/orders/history`` and ``.../history/summary/...``."""
    data = order_status(order)
    data["averagePrice"] = dec(order.average_price)
    data["total"] = dec(order.executed_quote)
    data["totalExecutedQuantity"] = dec(order.executed_quantity)
    data["totalFee"] = dec(order.executed_fee)
    data["feeCurrency"] = order.fee_currency
    return data


def _filled_percentage(order: Order) -> str:
    if not order.original_quantity:
        return "0.00"
    pct = (order.original_quantity - order.remaining) / order.original_quantity * 100
    return str(pct.quantize(Decimal("0.01")))


def open_order(order: Order) -> Json:
    """A row of GET /v1/orders/open (note ``remainingQuantity``, ``status``, ``type``)."""
    data: Json = {
        "orderId": order.order_id,
        "side": order.side,
        "remainingQuantity": dec(order.remaining),
        "price": dec(order.price),
        "currencyPair": order.pair,
        "createdAt": iso(order.created_at),
        "originalQuantity": dec(order.original_quantity),
        "filledPercentage": _filled_percentage(order),
        "updatedAt": iso(order.updated_at),
        "status": order.status,
        "type": order.order_type,
        "timeInForce": order.time_in_force,
        "allowMargin": order.allow_margin,
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    return data


def open_orders_update(orders: Iterable[Order]) -> Json:
    """OPEN_ORDERS_UPDATE: the full list each time; ``quantity`` is the remaining amount."""
    rows: list[Json] = []
    for order in orders:
        row: Json = {
            "orderId": order.order_id,
            "side": order.side,
            "quantity": dec(order.remaining),
            "price": dec(order.price),
            "currencyPair": order.pair,
            "createdAt": iso(order.created_at),
            "originalQuantity": dec(order.original_quantity),
            "filledPercentage": _filled_percentage(order),
        }
        if order.customer_order_id is not None:
            row["customerOrderId"] = order.customer_order_id
        row.update(
            {
                "type": order.order_type,
                "status": order.status,
                "updatedAt": iso(order.updated_at),
                "timeInForce": order.time_in_force,
                "allowMargin": order.allow_margin,
            }
        )
        rows.append(row)
    return {"type": "OPEN_ORDERS_UPDATE", "data": rows}


def order_processed(order: Order, failure_reason: str = "") -> Json:
    data: Json = {
        "orderId": order.order_id,
        "success": not failure_reason,
        "failureReason": failure_reason,
    }
    if order.customer_order_id is not None:
        data["customerOrderId"] = order.customer_order_id
    return {"type": "ORDER_PROCESSED", "data": data}


def failed_cancel(order_id: str, message: str) -> Json:
    return {"type": "FAILED_CANCEL_ORDER", "data": {"orderId": order_id, "message": message}}


# -- trade stream ---------------------------------------------------------------------


def ws_order_book(market: Market) -> Json:
    return {
        "type": "AGGREGATED_ORDERBOOK_UPDATE",
        "currencyPairSymbol": market.spec.symbol,
        "data": order_book(market),
    }


def ws_market_summary(market: Market) -> Json:
    return {
        "type": "MARKET_SUMMARY_UPDATE",
        "currencyPairSymbol": market.spec.symbol,
        "data": market_summary(market),
    }


def ws_new_trade(trade: PublicTrade) -> Json:
    data = public_trade(trade)
    del data["sequenceId"], data["quoteVolume"]  # NEW_TRADE carries the PM subset only
    return {"type": "NEW_TRADE", "currencyPairSymbol": trade.pair, "data": data}
