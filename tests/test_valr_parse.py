"""VALR payloads -> heliosd types (heliosd.builtin.valr.parse), on the documented shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from heliosd.builtin.valr import parse
from heliosd.core.types import OrderState, OrderType, Side

# VALR's documented ORDER_STATUS_UPDATE sample.
STATUS_UPDATE = {
    "orderId": "019a2a46-5730-7081-bfa2-7c6fc7e2d5db",
    "orderStatusType": "Partially Filled",
    "currencyPair": "BTCUSDT",
    "originalPrice": "114950",
    "remainingQuantity": "0.0002",
    "originalQuantity": "0.0003",
    "orderSide": "sell",
    "orderType": "post-only limit",
    "failedReason": "",
    "orderUpdatedAt": "2025-10-28T10:04:40.566Z",
    "orderCreatedAt": "2025-10-28T10:04:04.272Z",
    "customerOrderId": "testWS",
    "executedPrice": "114950",
    "executedQuantity": "0.0001",
    "executedFee": "0.009196",
    "timeInForce": "GTC",
}


@pytest.mark.parametrize(
    ("display", "state"),
    [
        ("Placed", OrderState.PLACED),
        ("placed", OrderState.PLACED),
        ("Active", OrderState.PLACED),
        ("Order Modified", OrderState.PLACED),
        ("Partially Filled", OrderState.PARTIALLY_FILLED),
        ("FILLED", OrderState.FILLED),
        ("Cancelled", OrderState.CANCELLED),
        ("Expired", OrderState.CANCELLED),
        ("Partially Filled and Cancelled Due To Slippage", OrderState.CANCELLED),
        ("Failed", OrderState.FAILED),
    ],
)
def test_order_states_map_case_insensitively(display: str, state: OrderState) -> None:
    assert parse.order_state(display) is state


def test_unknown_order_status_is_an_error_not_a_guess() -> None:
    with pytest.raises(parse.ParseError):
        parse.order_state("Instant Order Completed")


def test_status_update_sample() -> None:
    status = parse.order_status(STATUS_UPDATE)
    assert status.state is OrderState.PARTIALLY_FILLED
    assert status.pair == "BTCUSDT"
    assert status.customer_order_id == "testWS"
    assert status.original_quantity == Decimal("0.0003")
    assert status.remaining_quantity == Decimal("0.0002")
    assert status.executed_quantity == Decimal("0.0001")
    assert status.average_price == Decimal("114950")
    assert status.updated_at == datetime(2025, 10, 28, 10, 4, 40, 566000, tzinfo=UTC)


def test_status_falls_back_to_status_key_and_none_reason_is_empty() -> None:
    row = {k: v for k, v in STATUS_UPDATE.items() if k != "orderStatusType"}
    row |= {"status": "Cancelled", "failedReason": "None"}
    status = parse.order_status(row)
    assert status.state is OrderState.CANCELLED
    assert status.failed_reason == ""


def test_failed_reason_is_kept_verbatim() -> None:
    reason = "Order cancelled as it would have matched outside of slippage price band"
    status = parse.order_status(
        STATUS_UPDATE | {"orderStatusType": "Failed", "failedReason": reason}
    )
    assert status.failed_reason == reason


def test_comma_decimals_of_the_stream_samples_only_when_lenient() -> None:
    trade = {
        "price": "114,953",
        "quantity": "0,00102078",
        "currencyPair": "BTCUSDT",
        "tradedAt": "2025-10-28T10:04:40.566Z",
        "side": "buy",
        "orderId": "o1",
        "id": "t1",
        "fee": "0",
        "feeCurrency": "BTC",
    }
    fill = parse.fill(trade, lenient=True)
    assert fill.price == Decimal("114953")
    assert fill.quantity == Decimal("0.00102078")
    assert isinstance(fill.price, Decimal)
    with pytest.raises(parse.ParseError):
        parse.fill(trade)  # REST answers stay strict
    with pytest.raises(parse.ParseError):
        parse.dec_lenient("1,2,3", "price")


def test_pair_row_documented_example() -> None:
    info = parse.pair_info(
        {
            "symbol": "ETHZAR",
            "baseCurrency": "ETH",
            "quoteCurrency": "ZAR",
            "shortName": "ETH/ZAR",
            "active": True,
            "minBaseAmount": "0.0002",
            "maxBaseAmount": "69.21",
            "minQuoteAmount": "10",
            "maxQuoteAmount": "5000000",
            "tickSize": "1",
            "baseDecimalPlaces": "8",
            "marginTradingAllowed": True,
            "currencyPairType": "SPOT",
        }
    )
    assert (info.symbol, info.base, info.quote) == ("ETHZAR", "ETH", "ZAR")
    assert info.min_base == Decimal("0.0002")
    assert info.max_quote == Decimal(5000000)
    assert info.base_decimals == 8
    assert info.tick_size == Decimal(1)


def test_balance_update_uses_short_name_not_symbol() -> None:
    # ZAR's VALR symbol is "R"; the code is shortName.
    bal = parse.balance(
        {"currency": {"symbol": "R", "shortName": "ZAR"}, "available": "10.5", "reserved": "2"}
    )
    assert (bal.currency, bal.available, bal.reserved) == ("ZAR", Decimal("10.5"), Decimal(2))


def test_open_orders_rows_from_rest_and_stream() -> None:
    rest_row = {
        "orderId": "4cbf",
        "side": "sell",
        "remainingQuantity": "0.00005062",
        "price": "66391",
        "currencyPair": "BTCUSDC",
        "createdAt": "2024-05-08T11:51:29.169Z",
        "originalQuantity": "0.00015062",
        "status": "Partially Filled",
        "type": "limit",
        "customerOrderId": "x",
    }
    stream_row = {k: v for k, v in rest_row.items() if k != "remainingQuantity"}
    stream_row["quantity"] = "0.00005062"
    for row in (rest_row, stream_row):
        order = parse.open_order(row)
        assert order.side is Side.SELL
        assert order.type is OrderType.LIMIT
        assert order.remaining_quantity == Decimal("0.00005062")
        assert order.customer_order_id == "x"


def test_book_top_and_summary() -> None:
    bid, ask = parse.book_top(
        {
            "Asks": [{"side": "sell", "quantity": "0.01", "price": "93129"}],
            "Bids": [{"side": "buy", "quantity": "1.2", "price": "81400"}],
        }
    )
    assert (bid, ask) == (Decimal(81400), Decimal(93129))
    assert parse.book_top({"Asks": [], "Bids": []}) == (None, None)
    summary = parse.market_summary({"currencyPairSymbol": "BTCZAR", "lastTradedPrice": "100"})
    assert summary.pair == "BTCZAR"
    assert summary.last == Decimal(100)


def test_server_time_keeps_sub_second_precision() -> None:
    when = parse.server_time({"epochTime": 1750165361, "time": "2025-06-17T13:02:41.280178906Z"})
    assert when == datetime(2025, 6, 17, 13, 2, 41, 280178, tzinfo=UTC)
    assert parse.server_time({"epochTime": 1750165361}).timestamp() == 1750165361


def test_order_processed_failure_only_when_unsuccessful() -> None:
    ok = {"orderId": "o", "success": True, "failureReason": "", "customerOrderId": "c"}
    assert parse.order_processed_failure(ok) is None
    failed = parse.order_processed_failure(ok | {"success": False, "failureReason": "Nope"})
    assert failed is not None
    assert failed.state is OrderState.FAILED
    assert failed.failed_reason == "Nope"


def test_missing_fields_name_the_field_not_the_payload() -> None:
    with pytest.raises(parse.ParseError, match="tradedAt"):
        parse.fill(
            {
                "id": "t",
                "currencyPair": "BTCZAR",
                "side": "buy",
                "price": "1",
                "quantity": "1",
                "fee": "0",
                "secret": "do-not-echo",
            }
        )
