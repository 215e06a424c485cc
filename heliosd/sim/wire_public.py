"""Public market data on the wire: pairs, currencies, summaries, books, public trades.

The REST rows and the trade stream's messages (AGGREGATED_ORDERBOOK_UPDATE,
MARKET_SUMMARY_UPDATE, NEW_TRADE) built from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from heliosd.sim.config import PairSpec
from heliosd.sim.market import Market
from heliosd.sim.orders import PublicTrade
from heliosd.sim.wire_format import Json, currency_spec, dec, iso

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
