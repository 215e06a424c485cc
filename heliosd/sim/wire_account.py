"""The account on the wire: API key, balances, trades, ledger rows, fees and margin.

The REST rows and the account stream's BALANCE_UPDATE, NEW_ACCOUNT_TRADE and
NEW_ACCOUNT_HISTORY_RECORD, with the maker-reward fee fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from heliosd.sim.accounts import ApiKey, Balance
from heliosd.sim.orders import Trade
from heliosd.sim.wire_format import Json, currency_spec, dec, iso

REFERENCE_CURRENCY = "ZAR"

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
